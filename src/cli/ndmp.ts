#!/usr/bin/env node
// ndmp: the DMA. Backs up NDMP servers' paths to tape with their file history
// in a catalog (SQLite, or PostgreSQL for many DMAs), lists, searches and
// restores from it, and asks servers what they offer.

import { existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { CatalogError } from '../catalog/errors.js';
import { isPostgresSpec, openCatalog } from '../catalog/open.js';
import type { Catalog } from '../catalog/types.js';
import {
  DmaUsageError,
  connectAgent,
  formatTarget,
  parseServerPath,
  parseTarget,
  readPassword,
} from '../dma/agent.js';
import type { AgentAddress, Credentials } from '../dma/agent.js';
import { runBackup } from '../dma/backup-job.js';
import type { JobEvents } from '../dma/backup-job.js';
import { ChangerError } from '../dma/changer.js';
import { TapeNotAvailableError } from '../dma/loader.js';
import { TapePositionError } from '../dma/job.js';
import { listTapeServer } from '../dma/media.js';
import { query } from '../dma/query.js';
import { findOnServers, listAsOf } from '../dma/browse.js';
import { restoreAsOf } from '../dma/restore-as-of.js';
import { sourceOf, toBackupPath, toServerPath } from '../dma/server-paths.js';
import { JobWaitError, WAITS, withBound } from '../dma/waits.js';
import { NdmpError, TransportError } from '../wire/index.js';
import type { Pval } from '../wire/index.js';
import { VERSION } from '../util/version.js';
import { escapeName } from '../util/byte-name.js';
import {
  formatBackup,
  formatBackups,
  formatFound,
  formatListing,
  formatTapes,
  jsonRows,
} from './dma-format.js';
import { jsonBackup, jsonError } from './json-output.js';
import { pollEveryMs, progressView } from './progress.js';
import type { ProgressView } from './progress.js';
import { formatQuery, toJson } from './query-format.js';
import { defaultStateDir as ndmpdStateDir } from './server-config.js';
import { registerVerifyCommand } from './verify-command.js';
// Pools, retention, a DMA that died (docs/dma.md, "Pools and tapes", "Retention: forget and prune").
import { closeAbandoned } from '../dma/abandoned.js';
import { identify } from '../dma/identity.js';
import { DEFAULT_POOL, NoTapeError, checkPoolName, listedTapes } from '../dma/pools.js';
import { DependantsError, ForgetError } from '../dma/retention.js';
import { registerRetentionCommands } from './retention-command.js';

/** Exit codes: 0 done, 1 the server refused or the job failed, 2 usage or local trouble, 3 connection trouble. */
const EXIT_NDMP = 1;
const EXIT_USAGE = 2;
const EXIT_TRANSPORT = 3;

/** The DMA's own state (the default catalog): NDMP_STATE_DIR, /var/lib/ndmp as root, else XDG state. */
export function dmaStateDir(): string {
  if (process.env.NDMP_STATE_DIR) return process.env.NDMP_STATE_DIR;
  if (process.getuid?.() === 0) return '/var/lib/ndmp';
  return join(process.env.XDG_STATE_HOME || join(os.homedir(), '.local', 'state'), 'ndmp');
}

interface ConnectOpts {
  user: string;
  passwordFile?: string;
  v3?: boolean;
  auth: 'md5' | 'text';
  timeout: string;
}

interface CatalogOpts {
  catalog?: string;
  json?: boolean;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function credentials(
  o: ConnectOpts,
  target: AgentAddress,
  user = o.user,
  passwordFile = o.passwordFile,
): Credentials {
  const timeout = Number(o.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 2_000_000) {
    throw new DmaUsageError(`--timeout must be a number of seconds, not '${o.timeout}'`);
  }
  // A DMA on ndmpd's own host may use ndmpd's generated credentials (the quick start's case),
  // for that host only: they are never offered to another one.
  const fallback = isLoopback(target.host) ? join(ndmpdStateDir(), 'auth') : undefined;
  const password = readPassword(passwordFile, user, fallback);
  return { user, password, auth: o.auth, v3: o.v3, timeoutMs: timeout * 1000 };
}

/** A three-way tape server's credentials: --tape-user/--tape-password-file, else the data server's. */
function tapeCredentials(o: ConnectOpts & Record<string, unknown>, tapeServer: AgentAddress): Credentials {
  return credentials(
    o,
    tapeServer,
    (o.tapeUser as string | undefined) ?? o.user,
    (o.tapePasswordFile as string | undefined) ?? o.passwordFile,
  );
}

function addConnectOptions(cmd: Command): Command {
  return cmd
    .option('-u, --user <user>', 'NDMP user name', 'ndmp')
    .option(
      '-p, --password-file <file>',
      "file holding the password (or USER:PASSWORD lines); else $NDMP_PASSWORD, else this host's ndmpd auth file",
    )
    .option('--v3', 'speak NDMP v3 (default: the highest both sides speak, normally v4)')
    .addOption(new Option('--auth <type>', 'authentication').choices(['md5', 'text']).default('md5'))
    .option('--timeout <seconds>', 'wait this long for the server and each reply', '30');
}

function addCatalogOptions(cmd: Command): Command {
  return cmd
    .option(
      '--catalog <path|url>',
      'the catalog: a SQLite file, or postgres://USER:PASSWORD@HOST/DB (default $NDMP_CATALOG, else <state-dir>/catalog.sqlite)',
    )
    .option('--json', 'print JSON instead of text');
}

/**
 * `f` with the catalog open. A catalog named by --catalog or NDMP_CATALOG
 * must exist (`ndmp init` makes one: a mistyped path is an error, not a new
 * empty catalog); the default one in the state dir is made on first use.
 */
async function withCatalog<T>(o: CatalogOpts, f: (c: Catalog) => Promise<T>, create = false): Promise<T> {
  const spec = o.catalog ?? process.env.NDMP_CATALOG;
  const catalog = await withBound(
    openCatalog(spec, dmaStateDir(), { create: create || !spec }),
    WAITS.catalogCallMs,
    'opening the catalog',
    'check that the catalog database is up and reachable',
  );
  try {
    // A backup left running by a DMA that died is closed as failed first (docs/dma.md, "A DMA that died").
    await closeAbandoned(catalog, (text) => process.stderr.write(`ndmp: ${text}\n`));
    return await f(catalog);
  } finally {
    // A catalog that will not close (a query still hanging) must not keep ndmp from exiting.
    await withBound(catalog.close(), WAITS.catalogCloseMs, 'closing the catalog', 'ndmp leaves anyway').catch(
      (e: Error) => process.stderr.write(`ndmp: ${e.message}\n`),
    );
  }
}

/** A timeout option given in seconds, in ms. */
function secondsOption(flag: string, v: unknown): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 2_000_000) {
    throw new DmaUsageError(`${flag} must be a number of seconds, not '${String(v)}'`);
  }
  return n * 1000;
}

