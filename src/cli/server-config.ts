// ndmpd's configuration: built-in defaults, then the config file (TOML), then
// command-line flags, each overriding the one before. Every problem is found
// here, before the server listens, and reported in one clear sentence.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { DEFAULT_SLOTS, MAX_SLOTS } from '../devices/library.js';
import { DEFAULT_SPOOL_MAX } from '../history/hub.js';
import {
  DEFAULT_WARN_LAG_AFTER_MS,
  DEFAULT_WARN_LAG_SHARE,
  DEFAULT_WARN_SPOOL_BYTES,
} from '../history/lag-warning.js';
import type { Export } from '../services/exports.js';
import { envFlag } from '../util/env-flag.js';
import { AddressError, parseCidr } from '../util/address.js';
import { DEFAULT_MAX_RECORD_SIZE } from '../wire/index.js';
import { CodedError } from '../util/coded-error.js';

export class ConfigError extends CodedError {
  readonly code = 'NDMPD_CONFIG';
}

export interface ServerConfig {
  host: string;
  port: number;
  /** Where GET /metrics is served (docs/operations.md, "Monitoring"); null: nowhere (the default). */
  metrics: { host: string; port: number } | null;
  stateDir: string;
  /** The auth file given by the operator, or null to use (and create) `<stateDir>/auth`. */
  authFile: string | null;
  exports: Export[];
  maxConnections: number;
  maxUnauthenticated: number;
  /** Unauthenticated connections one address may have; more are REFUSED. */
  maxUnauthenticatedPerAddress: number;
  /** Slots that only sessions holding a device may fill. */
  reservedConnections: number;
  maxRecordSize: number;
  preAuthTimeoutMs: number;
  /** Logged-in sessions holding no device are closed after this long without a request; 0 = never. */
  idleTimeoutMs: number;
  /** Networks that may connect (CIDR); empty = every address. */
  allow: string[];
  /** The cap of an address's penalty for failed logins; 0 = no back-off. */
  authBackoffMaxMs: number;
  /** On SIGTERM, running backups and restores get this long to finish before they are aborted (docs/operations.md). */
  shutdownTimeoutMs: number;
  logLevel: string;
  logFormat: 'json' | 'pretty' | undefined;
  /** The virtual tape library folder (default `<stateDir>/library`). */
  library: string;
  drives: number;
  /** Storage slots of the library's changer (docs/changer.md). */
  slots: number;
  /** Bytes of a new or blank tape; a number so --check-config can print it. */
  tapeCapacity: number;
  /** TCP ports for data connections; 0..0 = any port the system picks. */
  dataPorts: { low: number; high: number };
  /** Where the mover listens for data connections; null = the address each DMA reached. */
  dataAddress: string | null;
  /** File history: who sends it, on how many threads, and when a DMA that takes none fails its backup. */
  history: {
    mode: 'worker' | 'lockstep';
    threads: number;
    stallTimeoutMs: number;
    maxDelayMs: number;
    /** Bytes each session's history spool may hold; 0: no spool (the backup waits for its DMA). */
    spoolMaxBytes: number;
    /** Free bytes the spool leaves on its file system; null: the smaller of 1 GiB and 5%; 0: no floor. */
    spoolMinFreeBytes: number | null;
    /** History warnings (docs/operations.md, "History warnings"): spool bytes, share of the backup, after how long. */
    warnSpoolBytes: number;
    warnLagShare: number;
    warnLagAfterMs: number;
  };
  /** Recovers: `special` is RESTORE_SPECIAL's default (device nodes, fifos, setuid/setgid as stored). */
  restore: { special: boolean };
}

/** Settings as the file or the flags give them; every field optional. */
export interface ConfigInput {
  listen?: string;
  'metrics-listen'?: string;
  'state-dir'?: string;
  'auth-file'?: string;
  export?: string[] | Record<string, string>;
  'max-connections'?: number | string;
  'max-unauthenticated'?: number | string;
  'max-unauthenticated-per-address'?: number | string;
  'reserved-connections'?: number | string;
  'max-record-size'?: number | string;
  'pre-auth-timeout'?: number | string;
  'idle-timeout'?: number | string;
  allow?: string[] | string;
  'auth-backoff-max'?: number | string;
  'shutdown-timeout'?: number | string;
  'log-level'?: string;
  'log-format'?: string;
  library?: string;
  drives?: number | string;
  slots?: number | string;
  'tape-capacity'?: number | string;
  'data-ports'?: number | string;
  'data-address'?: string;
  'history-mode'?: string;
  'history-threads'?: number | string;
  'history-stall-timeout'?: number | string;
  'history-max-delay'?: number | string;
  'history-spool-max'?: number | string;
  'history-spool-min-free'?: number | string;
  'history-warn-spool'?: number | string;
  'history-warn-lag-share'?: number | string;
  'history-warn-lag-after'?: number | string;
  /** The file's `[restore] special`, or --restore-special / --no-restore-special. */
  'restore-special'?: boolean | string;
}

