// `ndmpd tape ...`: the administrator's hands on the virtual tape library —
// create, list, label, protect, load and unload tapes, and export a tape file
// so that ordinary tools (GNU tar) can read a backup without any NDMP at all.

import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Argument, Command } from 'commander';
import { Library, LibraryError } from '../devices/library.js';
import { tapeFileExtent } from '../devices/tape-image.js';
import type { ConfigInput } from './server-config.js';
import {
  ConfigError,
  existingHostId,
  parseSize,
  prepareStateDir,
  readConfigFile,
  resolveConfig,
} from './server-config.js';
import { CodedError } from '../util/coded-error.js';

/** An error the `ndmpd` entry point reports as one line with this exit status. */
export class CommandError extends CodedError {
  constructor(
    message: string,
    readonly exitCode: 1 | 2,
  ) {
    super(message);
  }

  /** Exit code 2 is a command line that makes no sense; 1 a command that failed. */
  get code(): string {
    return this.exitCode === 2 ? 'CLI_USAGE' : 'CLI_COMMAND_FAILED';
  }
}

const usage = (msg: string) => new CommandError(msg, 2);

interface LibraryFlags {
  config?: string;
  stateDir?: string;
  library?: string;
  drives?: string;
  tapeCapacity?: string;
}

/** The library the server would use, found by the same settings (file, then flags). */
function openLibrary(o: LibraryFlags): Library {
  const file = o.config ? readConfigFile(o.config) : {};
  const flags: ConfigInput = {};
  if (o.stateDir) flags['state-dir'] = o.stateDir;
  if (o.library) flags.library = o.library;
  if (o.drives) flags.drives = o.drives;
  if (o.tapeCapacity) flags['tape-capacity'] = o.tapeCapacity;
  const cfg = resolveConfig(file, flags);
  // The default library lies in the state dir: create that as the server would (0700), not as mkdir -p.
  if (cfg.library.startsWith(cfg.stateDir + sep)) prepareStateDir(cfg.stateDir);
  const seed = existingHostId(cfg.stateDir);
  try {
    return Library.open(cfg.library, {
      drives: cfg.drives,
      capacity: BigInt(cfg.tapeCapacity),
      ...(seed ? { serialSeed: seed } : {}),
    });
  } catch (e) {
    // A library we cannot open is a setup problem, not a failed operation.
    if (e instanceof LibraryError) throw new ConfigError(e.message);
    throw e;
  }
}

/** Usage mistakes: one line on stderr, exit 2 (help and --version still exit 0). */
function usageErrors(cmd: Command): Command {
  return cmd
    .configureOutput({
      outputError: (str, write) =>
        write(`ndmpd: ${str.replace(/^error: /, '').trimEnd()} (see: ${commandPath(cmd)} --help)\n`),
    })
    .exitOverride((err) => {
      process.exit(err.exitCode === 0 ? 0 : 2);
    });
}

function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

function withLibraryOptions(cmd: Command): Command {
  return usageErrors(cmd)
    .option('--library <dir>', 'the library folder (default: as the server, <state-dir>/library)')
    .option('-c, --config <file>', "the server's TOML config file (for library, state-dir, drives)")
    .option('--state-dir <dir>', "the server's state dir (to find the default library)")
    .option('--drives <n>', 'number of drives (default 2, or as configured)')
    .option('--tape-capacity <size>', 'default size of new tapes (default 64G, or as configured)');
}

/** Runs an action with the library open; a failing operation becomes exit status 1. */
function act<A extends unknown[]>(fn: (lib: Library, ...args: A) => void | Promise<void>) {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const lib = openLibrary(cmd.optsWithGlobals<LibraryFlags>());
    try {
      await fn(lib, ...(args.slice(0, -1) as A));
    } catch (e) {
      if (e instanceof CommandError || e instanceof ConfigError) throw e;
      throw new CommandError((e as Error).message, 1);
    }
  };
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function humanSize(n: bigint | number): string {
  let v = Number(n);
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  const digits = u === 0 || v >= 100 || Number.isInteger(v) ? 0 : 1;
  return `${v.toFixed(digits)} ${UNITS[u]}`;
}

