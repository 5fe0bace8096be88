// `ndmpd status`, `ndmpd sessions [--json]` and `ndmpd sessions kill ID`:
// the operator's view of a running server, through its admin socket in the
// state dir (server/admin-socket.ts; docs/operations.md, "Sessions").

import net from 'node:net';
import { join } from 'node:path';
import { Command } from 'commander';
import { ADMIN_SOCKET_NAME } from '../server/admin-socket.js';
import type { SessionReport } from '../server/admin-ops.js';
import type { ConfigInput } from './server-config.js';
import { readConfigFile, resolveConfig } from './server-config.js';
import { CommandError, humanSize } from './tape-command.js';

/** A reply is one line; a server with thousands of sessions still fits. */
const MAX_REPLY_BYTES = 16 * 1024 * 1024;
const REQUEST_TIMEOUT_MS = 15_000;
/** A kill waits for the halts to be posted and written (server/admin-ops.ts: up to 3 × 10 s). */
const KILL_TIMEOUT_MS = 40_000;

interface Where {
  config?: string;
  stateDir?: string;
}

function stateDirOf(o: Where): string {
  const flags: ConfigInput = {};
  if (o.stateDir) flags['state-dir'] = o.stateDir;
  return resolveConfig(o.config ? readConfigFile(o.config) : {}, flags).stateDir;
}

/** Sends one request to the server of `stateDir` and returns its reply (exit 2 when none runs there). */
export async function adminRequest(
  stateDir: string,
  req: Record<string, unknown>,
  timeoutMs = REQUEST_TIMEOUT_MS,
): Promise<Record<string, unknown>> {
  const path = join(stateDir, ADMIN_SOCKET_NAME);
  return new Promise((resolve, reject) => {
    const c = net.connect(path);
    let buf = '';
    const fail = (e: Error) => {
      clearTimeout(t);
      c.destroy();
      reject(e);
    };
    const t = setTimeout(
      () => fail(new CommandError(`the server did not answer on ${path} within ${timeoutMs / 1000} s`, 1)),
      timeoutMs,
    );
    c.on('connect', () => c.write(`${JSON.stringify(req)}\n`));
    c.on('error', (e: NodeJS.ErrnoException) => {
      const none = e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || e.code === 'ENOTDIR';
      fail(
        new CommandError(
          none
            ? `no ndmpd is running with state dir ${stateDir} (no server answers on ${path}): ` +
                `start one (ndmpd --state-dir ${stateDir} --export NAME=PATH), or name the running one's state dir with --state-dir or --config`
            : `cannot reach the server on ${path}: ${e.message}`,
          2,
        ),
      );
    });
    c.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      if (buf.length > MAX_REPLY_BYTES) {
        fail(new CommandError(`the server's reply on ${path} is larger than ${MAX_REPLY_BYTES} bytes`, 1));
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(t);
      c.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      } catch {
        reject(new CommandError(`the server's reply on ${path} is not JSON`, 1));
      }
    });
    c.on('end', () => {
      if (!buf.includes('\n')) fail(new CommandError(`the server on ${path} hung up without a reply`, 1));
    });
  });
}

/** The reply's payload, or the server's error as this command's (1: no such session, 2: a bad request). */
function payload(reply: Record<string, unknown>): Record<string, unknown> {
  if (reply.ok === true) return reply;
  const err = (reply.error ?? {}) as { code?: string; message?: string };
  throw new CommandError(
    err.message ?? 'the server refused the request',
    err.code === 'ADMIN_NO_SUCH_SESSION' ? 1 : 2,
  );
}

const where = (cmd: Command): Command =>
  cmd
    .option('-c, --config <file>', "the server's TOML config file (for its state-dir)")
    .option('--state-dir <dir>', "the server's state dir, where its admin socket is (default as ndmpd's)");