/**
 * The config file's [history] table: `mode`, `threads`, `stall-timeout`,
 * `max-delay`, `spool-max`, `spool-min-free`, `warn-spool`, `warn-lag-share`,
 * `warn-lag-after` (each also in camelCase).
 */
const HISTORY_KEYS: Readonly<Record<string, keyof ConfigInput>> = {
  mode: 'history-mode',
  threads: 'history-threads',
  'stall-timeout': 'history-stall-timeout',
  stallTimeout: 'history-stall-timeout',
  'max-delay': 'history-max-delay',
  maxDelay: 'history-max-delay',
  'spool-max': 'history-spool-max',
  spoolMax: 'history-spool-max',
  'spool-min-free': 'history-spool-min-free',
  spoolMinFree: 'history-spool-min-free',
  'warn-spool': 'history-warn-spool',
  warnSpool: 'history-warn-spool',
  'warn-lag-share': 'history-warn-lag-share',
  warnLagShare: 'history-warn-lag-share',
  'warn-lag-after': 'history-warn-lag-after',
  warnLagAfter: 'history-warn-lag-after',
};

/** The config file's [restore] table. */
const RESTORE_KEYS: Readonly<Record<string, keyof ConfigInput>> = {
  special: 'restore-special',
};

const KNOWN_KEYS = new Set<string>([
  'listen',
  'metrics-listen',
  'state-dir',
  'auth-file',
  'export',
  'max-connections',
  'max-unauthenticated',
  'max-unauthenticated-per-address',
  'reserved-connections',
  'max-record-size',
  'pre-auth-timeout',
  'idle-timeout',
  'allow',
  'auth-backoff-max',
  'shutdown-timeout',
  'log-level',
  'log-format',
  'library',
  'drives',
  'slots',
  'tape-capacity',
  'data-ports',
  'data-address',
  'history-mode',
  'history-threads',
  'history-stall-timeout',
  'history-max-delay',
  'history-spool-max',
  'history-spool-min-free',
  'history-warn-spool',
  'history-warn-lag-share',
  'history-warn-lag-after',
  'restore-special',
]);

export function defaultStateDir(): string {
  if (process.env.NDMPD_STATE_DIR) return process.env.NDMPD_STATE_DIR;
  if (process.getuid?.() === 0) return '/var/lib/ndmpd';
  const xdg = process.env.XDG_STATE_HOME || join(os.homedir(), '.local', 'state');
  return join(xdg, 'ndmpd');
}

