// `ndmpd tape ...`: the administrator's hands on the virtual tape library —
// create, list, label, protect, load and unload tapes, and export a tape file
// so that ordinary tools (GNU tar) can read a backup without any NDMP at all.

import { createWriteStream, existsSync } from 'node:fs';
import { sep } from 'node:path';
import { Argument, Command } from 'commander';
import { Library, LibraryError, placeName } from '../devices/library.js';
import type { Place, PlacedTape } from '../devices/library.js';
import { CHANGER_DEVICE, LibraryChanger } from '../devices/library-changer.js';
import { LibraryLockedError, lockLibrary } from '../devices/library-lock.js';
import type { LibraryLock } from '../devices/library-lock.js';
import { openTapeImage, tapeFileExtent } from '../devices/tape-image.js';
import { MAX_RECORD_SIZE } from '../devices/tape.js';
import { PaxParser } from '../backup/pax-parser.js';
import { PaxFormatError } from '../backup/pax-layout.js';
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
  slots?: string;
  tapeCapacity?: string;
}

/** The library the server would use, found by the same settings (file, then flags). */
function openLibrary(o: LibraryFlags): Library {
  const file = o.config ? readConfigFile(o.config) : {};
  const flags: ConfigInput = {};
  if (o.stateDir) flags['state-dir'] = o.stateDir;
  if (o.library) flags.library = o.library;
  if (o.drives) flags.drives = o.drives;
  if (o.slots) flags.slots = o.slots;
  if (o.tapeCapacity) flags['tape-capacity'] = o.tapeCapacity;
  const cfg = resolveConfig(file, flags);
  // The default library lies in the state dir: create that as the server would (0700), not as mkdir -p.
  if (cfg.library.startsWith(cfg.stateDir + sep)) prepareStateDir(cfg.stateDir);
  const seed = existingHostId(cfg.stateDir);
  try {
    return Library.open(cfg.library, {
      drives: cfg.drives,
      slots: cfg.slots,
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
    .option('--slots <n>', 'number of storage slots (default 8, or as configured)')
    .option('--tape-capacity <size>', 'default size of new tapes (default 64G, or as configured)');
}

/**
 * What an action needs of the library lock (docs/changer.md §2):
 * `none` only reads; `moves` must own the moves, so it is refused while a
 * server holds the library; `create` takes the lock when it can, and while a
 * server runs makes its tapes outside the changer (the server places them).
 */
type LockNeed = 'none' | 'moves' | 'create';

/** The refusal of a command while a server owns the library. */
function serverRuns(e: LibraryLockedError): CommandError {
  return new CommandError(
    `${e.message}, which owns the moves: move tapes through its changer (${CHANGER_DEVICE}, e.g. ` +
      `ndmjob -o load=1000 -r ${CHANGER_DEVICE} -T HOST:PORT/4,USER,PASS), or stop the server first`,
    1,
  );
}

/** Libraries a running server holds (its lock was refused): `create` then leaves placing to it. */
const heldByServer = new WeakSet<Library>();

/** Runs an action with the library open; a failing operation becomes exit status 1. */
function act<A extends unknown[]>(
  fn: (lib: Library, ...args: A) => void | Promise<void>,
  need: LockNeed = 'none',
) {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const lib = openLibrary(cmd.optsWithGlobals<LibraryFlags>());
    let lock: LibraryLock | null = null;
    let running = false;
    if (need !== 'none') {
      try {
        lock = lockLibrary(lib.dir, `ndmpd tape ${cmd.name()}`);
      } catch (e) {
        if (!(e instanceof LibraryLockedError)) throw e;
        if (need === 'moves') throw serverRuns(e);
        running = true;
      }
    }
    if (running) heldByServer.add(lib);
    try {
      await fn(lib, ...(args.slice(0, -1) as A));
    } catch (e) {
      if (e instanceof CommandError || e instanceof ConfigError) throw e;
      throw new CommandError((e as Error).message, 1);
    } finally {
      lock?.release();
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
  const outside = heldByServer.has(lib);
  const made = lib.createTapes({
    count,
    ...(o.prefix !== undefined ? { prefix: o.prefix } : {}),
    ...(o.capacity !== undefined ? { capacity: BigInt(parseSize(o.capacity, '--capacity')) } : {}),
    ...(o.label !== undefined ? { label: o.label } : {}),
    outside,
  });
  process.stdout.write(`${made.join('\n')}\n`);
  if (outside) {
    process.stderr.write(
      `ndmpd: a running server owns the library's moves: the new tapes enter free slots at its next ` +
        `inventory (INITIALIZE ELEMENT STATUS, e.g. ndmjob -o init-elem-status) or restart\n`,
    );
  }
}

/** Where a tape is, for people: `drive0`, `slot 3`, `mailslot 1`, and its element address. */
function location(changer: LibraryChanger, p: PlacedTape | null): { where: string; element: number | null } {
  return p
    ? { where: placeName(p.place), element: changer.addressOf(p.place) }
    : { where: '-', element: null };
}

function list(lib: Library, o: { json?: boolean }): void {
  const tapes = lib.listTapes();
  const changer = new LibraryChanger(lib);
  if (o.json) {
    const out = tapes.map((t) => {
      const at = location(changer, t.place);
      return {
        barcode: t.barcode,
        label: t.label,
        writtenLabel: t.writtenLabel,
        capacity: Number(t.capacity),
        earlyWarning: Number(t.earlyWarning),
        usedBytes: Number(t.usedBytes),
        records: t.records,
        files: t.filemarks,
        blank: t.blank,
        writeProtected: t.writeProtected,
        created: t.created.toISOString(),
        loadedIn: t.loadedIn,
        location: t.place ? at.where : null,
        element: at.element,
        sourceSlot: t.place?.sourceSlot ?? null,
        path: t.path,
      };
    });
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  if (tapes.length === 0) {
    process.stdout.write(`no tapes in ${lib.dir}/tapes (make some with: ndmpd tape create)\n`);
    return;
  }
  const rows = [['BARCODE', 'LABEL', 'USED / CAPACITY', 'FILES', 'PROTECTED', 'LOCATION', 'ELEMENT']];
  for (const t of tapes) {
    const at = location(changer, t.place);
    rows.push([
      t.barcode,
      t.label || '-',
      `${humanSize(t.usedBytes)} / ${humanSize(t.capacity)}`,
      String(t.filemarks),
      t.writeProtected ? 'yes' : 'no',
      at.where,
      at.element === null ? '-' : `@${at.element}`,
    ]);
  }
  process.stdout.write(table(rows));
}

function drives(lib: Library, o: { json?: boolean }): void {
  const changer = new LibraryChanger(lib);
  const inDrive = new Map(
    lib
      .contents()
      .filter((c) => c.place.kind === 'drive')
      .map((c) => [(c.place as { name: string }).name, c]),
  );
  const ds = lib.drives().map((d, i) => ({
    ...d,
    element: changer.addressOf({ kind: 'drive', name: d.name, index: i }),
    loaded: lib.loaded(d.name),
    sourceSlot: inDrive.get(d.name)?.sourceSlot ?? null,
  }));
  if (o.json) {
    process.stdout.write(`${JSON.stringify(ds, null, 2)}\n`);
    return;
  }
  const rows = [['DRIVE', 'MODEL', 'SERIAL', 'LOADED', 'ELEMENT', 'FROM']];
  for (const d of ds) {
    rows.push([
      d.name,
      d.model,
      d.serial,
      d.loaded ?? '-',
      `@${d.element}`,
      d.sourceSlot === null ? '-' : `slot ${d.sourceSlot}`,
    ]);
  }
  process.stdout.write(table(rows));
}

function slots(lib: Library, o: { json?: boolean }): void {
  const changer = new LibraryChanger(lib);
  const full = new Map(lib.contents().map((c) => [placeName(c.place), c]));
  const rows = lib
    .places()
    .filter((p) => p.kind !== 'drive')
    .map((p) => ({
      place: placeName(p),
      element: changer.addressOf(p),
      barcode: full.get(placeName(p))?.barcode ?? null,
    }));
  if (o.json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  const out = [['PLACE', 'ELEMENT', 'TAPE']];
  for (const r of rows) out.push([r.place, `@${r.element}`, r.barcode ?? '-']);
  process.stdout.write(table(out));
}

/** `drive0`, `slot3` / `slot:3` / `3`, `mailslot` / `mailslot1`. */
function parsePlace(lib: Library, text: string): Place {
  const d = lib.drives().findIndex((x) => x.name === text);
  if (d >= 0) return { kind: 'drive', name: text, index: d };
  const m = /^(slot|mailslot)?:?(\d+)?$/.exec(text);
  if (m && (m[1] || m[2])) {
    const kind = m[1] === 'mailslot' ? 'mailslot' : 'slot';
    const n = m[2] ? Number(m[2]) : kind === 'mailslot' ? 1 : NaN;
    const count = kind === 'slot' ? lib.slotCount : lib.mailslotCount;
    if (Number.isInteger(n) && n >= 1 && n <= count) return { kind, number: n };
    throw usage(`${kind} ${m[2] ?? ''} does not exist (${kind}s 1 to ${count})`);
  }
  throw usage(`'${text}' is not a place: a drive (drive0), a slot (slot3) or the mail slot (mailslot)`);
}

function move(lib: Library, barcode: string, to: string): void {
  const dest = parsePlace(lib, to);
  const here = lib.whereIs(barcode);
  if (!here) throw new LibraryError(`${barcode} is in no slot, drive or mail slot (see: ndmpd tape list)`);
  lib.move(here.place, dest);
  process.stdout.write(`${barcode} moved from ${placeName(here.place)} to ${placeName(dest)}\n`);
}

/** One tape file of an export: `BARCODE:FILE` (--then). */
function parsePart(text: string): { barcode: string; file: number } {
  const m = /^(.+):(\d+)$/.exec(text);
  if (!m) throw usage(`--then '${text}' is not BARCODE:FILE (e.g. NDM002:0)`);
  return { barcode: m[1]!, file: nonNegative(m[2]!, `the file number of --then ${text}`, 0x7fffffff) };
}

/**
 * Writes tape files one after the other, as one stream: a backup that spans
 * tapes is its parts in order (the DMA's catalog lists them: docs/dma.md,
 * "Verifying a backup"), and a tape holds no pointer to the tape its stream
 * goes on on. The records are read through the tape's index, so a record
 * whose bytes changed (its data CRC, docs/tape-image.md) stops the export as
 * it stops a restore. A pax stream is followed as it goes out: when it does
 * not reach its end-of-archive marker, the backup continues on a tape not
 * given, and the export says so and fails.
 */
async function exportFile(
  lib: Library,
  barcode: string,
  o: { file: string; then: string[]; output?: string },
): Promise<void> {
  const parts = [{ barcode, file: nonNegative(o.file, '--file', 0x7fffffff) }, ...o.then.map(parsePart)];
  if (!o.output && process.stdout.isTTY) {
    throw usage('will not write tape data to a terminal: pipe it (| tar -tvf -) or give -o FILE');
  }
  // Every part is checked to exist before a byte is written.
  const paths = parts.map((part) => {
    const path = lib.tapePath(part.barcode);
    if (!existsSync(path)) throw new LibraryError(`there is no tape ${part.barcode} in ${lib.dir}/tapes`);
    if (!tapeFileExtent(path, part.file))
      throw new LibraryError(`tape ${part.barcode} has no file ${part.file}`);
    return path;
  });
  const out = o.output ? createWriteStream(o.output) : process.stdout;
  let gone: Error | null = null;
  out.on('error', (e) => (gone ??= e));
  const archive = new ArchiveWatch();
  const buf = Buffer.allocUnsafe(MAX_RECORD_SIZE);
  try {
    for (let i = 0; i < parts.length && !gone; i++) {
      const part = parts[i]!;
      const tape = openTapeImage(paths[i]!, { readOnly: true });
      try {
        if (tape.spaceFilemarks(part.file) !== 0)
          throw new LibraryError(`tape ${part.barcode} has no file ${part.file}`);
        for (;;) {
          const r = tape.readRecord(buf, { crossFilemark: false });
          if (r.kind !== 'record') break;
          const record = Buffer.from(buf.subarray(0, r.copied));
          archive.push(record);
          if (!out.write(record)) await drained(out);
          if (gone) break;
        }
      } finally {
        tape.close();
      }
    }
  } finally {
    await new Promise<void>((done) => (out === process.stdout ? done() : out.end(done)));
  }
  // The reader went away (`| head`): what it wanted, it got.
  if (gone && (gone as NodeJS.ErrnoException).code !== 'EPIPE') throw gone;
  if (gone) return;
  const last = parts[parts.length - 1]!;
  const problem = archive.problem(`tape ${last.barcode} file ${last.file}`);
  if (problem) throw new CommandError(problem, 1);
}

function drained(out: NodeJS.WritableStream): Promise<void> {
  return new Promise((done) => {
    const go = (): void => {
      out.off('drain', go);
      out.off('error', go);
      done();
    };
    out.once('drain', go);
    out.once('error', go);
  });
}

/**
 * Follows a pax stream as it is exported (src/backup/pax-parser.ts: headers
 * only, data is not buffered): says whether it reached its end-of-archive
 * marker. A stream whose first block is no ustar header (a dump, say) is not
 * followed.
 */
class ArchiveWatch {
  private parser: PaxParser | null = new PaxParser();
  private first = true;
  private error: string | null = null;
  private readonly noop = { onEntry: () => undefined, onData: () => undefined };

  push(record: Uint8Array): void {
    if (this.first) {
      this.first = false;
      // 'ustar' at offset 257 of the first block: POSIX and GNU tar alike.
      if (Buffer.from(record.subarray(257, 262)).toString('latin1') !== 'ustar') this.parser = null;
    }
    if (!this.parser || this.parser.ended) return;
    try {
      this.parser.push(record, this.noop);
    } catch (e) {
      if (!(e instanceof PaxFormatError)) throw e;
      this.error = e.message;
      this.parser = null;
    }
  }

  /** What is wrong with the exported archive, or null. */
  problem(lastPart: string): string | null {
    if (this.first) return null; // nothing exported: an empty tape file
    if (this.error)
      return `the exported archive is damaged (${this.error}); 'ndmp verify' names the entry it is in`;
    if (!this.parser || this.parser.ended) return null;
    return (
      `the archive does not end on ${lastPart} (it stops at stream byte ${this.parser.offset}, ` +
      'inside an entry): the backup continues on another tape; export it with --then BARCODE:FILE ' +
      "for each further part, in order ('ndmp backups --json' lists a backup's tapes)"
    );
  }
}

export function tapeCommand(): Command {
  const tape = usageErrors(new Command('tape')).description(
    'manage the virtual tape library: tapes, drives, and exporting tape files',
  );
  tape.addHelpText(
    'after',
    `
Tapes live in <library>/tapes/<BARCODE> (with <BARCODE>.idx); a drive, a
slot or the mail slot holds a tape while <library>/drives/<drive>,
<library>/slots/<n> or <library>/mailslot/1 links to it. While a server runs
it owns the moves (its changer, ${CHANGER_DEVICE}): load, unload, move, label and
protect are refused then; list, drives, slots and export still work.

Examples:
  ndmpd tape create --count 4 --label weekly
  ndmpd tape load NDM001 drive0
  ndmpd tape move NDM003 mailslot
  ndmpd tape export NDM001 --file 0 | tar -tvf -
  ndmpd tape export NDM001 --file 3 --then NDM002:0 | tar -tvf -`,
  );

  withLibraryOptions(tape.command('create'))
    .description('make new blank tapes and print their barcodes')
    .option('--count <n>', 'how many', '1')
    .option('--prefix <p>', 'barcode prefix; a 3-digit number follows', 'NDM')
    .option('--capacity <size>', 'size of each tape (e.g. 10G, 512M, 1T; default --tape-capacity)')
    .option('--label <text>', 'label written on each tape')
    .action(act(create, 'create'));

  withLibraryOptions(tape.command('list'))
    .description('list the tapes: barcode, label, used / capacity, files, write protection, where it is')
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
      }, 'moves'),
    );

  withLibraryOptions(tape.command('protect'))
    .description('turn the write-protect tab of a tape on or off')
    .argument('<barcode>')
    .addArgument(new Argument('<state>').choices(['on', 'off']))
    .action(
      act((lib, barcode: string, state: string) => {
        lib.protect(barcode, state === 'on');
        process.stdout.write(`${barcode}: write protection ${state}\n`);
      }, 'moves'),
    );

  withLibraryOptions(tape.command('load'))
    .description('put a tape into an empty drive (from its slot)')
    .argument('<barcode>')
    .argument('<drive>', 'e.g. drive0 (see: ndmpd tape drives)')
    .action(
      act((lib, barcode: string, drive: string) => {
        lib.load(barcode, drive);
        process.stdout.write(`${barcode} loaded in ${drive}\n`);
      }, 'moves'),
    );

  withLibraryOptions(tape.command('unload'))
    .description('take the tape out of a drive, back to the slot it came from (or the first empty one)')
    .argument('<drive>')
    .action(
      act((lib, drive: string) => {
        const barcode = lib.unload(drive);
        process.stdout.write(barcode ? `${barcode} unloaded from ${drive}\n` : `${drive} was empty\n`);
      }, 'moves'),
    );

  withLibraryOptions(tape.command('move'))
    .description('move a tape to an empty drive, slot or the mail slot (e.g. slot3, mailslot)')
    .argument('<barcode>')
    .argument('<place>', 'drive0, slot3, mailslot')
    .action(act(move, 'moves'));

  withLibraryOptions(tape.command('slots'))
    .description('list the storage slots and the mail slot: element address, tape')
    .option('--json', 'print JSON')
    .action(act(slots));

  withLibraryOptions(tape.command('drives'))
    .description('list the drives: name, model, serial, loaded tape, element address, slot it came from')
    .option('--json', 'print JSON')
    .action(act(drives));

  withLibraryOptions(tape.command('export'))
    .description(
      "write a tape file's bytes to stdout (or -o FILE), e.g. to read a backup with tar; with --then, the further parts of a backup that spans tapes after it",
    )
    .argument('<barcode>')
    .requiredOption('--file <n>', 'tape file number, from 0 (files are separated by filemarks)')
    .option(
      '--then <barcode:file>',
      "the next part of the stream: tape file FILE of tape BARCODE; repeatable, in order ('ndmp backups --json' lists a backup's tapes)",
      (v: string, prev: string[]) => [...prev, v],
      [],
    )
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .addHelpText(
      'after',
      `
A backup that fills a tape goes on at a tape file of the next tape; the tapes
do not record which tape that is, the DMA's catalog does. Give the parts in
order and they come out as one stream:

  ndmpd tape export NDM001 --file 3 --then NDM002:0 --then NDM003:0 | tar -tvf -

Records are read through the tape's index and checked against their data CRCs
(docs/tape-image.md): a changed record stops the export (exit 1). A tar stream
that does not reach its end-of-archive marker means a part is missing (exit 1).`,
    )
    .action(act(exportFile));

  return tape;
}