/** --stall-timeout in ms. */
function stallMs(v: unknown): number {
  return secondsOption('--stall-timeout', v);
}

/** `--wait` without a value: an hour, for someone to bring a tape. */
const TAPE_WAIT_S = 3600;

const TAPE_HELP = `wait this long for one tape open, rewind or spacing, which real drives take minutes over (seconds, default ${WAITS.tapeMotionMs / 1000})`;
const STALL_HELP = `end the job when nothing moves for this long: no stream bytes, no file history, no catalog rows (seconds, default ${WAITS.stallMs / 1000})`;

function print(o: { json?: boolean }, value: unknown, text: () => string): void {
  process.stdout.write(o.json ? `${toJson(value)}\n` : text());
}

function backupId(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n <= 0)
    throw new DmaUsageError(`'${s}' is not a backup id (see 'ndmp backups')`);
  return n;
}

async function getBackup(catalog: Catalog, id: string) {
  const b = await catalog.getBackup(backupId(id));
  if (!b) throw new DmaUsageError(`there is no backup ${id} in ${catalog.location}`);
  return b;
}

function parseEnv(list: string[]): Pval[] {
  return list.map((s) => {
    const i = s.indexOf('=');
    if (i <= 0) throw new DmaUsageError(`--env '${s}' is not NAME=VALUE`);
    return { name: s.slice(0, i), value: s.slice(i + 1) };
  });
}