export function parseListen(s: string): { host: string; port: number } {
  // HOST:PORT, [v6]:PORT, or a bare port.
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(s) ?? /^()()(\d+)$/.exec(s);
  if (!m) throw new ConfigError(`listen address '${s}' is not HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(`listen port ${port} is out of range`);
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

export function parseExport(s: string): { name: string; path: string } {
  const eq = s.indexOf('=');
  if (eq <= 0 || eq === s.length - 1) throw new ConfigError(`export '${s}' is not NAME=PATH`);
  return { name: s.slice(0, eq), path: s.slice(eq + 1) };
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  K: 2 ** 10,
  M: 2 ** 20,
  G: 2 ** 30,
  T: 2 ** 40,
  P: 2 ** 50,
};
export const DEFAULT_TAPE_CAPACITY = 64 * 2 ** 30;
const MIN_TAPE_CAPACITY = 2 ** 20;
const MAX_TAPE_CAPACITY = 2 ** 50;

/**
 * A size in bytes: plain bytes, or a number with K, M, G, T or P (binary
 * units; `10G`, `1.5T`, `512MiB`), from `min` to `max` (default 1M to 1P).
 */
export function parseSize(
  v: unknown,
  what: string,
  min = MIN_TAPE_CAPACITY,
  max = MAX_TAPE_CAPACITY,
): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$/i.exec(String(v));
  const bytes =
    m && typeof v !== 'boolean' ? Math.floor(Number(m[1]) * SIZE_UNITS[m[2]!.toUpperCase()]!) : NaN;
  if (!(bytes >= min && bytes <= max)) {
    throw new ConfigError(
      `${what} must be a size from ${unitText(min)} to ${unitText(max)} (bytes, or with K, M, G, T), not '${String(v)}'`,
    );
  }
  return bytes;
}

/** 1M, 1P, 0: a bound as parseSize reads it. */
function unitText(n: number): string {
  for (const u of ['P', 'T', 'G', 'M', 'K'])
    if (n > 0 && n % SIZE_UNITS[u]! === 0) return `${n / SIZE_UNITS[u]!}${u}`;
  return String(n);
}

/** `LOW-HIGH`, a single port, or 0 (any port). */
export function parseDataPorts(v: unknown): { low: number; high: number } {
  const s = String(v).trim();
  if (s === '0') return { low: 0, high: 0 };
  const m = /^(\d{1,5})(?:\s*-\s*(\d{1,5}))?$/.exec(s);
  const low = m ? Number(m[1]) : NaN;
  const high = m?.[2] !== undefined ? Number(m[2]) : low;
  if (!(low >= 1 && high <= 65535 && low <= high) || typeof v === 'boolean') {
    throw new ConfigError(
      `data-ports must be LOW-HIGH with 1 <= LOW <= HIGH <= 65535, a single port, or 0, not '${s}'`,
    );
  }
  return { low, high };
}

export function readConfigFile(path: string): ConfigInput {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid TOML: ${(e as Error).message}`);
  }
  const history = doc.history;
  delete doc.history;
  if (history !== undefined) {
    if (typeof history !== 'object' || history === null || Array.isArray(history))
      throw new ConfigError(`config file ${path}: history must be a table ([history])`);
    for (const [k, v] of Object.entries(history)) {
      const key = HISTORY_KEYS[k];
      if (!key) throw new ConfigError(`config file ${path}: unknown setting 'history.${k}'`);
      doc[key] = v;
    }
  }
  const restore = doc.restore;
  delete doc.restore;
  if (restore !== undefined) {
    if (typeof restore !== 'object' || restore === null || Array.isArray(restore))
      throw new ConfigError(`config file ${path}: restore must be a table ([restore])`);
    for (const [k, v] of Object.entries(restore)) {
      const key = RESTORE_KEYS[k];
      if (!key) throw new ConfigError(`config file ${path}: unknown setting 'restore.${k}'`);
      doc[key] = v;
    }
  }
  for (const k of Object.keys(doc)) {
    if (!KNOWN_KEYS.has(k)) throw new ConfigError(`config file ${path}: unknown setting '${k}'`);
  }
  return doc as ConfigInput;
}

