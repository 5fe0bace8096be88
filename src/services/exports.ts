// The file systems this server offers for backup ("exports"), and what
// CONFIG_GET_FS_INFO says of them: real sizes from statfs(2), the file-system
// type and device from the mount table.

import { readFile, realpath, statfs } from 'node:fs/promises';
import { FsInfoUnsupported } from '../wire/index.js';
import type { FsInfo, Pval } from '../wire/index.js';

export interface Export {
  /** Short name an operator gives it (`--export NAME=PATH`). */
  readonly name: string;
  /** Absolute path: what a DMA names in FILESYSTEM and what fs_logical_device reports. */
  readonly path: string;
}

interface Mount {
  mountPoint: string;
  fsType: string;
  source: string;
}

// Field 5 is the mount point, then optional fields up to '-', then type and source
// (proc(5), /proc/[pid]/mountinfo). Octal escapes (\040 for space) are undone.
function parseMountinfo(text: string): Mount[] {
  const unescape = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (dash < 6 || f.length < dash + 3) continue;
    mounts.push({ mountPoint: unescape(f[4]!), fsType: f[dash + 1]!, source: unescape(f[dash + 2]!) });
  }
  return mounts;
}

async function mountOf(path: string): Promise<Mount | undefined> {
  let text: string;
  try {
    text = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  let best: Mount | undefined;
  for (const m of parseMountinfo(text)) {
    const inside = m.mountPoint === '/' || path === m.mountPoint || path.startsWith(m.mountPoint + '/');
    // The longest matching mount point wins; a later line with the same point shadows an earlier one.
    if (inside && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/** Describes one export for CONFIG_GET_FS_INFO. Never throws: trouble shows in fs_status. */
export async function describeExport(exp: Export): Promise<FsInfo> {
  const env: Pval[] = [
    { name: 'LOCAL', value: 'y' },
    { name: 'EXPORT_NAME', value: exp.name },
    { name: 'AVAILABLE_BACKUP', value: 'tar' },
    { name: 'AVAILABLE_RECOVERY', value: 'tar' },
  ];
  try {
    const real = await realpath(exp.path);
    const [st, mount] = await Promise.all([statfs(real, { bigint: true }), mountOf(real)]);
    const fsType = mount?.fsType ?? 'unknown';
    env.push({ name: 'TYPE', value: fsType });
    const total = st.blocks * st.bsize;
    const avail = st.bavail * st.bsize;
    const used = (st.blocks - st.bfree) * st.bsize;
    // Some file systems (tmpfs with nr_inodes=0, btrfs) report no inode counts.
    const inodesKnown = st.files > 0n;
    return {
      unsupported: inodesKnown ? 0 : FsInfoUnsupported.TOTAL_INODES | FsInfoUnsupported.USED_INODES,
      fsType,
      fsLogicalDevice: exp.path,
      fsPhysicalDevice: mount?.source ?? '',
      totalSize: total,
      usedSize: used,
      availSize: avail,
      totalInodes: inodesKnown ? st.files : 0n,
      usedInodes: inodesKnown ? st.files - st.ffree : 0n,
      fsEnv: env,
      fsStatus: 'online',
    };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return {
      unsupported: Object.values(FsInfoUnsupported).reduce((a, b) => a | b, 0),
      fsType: 'unknown',
      fsLogicalDevice: exp.path,
      fsPhysicalDevice: '',
      totalSize: 0n,
      usedSize: 0n,
      availSize: 0n,
      totalInodes: 0n,
      usedInodes: 0n,
      fsEnv: env,
      fsStatus: `unavailable: ${err.code ?? err.message}`,
    };
  }
}
