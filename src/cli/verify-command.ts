// `ndmp verify BACKUP`: reads a backup back from its tapes and checks it
// against the catalog (docs/dma.md, "Verifying a backup"). Registered by
// ndmp.ts, which lends it its shared option and catalog helpers.

import type { Command } from 'commander';
import type { Catalog } from '../catalog/types.js';
import { parseTarget } from '../dma/agent.js';
import type { AgentAddress, Credentials } from '../dma/agent.js';
import type { JobEvents } from '../dma/backup-job.js';
import { TapePositionError } from '../dma/job.js';
import { VerifyConnectError, runVerify } from '../dma/verify-job.js';
import type { VerifyOutcome, VerifyProblem } from '../dma/verify-job.js';
import { WAITS } from '../dma/waits.js';
import { progressView } from './progress.js';
import type { ProgressView } from './progress.js';
import { size, toJson } from './query-format.js';

type Opts = Record<string, unknown> & { json?: boolean; quiet?: boolean };

/** What ndmp.ts shares with its commands. */
export interface DmaCommandKit {
  addConnectOptions(cmd: Command): Command;
  addCatalogOptions(cmd: Command): Command;
  withCatalog<T>(o: Opts, f: (c: Catalog) => Promise<T>): Promise<T>;
  getBackup(catalog: Catalog, id: string): ReturnType<Catalog['getBackup']>;
  /** The tape server's credentials (--tape-user, --tape-password-file, else the connect options). */
  tapeCredentials(o: Opts, server: AgentAddress): Credentials;
  secondsOption(flag: string, v: unknown): number;
  jobEvents(view: ProgressView, quiet: boolean): JobEvents;
  interruptible(): AbortController;
  stallHelp: string;
  tapeHelp: string;
  /** The exit code of a job that failed. */
  exitFailed: number;
}

function line(p: VerifyProblem): string {
  return `  ${p.code}${p.offset === null ? '' : ` at stream byte ${p.offset}`}: ${p.message}`;
}

export function formatVerify(r: VerifyOutcome): string {
  const out: string[] = [];
  for (const p of r.problems) out.push(line(p));
  for (const w of r.warnings) out.push(`  warning: ${w.message}`);
  const what =
    `backup ${r.backup}: ${r.entries} entries, ${size(r.bytes)} of ${size(r.expectedBytes)} read back ` +
    `from ${r.tapesRead.join(', ') || 'no tape'}, checked against ${r.rows} catalog rows`;
  out.push(
    r.ok
      ? `verified ${what}${r.warnings.length ? ` (${r.warnings.length} warnings)` : ''}`
      : `verify FAILED: ${what}: ${r.problems.length} problems`,
  );
  return `${out.join('\n')}\n`;
}

export function registerVerifyCommand(program: Command, kit: DmaCommandKit): void {
  kit
    .addCatalogOptions(
      kit.addConnectOptions(
        program
          .command('verify')
          .description(
            "read a backup back from its tapes (through the tape server's changer, when it has one) and check every entry against the catalog; exit 1 on any mismatch",
          )
          .argument('<backup>', 'backup id (see ndmp backups)')
          .option(
            '--tape-server <host[:port]>',
            "where the backup's tapes are now (default: the tape server the catalog recorded)",
          )
          .option('--tape-user <user>', 'user on the tape server (default: --user)')
          .option(
            '--tape-password-file <file>',
            'password file for the tape server (default: --password-file)',
          )
          .option('--stall-timeout <seconds>', kit.stallHelp, String(WAITS.stallMs / 1000))
          .option('--tape-timeout <seconds>', kit.tapeHelp, String(WAITS.tapeMotionMs / 1000))
          .option('-q, --quiet', 'no progress, only warnings and the result'),
      ),
    )
    .action(async (id: string, o: Opts) => {
      const ac = kit.interruptible();
      await kit.withCatalog(o, async (catalog) => {
        const backup = (await kit.getBackup(catalog, id))!;
        const server = parseTarget((o.tapeServer as string | undefined) ?? backup.tapeServer);
        const view = progressView(`verify backup ${backup.id}`);
        let r: VerifyOutcome;
        try {
          r = await runVerify({
            backup,
            tapeServer: o.tapeServer ? server : undefined,
            tapeCred: kit.tapeCredentials(o, server),
            catalog,
            stallMs: kit.secondsOption('--stall-timeout', o.stallTimeout),
            tapeMotionMs: kit.secondsOption('--tape-timeout', o.tapeTimeout),
            events: kit.jobEvents(view, Boolean(o.quiet)),
            signal: ac.signal,
          });
        } catch (e) {
          // The stream could not be reached at all: a failed verify, with the reason (exit 1).
          if (e instanceof VerifyConnectError || e instanceof TapePositionError) {
            process.stderr.write(`ndmp: verify failed: ${e.message}\n`);
            process.exitCode = kit.exitFailed;
            return;
          }
          throw e;
        } finally {
          view.stop();
        }
        process.stdout.write(o.json ? `${toJson(r)}\n` : formatVerify(r));
        if (!r.ok) process.exitCode = kit.exitFailed;
      });
    });
}
