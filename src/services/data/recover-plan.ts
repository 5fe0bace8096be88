// What a DATA_START_RECOVER asks for (docs/protocol.md §9.2): which parts of the
// backup, restored where, with which options. Checked before the reply, so a
// request the server will not carry out is refused with the reason, and a
// restore can only ever write inside an export.
//
// Names are bytes (docs/names.md): nlist paths arrive as lossless strings
// (wire/xdr.ts), so comparing them with archive paths as strings compares
// their bytes; messages print them with escapeName.

import { normalizeArchivePath } from '../../backup/restore.js';
import type { OverwritePolicy } from '../../backup/restore.js';
import { ConfineError, confineToExport } from '../../util/confine.js';
import { escapeName } from '../../util/byte-name.js';
import { envFlag } from '../../util/env-flag.js';
import { INVALID_U64, NdmpError } from '../../wire/index.js';
import type { NdmpVersion, NlistName, Pval } from '../../wire/index.js';

/** One nlist entry: a path of the backup and where it goes. */
export interface RecoverTarget {
  /** Position in the nlist. */
  readonly index: number;
  /** original_path as the DMA sent it: the LOG_FILE name (docs/protocol.md §9.4). */
  readonly name: string;
  /** The path in the archive, '/'-separated, without leading './' or '/'; '' = the whole backup. */
  readonly original: string;
  /** Where it goes, relative to the plan's destRoot ('' = destRoot itself). */
  readonly targetRel: string;
  /** The stream offset of its first header (from the DMA's index), or null if unknown. */
  readonly fhInfo: bigint | null;
}

export interface RecoverPlan {
  /** The export (real path) every target lies in: nothing is written outside it. */
  readonly destRoot: string;
  /** Empty nlist: the whole backup goes to PREFIX. */
  readonly targets: readonly RecoverTarget[];
  /** DIRECT=y and every target has an fh_info: read only the regions named (Direct Access Recovery). */
  readonly direct: boolean;
  readonly overwrite: OverwritePolicy;
  /** RECURSIVE=n: a directory in the nlist comes back without its contents. */
  readonly recursive: boolean;
  /** RESTORE_SPECIAL=y: device nodes, fifos and setuid/setgid bits restored as stored (RestoreOptions.special). */
  readonly special: boolean;
}

export interface ExportRef {
  readonly name: string;
  readonly path: string;
}

/**
 * The plan for a recover (or, with `fileHistory`, a RECOVER_FILEHIST, whose
 * destinations are ignored). `specialDefault`: RESTORE_SPECIAL when the DMA
 * does not send it (the server's `[restore] special`). Throws ILLEGAL_ARGS
 * naming what is wrong.
 */
export function planRecover(
  version: NdmpVersion,
  env: readonly Pval[],
  nlist: readonly NlistName[],
  exports: readonly ExportRef[],
  fileHistory: boolean,
  specialDefault = false,
): RecoverPlan {
  const one = (name: string): string | undefined => env.find((p) => p.name === name)?.value;
  const overwrite = overwritePolicy(one('OVERWRITE'));
  const recursive = envFlag(one('RECURSIVE')) !== false;
  const specialValue = one('RESTORE_SPECIAL');
  const special = specialValue === undefined ? specialDefault : envFlag(specialValue);
  // A value we cannot read must not fall back to either policy silently.
  if (special === null)
    throw NdmpError.illegalArgs(
      `RESTORE_SPECIAL=${specialValue}: say y (restore device nodes, fifos and setuid bits as stored) or n`,
    );
  const wanted: {
    index: number;
    name: string;
    original: string;
    dest: string | null;
    fhInfo: bigint | null;
  }[] = [];
  nlist.forEach((n, index) => {
    const original = normalizeArchivePath(n.originalPath);
    if (original === null)
      throw NdmpError.illegalArgs(`nlist[${index}]: original path "${escapeName(n.originalPath)}" has '..'`);
    wanted.push({
      index,
      name: n.originalPath,
      original,
      dest: fileHistory ? null : destinationOf(version, n, original),
      fhInfo: n.fhInfo === INVALID_U64 ? null : n.fhInfo,
    });
  });
  const direct =
    envFlag(one('DIRECT')) === true && wanted.length > 0 && wanted.every((w) => w.fhInfo !== null);
  if (fileHistory) {
    return {
      destRoot: '',
      targets: wanted.map((w) => ({ ...w, targetRel: w.original })),
      direct,
      overwrite,
      recursive,
      special,
    };
  }
  const prefix = one('PREFIX');
  if (wanted.length === 0) {
    // The whole backup, into PREFIX (ndmjob -x without file names sends no nlist).
    if (!prefix)
      throw NdmpError.illegalArgs(
        'nothing names a destination: send an nlist, or PREFIX for the whole backup',
      );
    const { root, rel } = insideExport(prefix, exports, 'PREFIX');
    return {
      destRoot: root,
      targets: [{ index: -1, name: '', original: '', targetRel: rel, fhInfo: null }],
      direct: false,
      overwrite,
      recursive,
      special,
    };
  }
  let destRoot: string | null = null;
  const targets = wanted.map((w) => {
    const { root, rel } = insideExport(w.dest!, exports, `nlist[${w.index}] destination`);
    if (destRoot !== null && root !== destRoot)
      throw NdmpError.illegalArgs(
        `nlist destinations lie in different exports (${escapeName(destRoot)} and ${escapeName(root)}): recover into one at a time`,
      );
    destRoot = root;
    return { index: w.index, name: w.name, original: w.original, targetRel: rel, fhInfo: w.fhInfo };
  });
  return { destRoot: destRoot!, targets, direct, overwrite, recursive, special };
}

