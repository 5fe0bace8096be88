// Which server a backup was made on, whatever address it answers at now
// (docs/dma.md, "Servers"). The catalog names servers by CONFIG_GET_HOST_INFO's
// host id (ndmpd keeps one per state dir: it survives restarts, port and
// address changes) and remembers the address each one last answered at. A
// restore or verify goes to that address, or to one the user gives, and
// checks that the server there is the one the backup's tapes are on.

import { M, NdmpError, TransportError } from '../wire/index.js';
import type { Catalog, KnownServer } from '../catalog/types.js';
import type { NdmpClient } from './client.js';
import { DmaUsageError, formatTarget, parseTarget } from './agent.js';
import type { AgentAddress } from './agent.js';
import { WAITS, withBound } from './waits.js';

export interface ServerIdentity {
  /** The host id; '' when the server gives none (then only its address names it). */
  id: string;
  /** Its host name. */
  name: string;
}

/** The server's identity from CONFIG_GET_HOST_INFO; an empty one when it will not say. */
export async function identify(client: NdmpClient): Promise<ServerIdentity> {
  try {
    const h = await client.call(M.CONFIG_GET_HOST_INFO, {});
    return { id: h.hostid, name: h.hostname };
  } catch (e) {
    if (e instanceof NdmpError) return { id: '', name: '' };
    throw e;
  }
}

/** Identifies the server `client` reached at `addr` and records where it answered. */
export async function rememberServer(
  catalog: Catalog,
  client: NdmpClient,
  addr: AgentAddress,
): Promise<ServerIdentity> {
  const who = await identify(client);
  if (who.id !== '') {
    await catalog.noteServer({ id: who.id, name: who.name, address: formatTarget(addr), seenAt: Date.now() });
  }
  return who;
}

/** The servers the catalog knows, for a job about to connect to a backup's (bounded, as every catalog call). */
export function knownServers(catalog: Catalog, job: string): Promise<KnownServer[]> {
  return withBound(
    catalog.listServers(),
    WAITS.catalogCallMs,
    `the catalog (${catalog.location}) to list the servers it knows`,
    `check the catalog database, then run the ${job} again`,
  );
}

/**
 * Where to reach the server a backup names: `override` when given, else the
 * address the catalog last saw that identity answer at, else the address the
 * backup recorded.
 */
export function addressOf(
  known: readonly KnownServer[],
  id: string,
  recorded: string,
  override?: AgentAddress,
): AgentAddress {
  if (override) return override;
  const k = id === '' ? undefined : known.find((s) => s.id === id);
  return parseTarget(k?.address ?? recorded);
}

/**
 * Refuses a server that is not the one expected (its tapes or its files are
 * elsewhere). `role` names it in the message ("tape server"), `flag` is the
 * option that names another address.
 */
export function checkIdentity(
  got: ServerIdentity,
  expected: { id: string; name?: string },
  at: AgentAddress,
  what: string,
  flag: string,
): void {
  if (expected.id === '' || got.id === '' || got.id === expected.id) return;
  throw new DmaUsageError(
    `${formatTarget(at)} is host ${got.name || '?'} (host id ${got.id}), not the server ${what} ` +
      `(host id ${expected.id}${expected.name ? `, ${expected.name}` : ''}): ` +
      `give ${flag} HOST:PORT where that server answers now`,
  );
}

/**
 * A failure to reach a server at the address the catalog has, with what to
 * do when it moved: `flag` names the option that gives the new address
 * (null: the user gave it already, so the error stands as it is).
 */
export function movedHint(e: unknown, flag: string | null): unknown {
  if (flag === null || !(e instanceof TransportError)) return e;
  return new TransportError(
    e.code,
    `${e.message}; if the server moved, give ${flag} HOST:PORT where it answers now`,
  );
}
