// Failed logins cost the address they came from, not everybody: past a few
// free ones (a mistyped password in one job must not stop the other jobs of
// the same DMA host), each refused CONNECT_CLIENT_AUTH doubles that address's
// penalty (1 s, 2 s, 4 s, ... up to a cap), and while it lasts the address's logins are refused without looking
// at the password. Other addresses are untouched, so a password storm from a
// few hosts cannot lock a real DMA out. The table is bounded: the address
// seen least recently goes first when it is full, and a quiet address is forgotten.

import { peerKey } from '../util/address.js';

export interface AuthBackoffOptions {
  /** Failures within a quiet period that cost no penalty (each still waits the per-connection delay). */
  readonly freeFailures: number;
  /** The penalty after the first failure. */
  readonly initialMs: number;
  /** The penalty never grows beyond this; 0 turns the back-off off. */
  readonly maxMs: number;
  /** An address with no failure for this long starts afresh. */
  readonly quietMs: number;
  /** Addresses remembered at most. */
  readonly maxAddresses: number;
}

export const DEFAULT_AUTH_BACKOFF: AuthBackoffOptions = {
  freeFailures: 3,
  initialMs: 1000,
  maxMs: 60_000,
  quietMs: 15 * 60_000,
  maxAddresses: 4096,
};

interface Penalty {
  /** Failures since the address was last quiet or forgiven. */
  failures: number;
  /** 0 while the failures are still free. */
  penaltyMs: number;
  until: number;
  lastFailure: number;
  /** The refusal of this window has been logged (one line per window and address). */
  logged: boolean;
}

export class AuthBackoff {
  /** Map order is recency order: the first entry is the one to drop when full. */
  private readonly penalties = new Map<string, Penalty>();

  constructor(
    readonly opts: AuthBackoffOptions = DEFAULT_AUTH_BACKOFF,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds before `address` may try again; 0 when it may now. */
  penaltyLeft(address: string): number {
    const p = this.lookup(peerKey(address));
    return p ? Math.max(0, p.until - this.now()) : 0;
  }

  /**
   * A refusal without a password check: true for the first one of the
   * window, which the caller logs (the rest would only flood the log).
   */
  firstRefusalOfWindow(address: string): boolean {
    const p = this.lookup(peerKey(address));
    if (!p || p.logged || p.until <= this.now()) return false;
    p.logged = true;
    return true;
  }

  /** A wrong password from `address`: its penalty doubles. Returns the new penalty in ms. */
  failed(address: string): number {
    if (this.opts.maxMs <= 0) return 0;
    const key = peerKey(address);
    const now = this.now();
    const failures = (this.lookup(key)?.failures ?? 0) + 1;
    const charged = failures - this.opts.freeFailures;
    const penaltyMs =
      charged <= 0 ? 0 : Math.min(this.opts.initialMs * 2 ** Math.min(charged - 1, 30), this.opts.maxMs);
    this.penalties.delete(key);
    this.penalties.set(key, { failures, penaltyMs, until: now + penaltyMs, lastFailure: now, logged: false });
    // Bounded memory: the least recently failing address goes first.
    while (this.penalties.size > this.opts.maxAddresses) {
      const oldest = this.penalties.keys().next().value as string;
      this.penalties.delete(oldest);
    }
    return penaltyMs;
  }

  /** The right password from `address`: whatever it mistyped before is forgiven. */
  succeeded(address: string): void {
    this.penalties.delete(peerKey(address));
  }

  /** Addresses remembered now (for tests and operators). */
  get size(): number {
    return this.penalties.size;
  }

  private lookup(key: string): Penalty | undefined {
    const p = this.penalties.get(key);
    if (p && this.now() - p.lastFailure > Math.max(this.opts.quietMs, p.penaltyMs)) {
      this.penalties.delete(key);
      return undefined;
    }
    return p;
  }
}