function overwritePolicy(v: string | undefined): OverwritePolicy {
  if (v === undefined) return 'always';
  switch (v.trim().toLowerCase()) {
    case 'y':
    case 'yes':
    case 'always':
      return 'always';
    case 'n':
    case 'no':
    case 'never':
      return 'never';
    case 'older':
    case 'newer':
      return 'older';
    default:
      throw NdmpError.illegalArgs(`OVERWRITE=${v}: say always (y), never (n) or older`);
  }
}

/**
 * The absolute target path of an nlist entry. v4: destination_path, plus
 * `/name` when name is set. v3 calls the same fields destination_dir and
 * new_name, and DMAs read them two ways (docs/protocol.md §9.2): ndmjob sends the
 * target minus the original path as destination_dir with an empty new_name,
 * or an empty destination_dir and the whole target as new_name.
 */
function destinationOf(version: NdmpVersion, n: NlistName, original: string): string {
  const dest = n.destinationPath;
  if (version === 3) {
    if (n.name === '') {
      if (!dest) throw NdmpError.illegalArgs(`nlist "${escapeName(n.originalPath)}": no destination_dir`);
      return original === '' ? dest : `${dest.replace(/\/+$/, '')}/${original}`;
    }
    if (dest === '') return n.name;
    return `${dest.replace(/\/+$/, '')}/${n.name}`;
  }
  if (!dest) throw NdmpError.illegalArgs(`nlist "${escapeName(n.originalPath)}": no destination_path`);
  return n.name === '' ? dest : `${dest.replace(/\/+$/, '')}/${n.name}`;
}

/**
 * Where `path` (absolute; it need not exist yet) lies: the real path of the
 * export holding it, and the rest below that. Every existing component below
 * the export root is lstat'ed and none may be a symbolic link (util/confine.ts),
 * the rule the restore engine applies again to each directory it restores
 * into; the missing ones the restore creates.
 */
function insideExport(
  path: string,
  exports: readonly ExportRef[],
  what: string,
): { root: string; rel: string } {
  try {
    const c = confineToExport(path, exports, { what, allowMissing: true });
    return { root: c.root, rel: c.rel };
  } catch (e) {
    if (e instanceof ConfineError) throw NdmpError.illegalArgs(e.message);
    throw NdmpError.illegalArgs(`${what} ${escapeName(path)}: ${(e as Error).message}`);
  }
}

/**
 * The target an archive path belongs to: the one with the longest original
 * path that is the path itself or a directory above it. Null if none.
 */
export function targetFor(targets: readonly RecoverTarget[], path: string): RecoverTarget | null {
  let best: RecoverTarget | null = null;
  for (const t of targets) {
    if (t.original === '' || path === t.original || path.startsWith(`${t.original}/`)) {
      if (!best || t.original.length > best.original.length) best = t;
    }
  }
  return best;
}

/** Where an archive path goes below destRoot under `t` (a rename moves everything below the original). */
export function targetPath(t: RecoverTarget, path: string): string {
  const rest = path.slice(t.original.length).replace(/^\//, '');
  if (t.targetRel === '') return rest;
  return rest === '' ? t.targetRel : `${t.targetRel}/${rest}`;
}