function parseSize(s: string): number {
  const m = /^(\d+)([KM]?)$/i.exec(s);
  if (!m) throw new DmaUsageError(`'${s}' is not a size (bytes, or with K or M)`);
  const n =
    Number(m[1]) * (m[2]?.toUpperCase() === 'K' ? 1024 : m[2]?.toUpperCase() === 'M' ? 1024 * 1024 : 1);
  if (n < 512 || n > 4 * 1024 * 1024 || n % 512 !== 0) {
    throw new DmaUsageError(`--record-size ${s}: a multiple of 512 bytes from 512 to 4M`);
  }
  return n;
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** Job messages and progress on stderr; stdout keeps the result (and only JSON with --json). */
function jobEvents(view: ProgressView, quiet: boolean): JobEvents {
  return {
    progress: quiet ? undefined : (p) => view.update(p),
    message: (level, text) => {
      if (quiet && level === 'info') return;
      view.line(`${level === 'info' ? '' : `${level}: `}${text}`);
    },
  };
}

/** Set by Ctrl-C: however the job then ends, ndmp exits 130 (128 + SIGINT, the shell's convention). */
let interrupted = false;

/** Ctrl-C aborts the running job cleanly (the catalog records it); a second one leaves at once. */
function interruptible(): AbortController {
  const ac = new AbortController();
  process.once('SIGINT', () => {
    interrupted = true;
    process.stderr.write('ndmp: interrupted, aborting the job (Ctrl-C again to quit now)\n');
    ac.abort();
    process.once('SIGINT', () => process.exit(130));
  });
  return ac;
}

async function main(argv: string[]): Promise<void> {
  const program = new Command('ndmp')
    .description(
      'NDMP DMA: back up NDMP servers to tape with a file-history catalog; browse, search and restore',
    )
    .version(VERSION)
    // A usage error is one line and a hint, not the whole help, and exits 2 (failure() below).
    .showHelpAfterError(
      jsonWanted ? false : "(see 'ndmp --help', or 'ndmp COMMAND --help' for a command's options)",
    )
    .exitOverride()
    // With --json the error comes out once, as JSON (the catch at the end).
    .configureOutput({ outputError: (text, write) => (jsonWanted ? undefined : write(text)) });

  addCatalogOptions(
    addConnectOptions(
      program
        .command('backup')
        .description("back up a server's path to tape; its file history goes to the catalog")
        .argument('<server:/path>', 'HOST[:PORT]:/absolute/path on the server (inside one of its exports)')
        .option(
          '--tape-server <host[:port]>',
          'three-way: the NDMP server with the tape (default: the data server)',
        )
        .option('--tape-user <user>', 'user on the tape server (default: --user)')
        .option('--tape-password-file <file>', 'password file for the tape server (default: --password-file)')
        .option(
          '--tape <device>',
          "the first tape (a drive, a barcode, a path); default: the library's next blank tape",
        )
        .option('--level <n>', 'incremental level, 0 (full) to 9', '0')
        .option('--exclude <pattern>', 'leave out names matching a shell pattern; repeatable', collect, [])
        .addOption(
          new Option(
            '--history <model>',
            'file history model asked of the server (default: path for a full backup, dirnode for an incremental, whose listings show its tree as of then)',
          ).choices(['path', 'dirnode']),
        )
        .option('--env <name=value>', 'more backup environment for the server; repeatable', collect, [])
        .option('--record-size <bytes>', 'tape record size', '64K')
        .option('--stall-timeout <seconds>', STALL_HELP, String(WAITS.stallMs / 1000))
        .option('--tape-timeout <seconds>', TAPE_HELP, String(WAITS.tapeMotionMs / 1000))
        .option('-q, --quiet', 'no progress, only warnings and the result')
        .option(
          '--pool <name>',
          "the pool whose tapes the backup goes on (docs/dma.md, 'Pools and tapes')",
          DEFAULT_POOL,
        )
        .option(
          '--wait [seconds]',
          `with no tape to write on, wait for one this long (default ${TAPE_WAIT_S} s), asking the library every 5 s`,
        ),
    ),
  ).action(async (target: string, o: ConnectOpts & CatalogOpts & Record<string, unknown>) => {
    const data = parseServerPath(target);
    const pool = checkPoolName(o.pool as string);
    const waitForTapeMs =
      o.wait === undefined ? 0 : o.wait === true ? TAPE_WAIT_S * 1000 : secondsOption('--wait', o.wait);
    const level = Number(o.level);
    if (!Number.isInteger(level) || level < 0 || level > 9)
      throw new DmaUsageError(`--level ${String(o.level)}: 0 to 9`);
    const cred = credentials(o, data);
    const tapeServer = o.tapeServer ? parseTarget(o.tapeServer as string) : undefined;
    const tapeCred = tapeServer ? tapeCredentials(o, tapeServer) : cred;
    const view = progressView(`backup ${formatTarget(data)}:${escapeName(data.path)}`);
    const ac = interruptible();
    await withCatalog(o, async (catalog) => {
      let outcome;
      try {
        outcome = await runBackup({
          data,
          dataCred: cred,
          tapeServer,
          tapeCred,
          device: o.tape as string | undefined,
          level,
          exclude: o.exclude as string[],
          // An incremental's dir/node history lists unchanged names too (docs/dma.md, "Incremental chains").
          history: (o.history ?? (level > 0 ? 'dirnode' : 'path')) === 'dirnode' ? 'd' : 'y',
          env: parseEnv(o.env as string[]),
          recordSize: parseSize(o.recordSize as string),
          stallMs: stallMs(o.stallTimeout),
          tapeMotionMs: secondsOption('--tape-timeout', o.tapeTimeout),
          catalog,
          events: jobEvents(view, Boolean(o.quiet)),
          signal: ac.signal,
          pollMs: pollEveryMs(),
          pool,
          waitForTapeMs,
        });
      } finally {
        view.stop();
      }
      print(o, jsonBackup(outcome.backup), () => formatBackup(outcome.backup));
      if (!outcome.ok) process.exitCode = EXIT_NDMP;
    });
  });

  addCatalogOptions(
    program
      .command('init')
      .description(
        'create the catalog (a SQLite file, or the tables in a PostgreSQL database); other commands refuse a catalog that does not exist',
      ),
  ).action(async (o: CatalogOpts) => {
    const spec = o.catalog ?? process.env.NDMP_CATALOG;
    const existed = spec && !isPostgresSpec(spec) ? existsSync(spec.replace(/^sqlite:/, '')) : null;
    await withCatalog(
      o,
      async (catalog) => {
        const backups = (await catalog.listBackups()).length;
        const what = existed
          ? `the catalog ${catalog.location} exists already (${backups} backups)`
          : `catalog ${catalog.location} is ready`;
        print(o, { catalog: catalog.location, backups, created: existed === false }, () => `${what}\n`);
      },
      true,
    );
  });

  addCatalogOptions(
    program.command('backups').description('list the backups in the catalog, newest first'),
  ).action(async (o: CatalogOpts) => {
    await withCatalog(o, async (catalog) => {
      // Forgotten backups are gone for the user; 'ndmp prune' deletes them.
      const list = (await catalog.listBackups()).filter((b) => b.forgottenAt === null);
      print(o, list.map(jsonBackup), () => formatBackups(list));
    });
  });

  addCatalogOptions(
    program
      .command('ls')
      .description('list a directory of a backup, from the catalog')
      .argument('<backup>', 'backup id (see ndmp backups)')
      .argument(
        '[path]',
        "directory on the server, below the backup's source (default: the source itself); an incremental is listed as of its date, each entry with the backup (#ID) it comes from",
      ),
  ).action(async (id: string, path: string | undefined, o: CatalogOpts) => {
    await withCatalog(o, async (catalog) => {
      const b = await getBackup(catalog, id);
      // Server paths in and out, the tree as of the backup (src/dma/browse.ts; docs/dma.md, "Paths").
      const { entries, view } = await listAsOf(catalog, b, path);
      for (const i of view.incomplete)
        process.stderr.write(
          `ndmp: backup ${i} has path-model history: files deleted before it may still be listed\n`,
        );
      print(o, jsonRows(entries), () => formatListing(entries));
    });
  });

  addCatalogOptions(
    program
      .command('find')
      .description(
        "find files by name in the catalog's backups (shell pattern; with a '/', matched against the whole path)",
      )
      .argument(
        '<pattern>',
        "e.g. '*.conf', 'report-2026-??.pdf', '/home/*/notes.txt' (paths as the server has them); names as ndmp ls prints them ('caf\\xe9*')",
      )
      .option(
        '--backup <id>',
        "only in this backup (its own files: an incremental's unchanged ones are in its full)",
      )
      .option('--limit <n>', 'at most this many hits (0: all)', '1000'),
  ).action(async (pattern: string, o: CatalogOpts & { backup?: string; limit: string }) => {
    const limit = Number(o.limit);
    if (!Number.isInteger(limit) || limit < 0)
      throw new DmaUsageError(`--limit ${o.limit}: a number of hits, or 0 for all`);
    await withCatalog(o, async (catalog) => {
      // One more than asked: whether the limit cut the list short.
      const found = await findOnServers(catalog, pattern, {
        backupId: o.backup === undefined ? undefined : backupId(o.backup),
        limit: limit === 0 ? 0 : limit + 1,
      });
      const cut = limit > 0 && found.length > limit;
      const hits = cut ? found.slice(0, limit) : found;
      print(o, jsonRows(hits), () => (hits.length ? formatFound(hits) : `nothing matches ${pattern}\n`));
      // On stderr: stdout stays the list (or the JSON array) a script reads.
      if (cut) {
        process.stderr.write(
          `ndmp: stopped at ${limit} hits (--limit); there are more: narrow the pattern, or give --limit 0 for all\n`,
        );
      }
      if (hits.length === 0) process.exitCode = EXIT_NDMP;
    });
  });

  addCatalogOptions(
    addConnectOptions(
      program
        .command('restore')
        .description(
          'restore files (or the whole backup) onto the server, under --to or in place; an incremental as of its date, each file from the backup of its chain that holds it; by Direct Access Recovery when the server offers it',
        )
        .argument('<backup>', 'backup id (see ndmp backups)')
        .argument(
          '[paths...]',
          "files or directories on the server, below the backup's source, as ndmp ls prints them (none: everything)",
        )
        .option(
          '--to <dir>',
          "absolute directory on the server; the files keep their paths below the backup's source under it (SOURCE/a/b goes to DIR/a/b)",
        )
        .option(
          '--in-place',
          "restore onto the backup's source itself (same as --to SOURCE): existing files are replaced as --overwrite says, files made since are left",
        )
        .option(
          '--server <host[:port]>',
          'restore onto this server: another one, or the one backed up where it answers now (it moved)',
        )
        .option(
          '--tape-server <host[:port]>',
          "where the backup's tape server answers now, when it moved (checked by its host id)",
        )
        .option('--tape-user <user>', 'user on the tape server (default: --user)')
        .option('--tape-password-file <file>', 'password file for the tape server')
        .addOption(
          new Option('--overwrite <when>', 'existing files: always, never, or older (ndmpd)').choices([
            'always',
            'never',
            'older',
          ]),
        )
        .option('--no-dar', 'read the stream from its start even when DAR could be used')
        .option(
          '--special',
          'restore device nodes, fifos and setuid/setgid bits as stored (sends RESTORE_SPECIAL=y; ndmpd withholds them by default)',
        )
        .option('--env <name=value>', 'more recover environment; repeatable', collect, [])
        .option('--stall-timeout <seconds>', STALL_HELP, String(WAITS.stallMs / 1000))
        .option('--tape-timeout <seconds>', TAPE_HELP, String(WAITS.tapeMotionMs / 1000))
        .option('-q, --quiet', 'no progress, only warnings and the result'),
    ),
  ).action(async (id: string, paths: string[], o: ConnectOpts & CatalogOpts & Record<string, unknown>) => {
    const ac = interruptible();
    await withCatalog(o, async (catalog) => {
      const backup = await getBackup(catalog, id);
      // Explicitly one or the other: a restore in place replaces live files (docs/dma.md, "Paths").
      if (Boolean(o.to) === Boolean(o.inPlace))
        throw new DmaUsageError(
          `give --to DIR (a directory on the server to restore under) or --in-place (onto ${sourceOf(backup)} itself)`,
        );
      const to = o.inPlace ? sourceOf(backup) : (o.to as string);
      // Server paths in, the catalog's paths inside the backup to the job (src/dma/server-paths.ts).
      const inner = paths.map((p) => toBackupPath(backup, p));
      const show = (p: string) => toServerPath(backup, p);
      const dataServer = o.server ? parseTarget(o.server as string) : undefined;
      const tapeServer = o.tapeServer ? parseTarget(o.tapeServer as string) : undefined;
      // The password is for the host we connect to: the one given, else the one the backup names.
      const cred = credentials(o, dataServer ?? parseTarget(backup.server));
      const tapeCred = tapeCredentials(o, tapeServer ?? parseTarget(backup.tapeServer));
      const view = progressView(`restore from backup ${backup.id}`);
      let r;
      try {
        r = await restoreAsOf({
          backup,
          all: await catalog.listBackups(),
          showPath: show,
          paths: inner,
          to,
          dataServer,
          tapeServer,
          dataCred: cred,
          tapeCred,
          overwrite: o.overwrite as string | undefined,
          noDar: o.dar === false,
          special: o.special === true,
          stallMs: stallMs(o.stallTimeout),
          tapeMotionMs: secondsOption('--tape-timeout', o.tapeTimeout),
          env: parseEnv(o.env as string[]),
          catalog,
          events: jobEvents(view, Boolean(o.quiet)),
          signal: ac.signal,
          pollMs: pollEveryMs(),
        });
      } finally {
        view.stop();
      }
      r = { ...r, files: r.files.map((f) => ({ ...f, path: show(f.path) })) };
      print(o, r, () => {
        const how = r.dar ? 'by Direct Access Recovery' : 'reading the stream from its start';
        const lines = r.files.map(
          (f) => `${f.ok ? 'restored' : 'FAILED  '} ${f.path}${f.ok ? '' : ` (${f.status})`}`,
        );
        const what = paths.length
          ? `${r.files.filter((f) => f.ok).length} of ${paths.length}`
          : 'the whole backup';
        return (
          `${lines.join('\n')}${lines.length ? '\n' : ''}` +
          `${r.ok ? 'restored' : 'restore failed:'} ${what} to ${to} ${how}, from ${r.tapesRead.join(', ')}` +
          `${r.passes.length > 1 ? ` (as of backup ${backup.id}: backups ${r.passes.map((x) => x.backupId).join(', ')})` : ''}` +
          `${r.reason ? ` (${r.reason})` : ''}\n`
        );
      });
      if (!r.ok) process.exitCode = EXIT_NDMP;
    });
  });

  addCatalogOptions(
    addConnectOptions(
      program
        .command('tapes')
        .description(
          "list a tape server's drives and (ndmpd's library) tapes: barcode, label, fill, and the cataloged backups on each",
        )
        .argument('<server>', 'HOST[:PORT]'),
    ),
  ).action(async (target: string, o: ConnectOpts & CatalogOpts) => {
    const addr = parseTarget(target);
    const client = await connectAgent(addr, credentials(o, addr));
    try {
      const c = await listTapeServer(client);
      const who = await identify(client);
      await withCatalog(o, async (catalog) => {
        const server = formatTarget(addr);
        // States and pools by the server's identity (docs/dma.md, "Pools and tapes").
        const media = listedTapes(
          c.media,
          await catalog.listTapes(),
          await catalog.listBackups(),
          who.id,
          server,
        );
        print(o, { ...c, media }, () => formatTapes(server, { ...c, media }));
      });
    } finally {
      await client.close();
    }
  });

  addConnectOptions(
    program
      .command('query')
      .description(
        'show what a server offers (as ndmjob -q): host, server, auth and connection types, backup types, file systems, tapes',
      )
      .argument('<server>', 'HOST[:PORT] (port 10000 by default)')
      .option('--json', 'print JSON instead of text'),
  ).action(async (target: string, o: ConnectOpts & { json?: boolean }) => {
    const addr = parseTarget(target);
    const client = await connectAgent(addr, credentials(o, addr));
    try {
      const r = await query(client);
      process.stdout.write(o.json ? `${toJson(r)}\n` : formatQuery(target, r));
    } finally {
      await client.close();
    }
  });

  registerVerifyCommand(program, {
    addConnectOptions,
    addCatalogOptions,
    withCatalog,
    getBackup,
    tapeCredentials: (o, s) => tapeCredentials(o as ConnectOpts & Record<string, unknown>, s),
    secondsOption,
    jobEvents,
    interruptible,
    stallHelp: STALL_HELP,
    tapeHelp: TAPE_HELP,
    exitFailed: EXIT_NDMP,
  });

  registerRetentionCommands(program, { addCatalogOptions, withCatalog, print });

  await program.parseAsync(argv);
}

/** The exit code, one line and a stable code for a failure. */
function failure(e: unknown): { code: number; line: string | null; errorCode: string } {
  // commander has printed its message (or the help, or the version) already, unless --json.
  if (e instanceof CommanderError)
    return { code: e.exitCode === 0 ? 0 : EXIT_USAGE, line: null, errorCode: e.code };
  if (e instanceof DmaUsageError || e instanceof CatalogError)
    return { code: EXIT_USAGE, line: e.message, errorCode: e.code };
  if (e instanceof NoTapeError || e instanceof DependantsError || e instanceof ForgetError)
    return { code: EXIT_USAGE, line: e.message, errorCode: e.code };
  if (e instanceof NdmpError) {
    const hint = e.ndmpErrorName === 'NDMP_NOT_AUTHORIZED_ERR' ? ' (wrong user or password?)' : '';
    return { code: EXIT_NDMP, line: `${e.message}${hint}`, errorCode: e.ndmpErrorName };
  }
  if (e instanceof TransportError) return { code: EXIT_TRANSPORT, line: e.message, errorCode: e.code };
  if (e instanceof JobWaitError) return { code: EXIT_NDMP, line: e.message, errorCode: e.code };
  // The tape asked for is not to be had, or the changer refused a move: the message says which and why.
  if (e instanceof TapeNotAvailableError || e instanceof ChangerError || e instanceof TapePositionError)
    return { code: EXIT_NDMP, line: e.message, errorCode: e.code };
  return { code: EXIT_USAGE, line: (e as Error).stack ?? String(e), errorCode: 'INTERNAL' };
}

/**
 * The last bound: once the work is done, ndmp leaves even if something still
 * holds the event loop (a socket a hung catalog keeps open), but never with
 * output still queued for a pipe (process.exit would cut it short).
 */
function leaveWhenIdle(): void {
  const t = setInterval(() => {
    if (process.stdout.writableLength === 0 && process.stderr.writableLength === 0) process.exit();
  }, WAITS.catalogCloseMs);
  t.unref();
}

/** Whether the command line asks for JSON (errors then come as JSON too, commander's included). */
const jsonWanted = process.argv.slice(2).includes('--json');

main(process.argv)
  .catch((e: unknown) => {
    const f = failure(e);
    if (jsonWanted && f.code !== 0) {
      const message = f.line ?? (e as Error).message.replace(/^error: /, '');
      process.stderr.write(jsonError(f.errorCode, message, f.code));
    } else if (f.line !== null) process.stderr.write(`ndmp: ${f.line}\n`);
    process.exitCode = f.code;
  })
  .finally(() => {
    if (interrupted) process.exitCode = 130;
    leaveWhenIdle();
  });