/** Left-aligned columns, two spaces apart. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

function nonNegative(v: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!(n <= max)) throw usage(`${what} must be a whole number from 0 to ${max}, not '${v}'`);
  return n;
}

function create(
  lib: Library,
  o: { count: string; prefix?: string; capacity?: string; label?: string },
): void {
  const count = nonNegative(o.count, '--count', 10_000);
  if (count === 0) throw usage('--count must be at least 1');
  const made = lib.createTapes({
    count,
    ...(o.prefix !== undefined ? { prefix: o.prefix } : {}),
    ...(o.capacity !== undefined ? { capacity: BigInt(parseSize(o.capacity, '--capacity')) } : {}),
    ...(o.label !== undefined ? { label: o.label } : {}),
  });
  process.stdout.write(`${made.join('\n')}\n`);
}

function list(lib: Library, o: { json?: boolean }): void {
  const tapes = lib.listTapes();
  if (o.json) {
    const out = tapes.map((t) => ({
      barcode: t.barcode,
      label: t.label,
      capacity: Number(t.capacity),
      earlyWarning: Number(t.earlyWarning),
      usedBytes: Number(t.usedBytes),
      records: t.records,
      files: t.filemarks,
      blank: t.blank,
      writeProtected: t.writeProtected,
      created: t.created.toISOString(),
      loadedIn: t.loadedIn,
      path: t.path,
    }));
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  if (tapes.length === 0) {
    process.stdout.write(`no tapes in ${lib.dir}/tapes (make some with: ndmpd tape create)\n`);
    return;
  }
  const rows = [['BARCODE', 'LABEL', 'USED / CAPACITY', 'FILES', 'PROTECTED', 'LOADED']];
  for (const t of tapes) {
    rows.push([
      t.barcode,
      t.label || '-',
      `${humanSize(t.usedBytes)} / ${humanSize(t.capacity)}`,
      String(t.filemarks),
      t.writeProtected ? 'yes' : 'no',
      t.loadedIn ?? '-',
    ]);
  }
  process.stdout.write(table(rows));
}

function drives(lib: Library, o: { json?: boolean }): void {
  const ds = lib.drives().map((d) => ({ ...d, loaded: lib.loaded(d.name) }));
  if (o.json) {
    process.stdout.write(`${JSON.stringify(ds, null, 2)}\n`);
    return;
  }
  const rows = [['DRIVE', 'MODEL', 'SERIAL', 'LOADED']];
  for (const d of ds) rows.push([d.name, d.model, d.serial, d.loaded ?? '-']);
  process.stdout.write(table(rows));
}

async function exportFile(
  lib: Library,
  barcode: string,
  o: { file: string; output?: string },
): Promise<void> {
  const fileNum = nonNegative(o.file, '--file', 0x7fffffff);
  if (!o.output && process.stdout.isTTY) {
    throw usage('will not write tape data to a terminal: pipe it (| tar -tvf -) or give -o FILE');
  }
  const path = lib.tapePath(barcode);
  if (!existsSync(path)) throw new LibraryError(`there is no tape ${barcode} in ${lib.dir}/tapes`);
  const extent = tapeFileExtent(path, fileNum);
  if (!extent) throw new LibraryError(`tape ${barcode} has no file ${fileNum}`);
  const out = o.output ? createWriteStream(o.output) : process.stdout;
  if (extent.end === extent.start) {
    // An empty tape file (two filemarks in a row): nothing to copy, but -o still makes the file.
    await new Promise<void>((done, fail) => {
      out.once('error', fail);
      out.end(done);
    });
    return;
  }
  const src = createReadStream(path, { start: Number(extent.start), end: Number(extent.end) - 1 });
  try {
    await pipeline(src, out);
  } catch (e) {
    // The reader went away (`| head`): what it wanted, it got.
    if ((e as NodeJS.ErrnoException).code === 'EPIPE') return;
    throw e;
  }
}

export function tapeCommand(): Command {
  const tape = usageErrors(new Command('tape')).description(
    'manage the virtual tape library: tapes, drives, and exporting tape files',
  );
  tape.addHelpText(
    'after',
    `
Tapes live in <library>/tapes/<BARCODE> (with <BARCODE>.idx), and a drive
holds a tape while <library>/drives/<drive> links to it. Load and unload
tapes while no DMA is using the drive.

Examples:
  ndmpd tape create --count 4 --label weekly
  ndmpd tape load NDM001 drive0
  ndmpd tape export NDM001 --file 0 | tar -tvf -`,
  );

  withLibraryOptions(tape.command('create'))
    .description('make new blank tapes and print their barcodes')
    .option('--count <n>', 'how many', '1')
    .option('--prefix <p>', 'barcode prefix; a 3-digit number follows', 'NDM')
    .option('--capacity <size>', 'size of each tape (e.g. 10G, 512M, 1T; default --tape-capacity)')
    .option('--label <text>', 'label written on each tape')
    .action(act(create));

  withLibraryOptions(tape.command('list'))
    .description('list the tapes: barcode, label, used / capacity, files, write protection, drive')
    .option('--json', 'print JSON (sizes in bytes)')
    .action(act(list));

  withLibraryOptions(tape.command('label'))
    .description('set the label of a tape')
    .argument('<barcode>')
    .argument('<text>')
    .action(
      act((lib, barcode: string, text: string) => {
        lib.label(barcode, text);
        process.stdout.write(`${barcode}: label '${text}'\n`);
      }),
    );

  withLibraryOptions(tape.command('protect'))
    .description('turn the write-protect tab of a tape on or off')
    .argument('<barcode>')
    .addArgument(new Argument('<state>').choices(['on', 'off']))
    .action(
      act((lib, barcode: string, state: string) => {
        lib.protect(barcode, state === 'on');
        process.stdout.write(`${barcode}: write protection ${state}\n`);
      }),
    );

  withLibraryOptions(tape.command('load'))
    .description('put a tape into an empty drive')
    .argument('<barcode>')
    .argument('<drive>', 'e.g. drive0 (see: ndmpd tape drives)')
    .action(
      act((lib, barcode: string, drive: string) => {
        lib.load(barcode, drive);
        process.stdout.write(`${barcode} loaded in ${drive}\n`);
      }),
    );

  withLibraryOptions(tape.command('unload'))
    .description('take the tape out of a drive')
    .argument('<drive>')
    .action(
      act((lib, drive: string) => {
        const barcode = lib.unload(drive);
        process.stdout.write(barcode ? `${barcode} unloaded from ${drive}\n` : `${drive} was empty\n`);
      }),
    );

  withLibraryOptions(tape.command('drives'))
    .description('list the drives: name, model, serial, loaded tape')
    .option('--json', 'print JSON')
    .action(act(drives));

  withLibraryOptions(tape.command('export'))
    .description("write one tape file's bytes to stdout (or -o FILE), e.g. to read a backup with tar")
    .argument('<barcode>')
    .requiredOption('--file <n>', 'tape file number, from 0 (files are separated by filemarks)')
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .action(act(exportFile));

  return tape;
}
