// Structured logs (pino). JSON lines by default; human-readable when asked for
// (or when stderr is a terminal). Secrets are redacted by path, so a message
// trace at debug level can never print a password or an MD5 digest.

import { pino } from 'pino';
import type { Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export type LogFormat = 'json' | 'pretty';

/** Paths in any log object that hold a credential. */
export const REDACT_PATHS = [
  'password',
  'authPassword',
  'authDigest',
  'body.authData.authPassword',
  'body.authData.authDigest',
  'body.serverResult.authPassword',
  'body.serverResult.authDigest',
  'body.clientAttr.challenge',
  'body.serverAttr.challenge',
];

export interface LogOptions {
  level?: string;
  format?: LogFormat;
  /** Where lines go: a file descriptor (default 2, stderr) or a writable stream. */
  destination?: number | NodeJS.WritableStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? 'info';
  const destination = opts.destination ?? 2;
  const format = opts.format ?? (destination === 2 && process.stderr.isTTY ? 'pretty' : 'json');
  const base = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { pid: process.pid } };
  if (format === 'pretty') {
    const stream =
      typeof destination === 'number'
        ? pretty({ destination, sync: true, colorize: destination === 2 && process.stderr.isTTY })
        : pretty({ destination, sync: true, colorize: false });
    return pino(base, stream);
  }
  return pino(
    base,
    typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination,
  );
}

/** A logger that drops everything (library use, tests that do not look at logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