function integer(v: unknown, what: string, min: number, max: number): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${what} must be a whole number from ${min} to ${max}, not '${String(v)}'`);
  }
  return n;
}

/** Seconds running backups get to finish on SIGTERM; deploy/ndmpd.service's TimeoutStopSec allows for it. */
export const DEFAULT_SHUTDOWN_TIMEOUT_S = 300;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
/** setTimeout's ceiling: longer delays fire at once. */
const MAX_TIMER_SECONDS = Math.floor(0x7fffffff / 1000);

function toExports(v: ConfigInput['export']): Array<{ name: string; path: string }> {
  if (v === undefined) return [];
  if (Array.isArray(v)) return v.map(parseExport);
  if (typeof v === 'object') return Object.entries(v).map(([name, path]) => ({ name, path: String(path) }));
  throw new ConfigError('export must be a list of NAME=PATH or a table of NAME = "PATH"');
}

/** Merges file and flags over the defaults and checks everything that can be checked. */
export function resolveConfig(file: ConfigInput, flags: ConfigInput, cwd = process.cwd()): ServerConfig {
  const pick = <K extends keyof ConfigInput>(k: K): ConfigInput[K] => flags[k] ?? file[k];
  const { host, port } = parseListen(pick('listen') ?? '127.0.0.1:10000');
  const metricsListen = pick('metrics-listen');
  const metrics = metricsListen ? parseListen(metricsListen) : null;
  if (metrics && metrics.host === host && metrics.port === port && port !== 0)
    throw new ConfigError(
      `metrics-listen ${metricsListen} is the DMAs' listen address: give it a port of its own`,
    );

  // Flags' exports add to the file's; a name given twice is a mistake worth stopping for.
  const exportsIn = [...toExports(file.export), ...toExports(flags.export)];
  const exports: Export[] = [];
  const names = new Set<string>();
  for (const e of exportsIn) {
    if (names.has(e.name)) throw new ConfigError(`export name '${e.name}' is given twice`);
    names.add(e.name);
    const path = resolve(cwd, e.path);
    let st;
    try {
      st = statSync(path);
    } catch {
      throw new ConfigError(`export '${e.name}': ${path} does not exist`);
    }
    if (!st.isDirectory()) throw new ConfigError(`export '${e.name}': ${path} is not a directory`);
    exports.push({ name: e.name, path });
  }

  const logFormat = pick('log-format');
  if (logFormat !== undefined && logFormat !== 'json' && logFormat !== 'pretty') {
    throw new ConfigError(`log-format must be json or pretty, not '${logFormat}'`);
  }
  const logLevel = pick('log-level') ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`log-level must be one of ${LOG_LEVELS.join(', ')}, not '${logLevel}'`);
  }
  const authFile = pick('auth-file');
  const stateDir = resolve(cwd, pick('state-dir') ?? defaultStateDir());
  const timeout = pick('pre-auth-timeout');
  const library = pick('library');
  const maxConnections = integer(pick('max-connections') ?? 64, 'max-connections', 1, 100_000);
  // By default an eighth of the slots (8 of 64) is kept for sessions that move data.
  const reserved = pick('reserved-connections');
  const reservedConnections =
    reserved === undefined
      ? Math.floor(maxConnections / 8)
      : integer(reserved, 'reserved-connections', 0, 100_000);
  if (reservedConnections >= maxConnections) {
    throw new ConfigError(
      `reserved-connections (${reservedConnections}) must be less than max-connections (${maxConnections}), or no one could log in`,
    );
  }
  return {
    host,
    port,
    metrics,
    stateDir,
    authFile: authFile ? (isAbsolute(authFile) ? authFile : resolve(cwd, authFile)) : null,
    exports,
    maxConnections,
    maxRecordSize: integer(
      pick('max-record-size') ?? DEFAULT_MAX_RECORD_SIZE,
      'max-record-size',
      64 * 1024,
      0x7fffffff,
    ),
    maxUnauthenticated: integer(pick('max-unauthenticated') ?? 16, 'max-unauthenticated', 1, 100_000),
    maxUnauthenticatedPerAddress: integer(
      pick('max-unauthenticated-per-address') ?? 4,
      'max-unauthenticated-per-address',
      1,
      100_000,
    ),
    reservedConnections,
    preAuthTimeoutMs: integer(timeout ?? 30, 'pre-auth-timeout', 0, MAX_TIMER_SECONDS) * 1000,
    idleTimeoutMs: integer(pick('idle-timeout') ?? 900, 'idle-timeout', 0, MAX_TIMER_SECONDS) * 1000,
    allow: [...toAllow(file.allow), ...toAllow(flags.allow)],
    authBackoffMaxMs: integer(pick('auth-backoff-max') ?? 60, 'auth-backoff-max', 0, 86_400) * 1000,
    shutdownTimeoutMs:
      integer(pick('shutdown-timeout') ?? DEFAULT_SHUTDOWN_TIMEOUT_S, 'shutdown-timeout', 0, 86_400) * 1000,
    logLevel,
    logFormat,
    library: resolve(cwd, library || join(stateDir, 'library')),
    drives: integer(pick('drives') ?? 2, 'drives', 1, 64),
    slots: integer(pick('slots') ?? DEFAULT_SLOTS, 'slots', 1, MAX_SLOTS),
    tapeCapacity: parseSize(pick('tape-capacity') ?? DEFAULT_TAPE_CAPACITY, 'tape-capacity'),
    dataPorts: parseDataPorts(pick('data-ports') ?? 0),
    dataAddress: parseDataAddress(pick('data-address')),
    history: {
      mode: historyMode(pick('history-mode')),
      threads: integer(pick('history-threads') ?? 1, 'history.threads', 1, 64),
      stallTimeoutMs:
        integer(pick('history-stall-timeout') ?? 300, 'history.stall-timeout', 1, MAX_TIMER_SECONDS) * 1000,
      maxDelayMs: integer(pick('history-max-delay') ?? 50, 'history.max-delay', 1, 60_000),
      spoolMaxBytes: parseSize(
        pick('history-spool-max') ?? DEFAULT_SPOOL_MAX,
        'history.spool-max',
        0,
        2 ** 50,
      ),
      spoolMinFreeBytes: spoolMinFree(pick('history-spool-min-free')),
      warnSpoolBytes: parseSize(
        pick('history-warn-spool') ?? DEFAULT_WARN_SPOOL_BYTES,
        'history.warn-spool',
        0,
        2 ** 50,
      ),
      warnLagShare: share(pick('history-warn-lag-share') ?? DEFAULT_WARN_LAG_SHARE, 'history.warn-lag-share'),
      warnLagAfterMs:
        integer(
          pick('history-warn-lag-after') ?? DEFAULT_WARN_LAG_AFTER_MS / 1000,
          'history.warn-lag-after',
          0,
          MAX_TIMER_SECONDS,
        ) * 1000,
    },
    restore: { special: yesNo(pick('restore-special') ?? false, 'restore.special') },
  };
}

