// What a service handler sees of the control connection it serves, and the
// shape of one dispatch-table entry. The server layer implements Session; the
// services layer never imports the server.

import type { Logger } from '../util/log.js';
import type { Credentials } from './credentials.js';
import { ErrorCode, NdmpError } from '../wire/index.js';
import type { MessageDef, NdmpVersion } from '../wire/index.js';
import type { Export } from './exports.js';
import type { Library } from '../devices/library.js';
import type { LibraryChanger } from '../devices/library-changer.js';
import type { HistoryHub } from '../history/hub.js';
import type { AuthBackoff } from './auth-backoff.js';
import type { ServerObserver } from './observer.js';

/** TCP ports the mover (and later the data service) listen on for data connections; 0..0 = any. */
export interface PortRange {
  readonly low: number;
  readonly high: number;
}

/** Facts about this server that every session shares; immutable once started. */
export interface ServerInfo {
  readonly vendorName: string;
  readonly productName: string;
  readonly revisionNumber: string;
  readonly hostname: string;
  readonly osType: string;
  readonly osVers: string;
  readonly hostId: string;
}

export interface ServerContext {
  readonly info: ServerInfo;
  readonly credentials: Credentials;
  readonly exports: readonly Export[];
  readonly log: Logger;
  /** The virtual tape library, or null when none is configured (tape and mover then have no devices). */
  readonly library?: Library | null;
  /** The library's medium changer (the SCSI service's changer0), or null when none is offered. */
  readonly changer?: LibraryChanger | null;
  /** Where data connections listen (default: any port the system picks). */
  readonly dataPorts?: PortRange;
  /**
   * The IPv4 address data connections listen on; 0.0.0.0 = all, each
   * advertised. Default (null): the address the DMA reached this server on.
   */
  readonly dataAddress?: string | null;
  /** Where the server keeps its state: incremental backups' dumpdates and snapshots (absent: incrementals are refused). */
  readonly stateDir?: string | null;
  /** File history: the history thread(s) and how sessions use them (null: backups refuse HIST). */
  readonly history?: HistoryHub | null;
  /** Recovers' RESTORE_SPECIAL when the DMA does not send it (`[restore] special`; absent: false). */
  readonly restoreSpecial?: boolean;
  /** A refused CONNECT_CLIENT_AUTH is answered after this long, to slow password guessing (default 1000). */
  readonly authFailureDelayMs?: number;
  /** Per-address penalties for failed logins (absent: no back-off, only the per-connection delay). */
  readonly authBackoff?: AuthBackoff | null;
  /** Who counts what the server does (the metrics endpoint, docs/operations.md "Monitoring"); absent: nobody. */
  readonly observer?: ServerObserver | null;
}

/** Extension negotiation (v4 CONFIG_GET/SET_EXT_LIST): listed first, then selected once. */
export type ExtNegotiation = 'none' | 'listed' | 'selected';

export interface Session {
  readonly id: number;
  readonly ctx: ServerContext;
  readonly log: Logger;
  /** Negotiated protocol version (the offered one until CONNECT_OPEN). */
  version: NdmpVersion;
  /** Whether CONNECT_OPEN has succeeded (a repeat is an ILLEGAL_STATE_ERR). */
  opened: boolean;
  /** The authenticated user, or null before CONNECT_CLIENT_AUTH succeeds. */
  user: string | null;
  /** The latest MD5 challenge handed out by CONFIG_GET_AUTH_ATTR, if any. */
  md5Challenge: Buffer | null;
  authFailures: number;
  extNegotiation: ExtNegotiation;
  /** Sends a post (NOTIFY_*, LOG_*, FH_*) to the DMA. */
  post<Body>(def: MessageDef<Body, never>, body: Body): void;
  /**
   * Writes one complete message encoded elsewhere (file history), its
   * sequence number and time stamp filled in here; `done` once the socket has
   * taken it, or with an error if the connection is gone.
   */
  writeEncoded(message: Uint8Array, done: (err?: Error) => void): void;
  /** Ends the connection once pending output is written. */
  close(reason: string): void;
  /**
   * Runs `hook` once the connection has closed (services release devices,
   * stop threads); the server's shutdown waits for the promise it returns.
   */
  onClose(hook: () => void | Promise<void>): void;
  /** The local address the DMA reached us on; data connections listen on it. */
  readonly localAddress: string;
  /** Why the connection is ending ('peer closed', 'server shutting down', ...), or null while it is not. */
  readonly closeReason: string | null;
  /** The DMA's address (an IPv4-mapped IPv6 peer as its IPv4 address); per-address limits count by it. */
  readonly peerAddress: string;
}

/** A reply as a handler returns it: everything but `error`, which the dispatcher sets. */
export type ReplyBody<Rep> = [Rep] extends [never] ? void : Omit<Rep, 'error'>;

/** A precondition on session state, checked by the dispatcher before the handler runs. */
export interface StateRule {
  /** Names the current state, e.g. `session.opened ? 'open' : 'offered'`. */
  readonly state: (s: Session) => string;
  readonly allow: readonly string[];
  /** Further states that allow the request when the session speaks NDMP v3. */
  readonly allowV3?: readonly string[];
  /** The error for any other state (default NDMP_ILLEGAL_STATE_ERR), or one per state. */
  readonly error?: number | ((state: string) => number);
  /** The refusal's text in `state` (default: "<request> is not allowed in state <state>"). */
  readonly text?: (state: string) => string;
}

/**
 * Why `rule` refuses `def` in `state`, or null when it allows it. Pure: the
 * dispatcher and the session threads (services/state-table.ts) both decide with it.
 */
export function refusalIn(
  rule: Omit<StateRule, 'state'>,
  state: string,
  version: NdmpVersion,
  def: MessageDef,
): NdmpError | null {
  const allowed = version === 3 && rule.allowV3 ? [...rule.allow, ...rule.allowV3] : rule.allow;
  if (allowed.includes(state)) return null;
  const e = rule.error ?? ErrorCode.NDMP_ILLEGAL_STATE_ERR;
  return new NdmpError(
    typeof e === 'function' ? e(state) : e,
    rule.text?.(state) ?? `${def.name.replace(/^NDMP_/, '')} is not allowed in state ${state}`,
  );
}

/** The dispatcher's check: why `rule` refuses `def` for this session now, or null when it allows it. */
export function stateRefusal(rule: StateRule, s: Session, def: MessageDef): NdmpError | null {
  return refusalIn(rule, rule.state(s), s.version, def);
}

export interface Handler<Req = unknown, Rep = unknown> {
  readonly def: MessageDef<Req, Rep>;
  /** Allowed before CONNECT_CLIENT_AUTH has succeeded (docs/protocol.md §5.4, draft §2.11.3). */
  readonly preAuth: boolean;
  readonly when?: StateRule;
  /** Returns the reply body or throws NdmpError; may be async (replies still go out in order). */
  handle(s: Session, req: Req): ReplyBody<Rep> | Promise<ReplyBody<Rep>>;
}

/** Declares a handler with its types inferred from the message definition. */
export function handler<Req, Rep>(
  def: MessageDef<Req, Rep>,
  spec: Omit<Handler<Req, Rep>, 'def' | 'preAuth'> & { preAuth?: boolean },
): Handler<Req, Rep> {
  return {
    def,
    preAuth: spec.preAuth ?? false,
    ...(spec.when ? { when: spec.when } : {}),
    handle: spec.handle,
  };
}
