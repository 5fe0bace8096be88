// Peer addresses as the admission rules see them: one spelling per host
// (IPv4-mapped IPv6 peers are their IPv4 address), a key per host for the
// per-address limits, and the allow-list of networks that may connect.

import net from 'node:net';
import { NdmpBaseError } from '../wire/errors.js';

/** An allow-list entry that is not an address or ADDRESS/PREFIX. */
export class AddressError extends NdmpBaseError {
  readonly code = 'NDMPD_BAD_CIDR';
}

const MAPPED_V4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/**
 * The address to count and log: a server listening on `::` sees IPv4 peers as
 * `::ffff:a.b.c.d`, the same host as `a.b.c.d` on an IPv4 listener.
 */
export function normalizeAddress(address: string): string {
  const m = MAPPED_V4.exec(address);
  return m ? m[1]! : address.toLowerCase();
}

/**
 * The key per-address limits count by: an IPv4 address, or an IPv6 /64 (the
 * share one site usually gets; counting single IPv6 addresses would let one
 * host spread over 2^64 of them).
 */
export function peerKey(address: string): string {
  const a = normalizeAddress(address);
  if (net.isIPv6(a)) {
    const groups = expandIPv6(a);
    if (groups) return `${groups.slice(0, 4).join(':')}::/64`;
  }
  return a;
}

/** The eight 16-bit groups of an IPv6 address, in hex; null if it is not one. */
function expandIPv6(a: string): string[] | null {
  let text = a.replace(/%.*$/, '');
  // A trailing dotted IPv4 part stands for the last two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [b0, b1, b2, b3] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const fill = tail === undefined ? 0 : 8 - left.length - right.length;
  const groups = [...left, ...Array<string>(Math.max(fill, 0)).fill('0'), ...right];
  return groups.length === 8 ? groups.map((g) => parseInt(g, 16).toString(16)) : null;
}

export interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

/** `10.0.0.0/8`, `fd00::/8`, or a bare address (a /32 or /128). Throws AddressError otherwise. */
export function parseCidr(text: string): Cidr {
  const s = text.trim();
  const slash = s.indexOf('/');
  const address = normalizeAddress(slash < 0 ? s : s.slice(0, slash));
  const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : null;
  if (!family) throw new AddressError(`'${text}' is not an IPv4 or IPv6 address or ADDRESS/PREFIX`);
  const max = family === 'ipv4' ? 32 : 128;
  const prefixText = slash < 0 ? String(max) : s.slice(slash + 1);
  const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= max)) {
    throw new AddressError(`'${text}': the prefix length must be a number from 0 to ${max}`);
  }
  return { address, prefix, family };
}

/** The networks allowed to connect; an empty list allows every peer. */
export class AllowList {
  private readonly list = new net.BlockList();
  readonly all: boolean;

  constructor(cidrs: readonly string[]) {
    this.all = cidrs.length === 0;
    for (const c of cidrs) {
      const { address, prefix, family } = parseCidr(c);
      this.list.addSubnet(address, prefix, family);
    }
  }

  /** Whether a peer may connect. node's BlockList matches IPv4-mapped IPv6 peers against IPv4 rules. */
  allows(address: string): boolean {
    if (this.all) return true;
    const a = normalizeAddress(address);
    const family = net.isIPv4(a) ? 'ipv4' : net.isIPv6(a) ? 'ipv6' : null;
    return family !== null && this.list.check(a, family);
  }
}