/** A share from 0 to 1 (history.warn-lag-share; 0: never warned of). */
function share(v: unknown, what: string): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > 1)
    throw new ConfigError(`${what} must be a share from 0 to 1 (0.15 = 15%; 0 = never), not '${String(v)}'`);
  return n;
}

/** history.spool-min-free: a size; absent or `auto`: the default rule (null). */
function spoolMinFree(v: unknown): number | null {
  if (v === undefined || v === 'auto') return null;
  return parseSize(v, 'history.spool-min-free (or auto)', 0, 2 ** 50);
}

/** A true/false setting: a TOML boolean, or y/n, yes/no, true/false. */
function yesNo(v: unknown, what: string): boolean {
  if (typeof v === 'boolean') return v;
  const b = typeof v === 'string' ? envFlag(v) : null;
  if (b === null) throw new ConfigError(`${what} must be true or false, not '${String(v)}'`);
  return b;
}

/** `allow`: a list of CIDRs (or one), each checked here so a typo stops the start, not a DMA. */
function toAllow(v: ConfigInput['allow']): string[] {
  if (v === undefined) return [];
  const list = Array.isArray(v) ? v : [v];
  return list.map((c) => {
    if (typeof c !== 'string')
      throw new ConfigError(`allow must be a list of CIDRs such as "10.0.0.0/8", not ${JSON.stringify(c)}`);
    try {
      const { address, prefix } = parseCidr(c);
      return `${address}/${prefix}`;
    } catch (e) {
      if (e instanceof AddressError) throw new ConfigError(`allow: ${e.message}`);
      throw e;
    }
  });
}

function historyMode(v: unknown): 'worker' | 'lockstep' {
  if (v === undefined || v === 'worker') return 'worker';
  if (v === 'lockstep') return 'lockstep';
  throw new ConfigError(`history.mode must be worker or lockstep, not '${String(v)}'`);
}

/** `--data-address`: an IPv4 address of this host, or 0.0.0.0 for all of them (NDMP addresses are IPv4). */
export function parseDataAddress(v: unknown): string | null {
  if (v === undefined || v === '') return null;
  const s = String(v);
  if (!net.isIPv4(s)) throw new ConfigError(`data-address must be an IPv4 address or 0.0.0.0, not '${s}'`);
  return s;
}

/** Creates the state directory (0700) if needed. */
export function prepareStateDir(dir: string): void {
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!statSync(dir).isDirectory()) throw new ConfigError(`state dir ${dir} is not a directory`);
}

function machineId(): string | null {
  try {
    const mid = readFileSync('/etc/machine-id', 'utf8').trim();
    if (/^[0-9a-f]{8,}$/i.test(mid)) return mid.slice(0, 8);
  } catch {
    /* no machine id */
  }
  return null;
}

/**
 * The host id if it is already known: the one in the state dir's `host-id`
 * file (an administrator's, for hosts cloned from one image that share a
 * machine id, or the one a start without a machine id made), else the
 * machine id. DMAs know the server by it (docs/dma.md, "Servers").
 * Read-only, for commands that must not create state.
 */
export function existingHostId(stateDir: string): string | null {
  const file = join(stateDir, 'host-id');
  const own = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
  return own || machineId();
}

/** A stable id for CONFIG_GET_HOST_INFO and drive serials: the machine id if there is one, else our own. */
export function hostId(stateDir: string): string {
  const known = existingHostId(stateDir);
  if (known) return known;
  const id = randomBytes(4).toString('hex');
  writeFileSync(join(stateDir, 'host-id'), `${id}\n`, { mode: 0o600 });
  return id;
}
