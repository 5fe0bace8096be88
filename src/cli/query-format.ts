// Prints a QueryResult for people (the layout of ndmjob -q, names spelled out)
// or as JSON (64-bit counts as numbers when exact, else strings).

import type { QueryResult } from '../dma/query.js';
import { AddrType, AuthType, ButypeAttr, FsInfoUnsupported, nameOf } from '../wire/index.js';
import { escapeName } from '../util/byte-name.js';

function short(table: Readonly<Record<string, number>>, v: number, prefix: string): string {
  return nameOf(table, v).replace(prefix, '');
}

function bits(table: Readonly<Record<string, number>>, v: number, prefix: string): string {
  const names = Object.entries(table)
    .filter(([, bit]) => (v & bit) !== 0)
    .map(([k]) => k.replace(prefix, '').toLowerCase());
  return names.length ? names.join(' ') : 'none';
}

export function size(n: bigint | number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = Number(n);
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

export function formatQuery(target: string, r: QueryResult): string {
  const out: string[] = [`NDMP server ${target} (NDMPv${r.version})`];
  const line = (k: string, v: string) => out.push(`  ${k.padEnd(18)} ${v}`);
  const section = (title: string) => out.push('', title);
  if (r.host) {
    section('Host');
    line('hostname', r.host.hostname);
    line('os', `${r.host.osType} ${r.host.osVers}`);
    line('hostid', r.host.hostid);
  }
  if (r.server) {
    section('Server');
    line('vendor', r.server.vendorName);
    line('product', r.server.productName);
    line('revision', r.server.revisionNumber);
    line('auth types', r.server.authTypes.map((a) => short(AuthType, a, 'NDMP_AUTH_')).join(' '));
  }
  if (r.connectionTypes) {
    section('Connection types');
    line('addr types', r.connectionTypes.map((a) => short(AddrType, a, 'NDMP_ADDR_')).join(' '));
  }
  for (const b of r.butypes ?? []) {
    section(`Backup type ${b.butypeName}`);
    line('attrs', `0x${b.attrs.toString(16)} (${bits(ButypeAttr, b.attrs, 'NDMP_BUTYPE_')})`);
    for (const e of b.defaultEnv) line('default', `${e.name}=${e.value}`);
  }
  if (r.fileSystems) {
    if (r.fileSystems.length === 0) section('File systems: none exported');
    for (const f of r.fileSystems) {
      // Paths are bytes (lossless strings): printed as docs/names.md says.
      section(`File system ${escapeName(f.fsLogicalDevice)}`);
      line('type', f.fsType);
      line('device', escapeName(f.fsPhysicalDevice) || '-');
      line('status', f.fsStatus);
      const u = f.unsupported;
      if (!(u & FsInfoUnsupported.TOTAL_SIZE)) line('total', size(f.totalSize));
      if (!(u & FsInfoUnsupported.USED_SIZE)) line('used', size(f.usedSize));
      if (!(u & FsInfoUnsupported.AVAIL_SIZE)) line('available', size(f.availSize));
      if (!(u & FsInfoUnsupported.TOTAL_INODES)) line('inodes', `${f.usedInodes} used of ${f.totalInodes}`);
      for (const e of f.fsEnv) line('env', `${e.name}=${e.value}`);
    }
  }
  if (r.tapes) {
    section(r.tapes.length ? 'Tape devices' : 'Tape devices: none');
    for (const t of r.tapes) for (const c of t.caplist) line(t.model, escapeName(c.device));
  }
  if (r.scsi) {
    section(r.scsi.length ? 'SCSI devices' : 'SCSI devices: none');
    for (const t of r.scsi) for (const c of t.caplist) line(t.model, escapeName(c.device));
  }
  const errs = Object.entries(r.errors);
  if (errs.length) {
    section('Refused by the server');
    for (const [part, err] of errs) line(part, err);
  }
  return out.join('\n') + '\n';
}

/** JSON with bigints as numbers when they are exact, else as decimal strings. */
export function toJson(v: unknown): string {
  return JSON.stringify(
    v,
    (_k, x: unknown) => {
      if (typeof x === 'bigint') return x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x.toString();
      if (x && typeof x === 'object' && (x as { type?: string }).type === 'Buffer')
        return Buffer.from((x as { data: number[] }).data).toString('hex');
      return x;
    },
    2,
  );
}
