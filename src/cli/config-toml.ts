// `ndmpd --check-config`: the resolved configuration written back as a config
// file, in the file's own keys and units (ndmpd.example.toml): seconds, not
// milliseconds; sizes as "64G"; data-ports as "LOW-HIGH". Given back to
// `--config`, it resolves to the same configuration (test/integration/service.test.ts).

import type { ServerConfig } from './server-config.js';

const UNITS: readonly [string, number][] = [
  ['P', 2 ** 50],
  ['T', 2 ** 40],
  ['G', 2 ** 30],
  ['M', 2 ** 20],
  ['K', 2 ** 10],
];

/** A size as the file spells it: "64G" when a binary unit divides it, else plain bytes. */
function size(bytes: number): string | number {
  for (const [u, n] of UNITS) if (bytes > 0 && bytes % n === 0) return `${bytes / n}${u}`;
  return bytes;
}

/** A TOML value: JSON's string escapes are TOML basic-string escapes; numbers and booleans read the same. */
function value(v: string | number | boolean | readonly string[]): string {
  if (Array.isArray(v)) return `[${v.map((x) => JSON.stringify(x)).join(', ')}]`;
  return JSON.stringify(v);
}

/** A bare key when TOML allows one, else a quoted key (export names are the operator's). */
function key(k: string): string {
  return /^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k);
}

function host(cfg: ServerConfig): string {
  return cfg.host.includes(':') ? `[${cfg.host}]:${cfg.port}` : `${cfg.host}:${cfg.port}`;
}

export function configToToml(cfg: ServerConfig): string {
  const lines: string[] = ['# ndmpd --check-config: the resolved configuration (defaults, file, flags)'];
  const put = (k: string, v: string | number | boolean | readonly string[]) =>
    lines.push(`${key(k)} = ${value(v)}`);
  put('listen', host(cfg));
  if (cfg.metrics) {
    const m = cfg.metrics;
    put('metrics-listen', m.host.includes(':') ? `[${m.host}]:${m.port}` : `${m.host}:${m.port}`);
  } else lines.push('# metrics-listen: none; no metrics are served');
  put('state-dir', cfg.stateDir);
  if (cfg.authFile) put('auth-file', cfg.authFile);
  else lines.push(`# auth-file: none given; ndmpd uses (and on first start creates) ${cfg.stateDir}/auth`);
  put('library', cfg.library);
  put('drives', cfg.drives);
  put('slots', cfg.slots);
  put('tape-capacity', size(cfg.tapeCapacity));
  const { low, high } = cfg.dataPorts;
  put('data-ports', low === 0 ? '0' : low === high ? String(low) : `${low}-${high}`);
  if (cfg.dataAddress) put('data-address', cfg.dataAddress);
  else lines.push('# data-address: none; data connections listen on the address each DMA reached');
  put('allow', cfg.allow);
  if (cfg.allow.length === 0) lines.push('# allow = []: every address may connect');
  put('max-connections', cfg.maxConnections);
  put('max-unauthenticated', cfg.maxUnauthenticated);
  put('max-unauthenticated-per-address', cfg.maxUnauthenticatedPerAddress);
  put('reserved-connections', cfg.reservedConnections);
  put('idle-timeout', cfg.idleTimeoutMs / 1000);
  put('pre-auth-timeout', cfg.preAuthTimeoutMs / 1000);
  put('auth-backoff-max', cfg.authBackoffMaxMs / 1000);
  put('max-record-size', cfg.maxRecordSize);
  put('shutdown-timeout', cfg.shutdownTimeoutMs / 1000);
  put('log-level', cfg.logLevel);
  if (cfg.logFormat) put('log-format', cfg.logFormat);
  else lines.push('# log-format: none; pretty on a terminal, else json');
  lines.push('', '[history]');
  put('mode', cfg.history.mode);
  put('threads', cfg.history.threads);
  put('stall-timeout', cfg.history.stallTimeoutMs / 1000);
  put('max-delay', cfg.history.maxDelayMs);
  put('spool-max', size(cfg.history.spoolMaxBytes));
  put(
    'spool-min-free',
    cfg.history.spoolMinFreeBytes === null ? 'auto' : size(cfg.history.spoolMinFreeBytes),
  );
  put('warn-spool', size(cfg.history.warnSpoolBytes));
  put('warn-lag-share', cfg.history.warnLagShare);
  put('warn-lag-after', cfg.history.warnLagAfterMs / 1000);
  lines.push('', '[restore]');
  put('special', cfg.restore.special);
  lines.push('', '[export]');
  for (const e of cfg.exports) put(e.name, e.path);
  if (cfg.exports.length === 0) lines.push('# none: nothing can be backed up');
  return `${lines.join('\n')}\n`;
}