export function statusCommand(): Command {
  return where(new Command('status'))
    .description('what the running server is: version, uptime, listen address, sessions by state, library')
    .option('--json', 'one JSON object')
    .action(async (o: Where & { json?: boolean }) => {
      const st = payload(await adminRequest(stateDirOf(o), { op: 'status' })).status as Record<
        string,
        unknown
      >;
      if (o.json) {
        process.stdout.write(`${JSON.stringify(st, null, 2)}\n`);
        return;
      }
      const s = st.sessions as Record<string, number> & { byOperation: Record<string, number> };
      const lines = [
        `ndmpd ${String(st.version)} (pid ${String(st.pid)}), up ${duration(Number(st.uptimeSeconds))}, listening on ${String(st.listen)}`,
        `state dir: ${String(st.stateDir)}`,
        `sessions: ${s.total} (${s.busy} busy, ${s.idle} idle, ${s.unauthenticated} not logged in, ${s.leaving} leaving); ` +
          `${s.byOperation.backup} backing up, ${s.byOperation.recover} recovering`,
      ];
      const lib = st.library as {
        dir: string;
        drives: { name: string; tape: string | null }[];
        slots: number;
        slotsFull: number;
        tapes: number;
      } | null;
      if (lib) {
        lines.push(
          `library: ${lib.dir}: ${lib.tapes} tapes, ${lib.slotsFull} of ${lib.slots} slots full; ` +
            lib.drives.map((d) => `${d.name}: ${d.tape ?? 'empty'}`).join(', '),
        );
      } else lines.push('library: none');
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}

export function sessionsCommand(): Command {
  const cmd = where(new Command('sessions'))
    .description("the running server's sessions: peer, user, states, bytes, throughput, tape, file history")
    .option('--json', 'a JSON array')
    .action(async (o: Where & { json?: boolean }) => {
      const list = payload(await adminRequest(stateDirOf(o), { op: 'sessions' })).sessions as SessionReport[];
      if (o.json) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      if (list.length === 0) {
        process.stdout.write('no sessions\n');
        return;
      }
      process.stdout.write(`${list.map(sessionText).join('\n')}\n`);
    });
  cmd.addCommand(
    where(new Command('kill'))
      .description(
        'abort one session: its data and mover halt ABORTED, its DMA is told why, then it is closed',
      )
      .argument('<id>', 'the session id (ndmpd sessions lists them)')
      .option('--reason <text>', 'why, for the DMA and the log')
      .option('--json', 'the outcome as JSON')
      .action(async (idText: string, _o: unknown, self: Command) => {
        // `sessions` has the same options: whichever of the two was given them, both count.
        const o = self.optsWithGlobals<Where & { reason?: string; json?: boolean }>();
        if (!/^\d+$/.test(idText))
          throw new CommandError(`session id "${idText}" is not a number (ndmpd sessions lists them)`, 2);
        const killed = payload(
          await adminRequest(
            stateDirOf(o),
            { op: 'kill', id: Number(idText), ...(o.reason ? { reason: o.reason } : {}) },
            KILL_TIMEOUT_MS,
          ),
        ).killed as {
          id: number;
          dataAborted: boolean;
          moverAborted: boolean;
          halted: boolean;
          reason: string;
        };
        if (o.json) {
          process.stdout.write(`${JSON.stringify(killed, null, 2)}\n`);
          return;
        }
        const what = [killed.dataAborted ? 'data service' : '', killed.moverAborted ? 'mover' : ''].filter(
          Boolean,
        );
        process.stdout.write(
          `session ${killed.id} ${killed.reason}: ` +
            (what.length
              ? `${what.join(' and ')} aborted${killed.halted ? '' : ' (halt not seen in time)'}, `
              : '') +
            'connection closed\n',
        );
      }),
  );
  return cmd;
}

function sessionText(r: SessionReport): string {
  const head = `#${r.id} ${r.peer} user ${r.user ?? '-'} NDMPv${r.ndmpVersion} ${r.slot}: data ${r.dataState}, mover ${r.moverState}, ${r.operation}`;
  const parts = [
    `${humanSize(r.bytes)}${r.bytesPerSecond !== null ? `, ${humanSize(r.bytesPerSecond)}/s over the last minute` : ''}`,
  ];
  if (r.tape) {
    parts.push(
      `tape ${r.tape.barcode ?? '(image)'}${r.tape.drive ? ` in ${r.tape.drive}` : ''}` +
        (r.tape.fileNum !== null ? ` at file ${r.tape.fileNum} block ${r.tape.blockno}` : ''),
    );
  }
  if (r.history) {
    const h = r.history;
    parts.push(
      `history ${h.entries} entries, ${humanSize(h.bytesSent)} sent, ${humanSize(h.queuedBytes)} queued, ` +
        `${humanSize(h.spooledBytes)} spooled; DMA not accepting ${(h.notAcceptingMs / 1000).toFixed(1)} s ` +
        `(${(h.notAcceptingShare * 100).toFixed(0)}% of the backup)`,
    );
  }
  if (r.notAnswering.length) parts.push(`not answering: ${r.notAnswering.join(', ')}`);
  return `${head}\n    ${parts.join('\n    ')}`;
}

function duration(s: number): string {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
