// Reaching an NDMP agent: where it is (HOST[:PORT]), who we are there, and a
// logged-in connection. Shared by every `ndmp` command and job.

import { existsSync, readFileSync } from 'node:fs';
import { NdmpClient } from './client.js';
import { parseAuthLines } from '../services/credentials.js';
import type { NdmpVersion } from '../wire/index.js';
import { CodedError } from '../util/coded-error.js';
import { unescapeName } from '../util/byte-name.js';

/**
 * Trouble on our side of the job, before or around NDMP: a bad argument, a
 * missing password, an unknown backup. The CLI prints it and exits 2.
 */
export class DmaUsageError extends CodedError {
  readonly code = 'DMA_USAGE';
  constructor(message: string) {
    super(message);
    this.name = 'DmaUsageError';
  }
}

export interface AgentAddress {
  host: string;
  port: number;
}

export interface Credentials {
  user: string;
  password: string;
  auth: 'md5' | 'text';
  /** Speak v3 even when the agent offers v4. */
  v3?: boolean;
  /** Per request and for the greeting, in ms. */
  timeoutMs: number;
}

export const NDMP_PORT = 10000;

export function parseTarget(s: string): AgentAddress {
  const m = /^(?:\[([^\]]+)\]|([^:/[\]]+))(?::(\d+))?$/.exec(s);
  if (!m) throw new DmaUsageError(`'${s}' is not HOST[:PORT]`);
  const port = m[3] ? Number(m[3]) : NDMP_PORT;
  if (port < 1 || port > 65535) throw new DmaUsageError(`port ${port} is out of range`);
  return { host: m[1] ?? m[2]!, port };
}

/** `HOST[:PORT]:/path` (the path is the server's, absolute). */
/** SERVER:/path, the path in the printed form `ndmp ls` shows (docs/names.md), so any bytes can be named. */
export function parseServerPath(s: string): AgentAddress & { path: string } {
  const i = s.indexOf(':/');
  if (i <= 0) throw new DmaUsageError(`'${s}' is not SERVER:/path (for example 127.0.0.1:/srv/data)`);
  return { ...parseTarget(s.slice(0, i)), path: unescapeName(s.slice(i + 1)) };
}

export function formatTarget(a: AgentAddress): string {
  const host = a.host.includes(':') ? `[${a.host}]` : a.host;
  return `${host}:${a.port}`;
}

/**
 * The password: --password-file's `USER:PASSWORD` line for the user (so
 * ndmpd's generated auth file works as it is) or its first line; else
 * NDMP_PASSWORD; else `fallbackFile` (this host's ndmpd auth file, for a DMA
 * on the server's own host) when it exists.
 */
export function readPassword(file: string | undefined, user: string, fallbackFile?: string): string {
  if (!file) {
    const env = process.env.NDMP_PASSWORD;
    if (env) return env;
    if (!fallbackFile || !existsSync(fallbackFile)) {
      throw new DmaUsageError('give --password-file FILE (or set NDMP_PASSWORD)');
    }
    file = fallbackFile;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new DmaUsageError(`cannot read password file: ${(e as Error).message}`);
  }
  const lines = parseAuthLines(text);
  const own = lines.find((l) => l.user === user);
  if (own) return own.password;
  if (lines.length === 0) throw new DmaUsageError(`password file ${file} is empty`);
  // A file with just the password: the whole first line, colons and all.
  return lines[0]!.text;
}

/**
 * Connects, settles the version and logs in. A request left unanswered for
 * `cred.timeoutMs` ends the connection: a job then stops waiting on that
 * server at once, and the server aborts the job's side when it sees it go.
 */
export async function connectAgent(addr: AgentAddress, cred: Credentials): Promise<NdmpClient> {
  const client = await NdmpClient.connect({
    host: addr.host,
    port: addr.port,
    timeoutMs: cred.timeoutMs,
    abandonOnTimeout: true,
  });
  try {
    await client.open(cred.v3 ? (3 as NdmpVersion) : undefined);
    if (cred.auth === 'text') await client.authText(cred.user, cred.password);
    else await client.authMd5(cred.user, cred.password);
  } catch (e) {
    client.destroy();
    throw e;
  }
  return client;
}
