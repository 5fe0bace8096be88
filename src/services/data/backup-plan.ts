// What a DATA_START_BACKUP's environment asks for (docs/protocol.md §9.1,
// §9.3): which tree, which parts of it, which file history, which metadata,
// which incremental level. Checked before the reply, so a backup the server
// will not carry out is refused with the reason (ILLEGAL_ARGS), and a backup
// only ever reads inside an export. ./recover-plan.ts is the same for a recover.

import { IncrementalError, parseLevel, planIncremental } from '../../backup/incremental.js';
import type { IncrementalPlan } from '../../backup/incremental.js';
import { historyModelOf } from '../../history/record.js';
import type { HistoryModel } from '../../history/record.js';
import { ConfineError, confineToExport } from '../../util/confine.js';
import type { FileId } from '../../util/confine.js';
import { escapeName } from '../../util/byte-name.js';
import { envFlag } from '../../util/env-flag.js';
import { NdmpError } from '../../wire/index.js';
import type { Pval } from '../../wire/index.js';
import type { DataThreadConfig } from './protocol.js';

export interface BackupPlan {
  root: string;
  rootId: FileId;
  files: string[];
  excludes: string[];
  model: HistoryModel;
  xattrs: boolean;
  acls: boolean;
}

/** The environment variables a backup reads; any other is logged through `ignored` and left alone. */
const KNOWN = new Set([
  'BASE_DATE',
  'DIRECT',
  'FILESYSTEM',
  'PREFIX',
  'HIST',
  'TYPE',
  'LEVEL',
  'EXCLUDE',
  'FILES',
  'UPDATE',
  'USER',
  'XATTRS',
  'ACLS',
]);

/** The backup the environment asks for, or ILLEGAL_ARGS naming what is wrong. */
export function planBackup(
  env: Pval[],
  exports: DataThreadConfig['exports'],
  ignored: (p: Pval) => void,
): BackupPlan {
  const all = (name: string) => env.filter((p) => p.name === name).map((p) => p.value);
  const one = (name: string) => all(name)[0];
  const fsName = one('FILESYSTEM') ?? one('PREFIX');
  if (!fsName) throw NdmpError.illegalArgs('FILESYSTEM is not set: name the directory to back up');
  // Inside an export, and no symbolic link followed below its root (util/confine.ts).
  let root: string;
  let rootId: FileId;
  try {
    const c = confineToExport(fsName, exports, { what: 'FILESYSTEM', directory: true });
    root = c.path;
    rootId = c.stat;
  } catch (e) {
    if (e instanceof ConfineError) throw NdmpError.illegalArgs(e.message);
    throw NdmpError.illegalArgs(`FILESYSTEM ${escapeName(fsName)}: ${(e as Error).message}`);
  }
  const model = historyModelOf(env);
  if (model === null) {
    throw NdmpError.illegalArgs(
      `HIST=${one('HIST')}: say y (the server's choice), f (paths), d (directories and nodes) or n (none)`,
    );
  }
  for (const p of env) if (!KNOWN.has(p.name)) ignored(p);
  // Extended attributes and ACLs are backed up unless these say n (docs/metadata.md).
  const flag = (name: string): boolean => {
    const v = one(name);
    const f = envFlag(v);
    if (v !== undefined && f === null)
      throw NdmpError.illegalArgs(`${name}=${v}: say y (the default: back them up) or n (leave them out)`);
    return f ?? true;
  };
  const xattrs = flag('XATTRS');
  const acls = flag('ACLS');
  return { root, rootId, files: all('FILES'), excludes: all('EXCLUDE'), model, xattrs, acls };
}

/**
 * LEVEL / BASE_DATE / UPDATE (docs/protocol.md §9.3): the incremental this
 * backup is, against the dumpdates in the state dir. Null without a state
 * dir (then only full backups, not recorded).
 */
export function planBackupLevel(env: Pval[], root: string, stateDir: string | null): IncrementalPlan | null {
  try {
    if (!stateDir) {
      if (
        parseLevel(env.find((p) => p.name === 'LEVEL')?.value) !== 0 ||
        env.some((p) => p.name === 'BASE_DATE')
      )
        throw new IncrementalError('incremental backups need a state dir; this server has none');
      return null;
    }
    // Full backups are recorded too (UPDATE defaults to y): they are the base of the next level 1.
    return planIncremental(env, root, stateDir);
  } catch (e) {
    if (e instanceof IncrementalError) throw NdmpError.illegalArgs(e.message);
    throw e;
  }
}

/** The backup's environment (DATA_GET_ENV): the DMA's, in its order, plus what the server decided (§9.1). */
export function backupEnv(env: Pval[]): Pval[] {
  const out = [...env];
  if (!env.some((p) => p.name === 'PATHNAME_SEPARATOR')) out.push({ name: 'PATHNAME_SEPARATOR', value: '/' });
  if (!env.some((p) => p.name === 'TYPE')) out.push({ name: 'TYPE', value: 'tar' });
  // Every entry's history carries its header offset: the DMA may recover it
  // directly. Saved with the backup's environment, DIRECT=y comes back at
  // recover time (ndmjob -J does that), which is what enables DAR there.
  if (!env.some((p) => p.name === 'DIRECT')) out.push({ name: 'DIRECT', value: 'y' });
  return out;
}

/** Sets each of `set` in `env`, in place of a variable of its name (which moves to the end). */
export function setEnv(env: Pval[], set: readonly Pval[]): void {
  for (const p of set) {
    const i = env.findIndex((q) => q.name === p.name);
    if (i >= 0) env.splice(i, 1);
    env.push(p);
  }
}
