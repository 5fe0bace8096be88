// SIGHUP (docs/operations.md, "Reloading and stopping"): read the config file
// and the auth file again and take the new auth file, exports and allow-list
// without dropping anyone. New logins check the new passwords; logged-in
// sessions, and the backups and restores they run, go on untouched. A reload
// that fails (a bad file) changes nothing and says why. Other settings need a
// restart; the log names the ones that changed.

import { join } from 'node:path';
import { Credentials } from '../services/credentials.js';
import type { Export } from '../services/exports.js';
import { CodedError } from '../util/coded-error.js';
import type { Logger } from '../util/log.js';
import type { ServerConfig } from './server-config.js';

/** What a reload may replace while the server runs; ServerContext reads these through getters. */
export interface LiveSettings {
  credentials: Credentials;
  exports: readonly Export[];
  allow: readonly string[];
}

/** The auth file a configuration uses: the operator's, or the one generated in the state dir. */
export function authFileOf(cfg: ServerConfig): string {
  return cfg.authFile ?? join(cfg.stateDir, 'auth');
}

/** ServerConfig fields a reload applies; every other change waits for a restart. */
const RELOADED = new Set<keyof ServerConfig>(['authFile', 'exports', 'allow']);

/** The config file's key for a ServerConfig field, for the log (idleTimeoutMs: idle-timeout). */
function fileKey(k: string): string {
  if (k === 'host' || k === 'port') return 'listen';
  return k.replace(/(Ms|Bytes)$/, '').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export interface ReloadOutcome {
  /** One phrase per change applied ("user backup added", "export home: /home -> /srv/home"). */
  changes: string[];
  /** Config keys that differ but take effect only on restart. */
  restartNeeded: string[];
}

export class Reloader {
  constructor(
    private cfg: ServerConfig,
    readonly live: LiveSettings,
    /** Reads the configuration again: the same --config file and flags as at start. */
    private readonly read: () => ServerConfig,
    /** Hands a new allow-list to the listener. */
    private readonly applyAllow: (cidrs: readonly string[]) => void,
    private readonly log: Logger,
  ) {}

  /** Reloads; returns null (and logs why) when a file is bad and the old settings stay. */
  reload(): ReloadOutcome | null {
    let next: ServerConfig;
    let credentials: Credentials;
    try {
      next = this.read();
      // Load only: a missing generated file is an error here, not a new random password.
      credentials = Credentials.load(authFileOf(next));
    } catch (e) {
      // Whatever went wrong (a typed ConfigError or AuthFileError, an unreadable file), the server keeps running.
      const msg = e instanceof CodedError || e instanceof Error ? e.message : String(e);
      this.log.error({ err: msg }, `reload (SIGHUP) failed, the running configuration stays: ${msg}`);
      return null;
    }
    const changes: string[] = [];
    const users = this.live.credentials.changesTo(credentials);
    for (const u of users.added) changes.push(`user ${u} added`);
    for (const u of users.removed) changes.push(`user ${u} removed`);
    for (const u of users.passwordChanged) changes.push(`password of ${u} changed`);
    if (authFileOf(next) !== authFileOf(this.cfg))
      changes.push(`auth file ${authFileOf(this.cfg)} -> ${authFileOf(next)}`);
    const before = new Map(this.live.exports.map((e) => [e.name, e.path]));
    const after = new Map(next.exports.map((e) => [e.name, e.path]));
    for (const [n, p] of after) {
      if (!before.has(n)) changes.push(`export ${n} added (${p})`);
      else if (before.get(n) !== p) changes.push(`export ${n}: ${before.get(n)} -> ${p}`);
    }
    for (const n of before.keys()) if (!after.has(n)) changes.push(`export ${n} removed`);
    const allowBefore = new Set(this.live.allow);
    const allowAfter = new Set(next.allow);
    for (const c of allowAfter) if (!allowBefore.has(c)) changes.push(`allow ${c} added`);
    for (const c of allowBefore) if (!allowAfter.has(c)) changes.push(`allow ${c} removed`);
    if (allowBefore.size > 0 && allowAfter.size === 0) changes.push('every address may connect now');

    const restartNeeded = new Set<string>();
    for (const k of Object.keys(next) as (keyof ServerConfig)[]) {
      if (RELOADED.has(k)) continue;
      if (JSON.stringify(next[k]) !== JSON.stringify(this.cfg[k])) restartNeeded.add(fileKey(k));
    }

    this.live.credentials = credentials;
    this.live.exports = next.exports;
    this.live.allow = next.allow;
    this.applyAllow(next.allow);
    // What a restart would apply stays as it runs, so the next reload compares with that.
    this.cfg = { ...this.cfg, authFile: next.authFile, exports: next.exports, allow: next.allow };

    const fields = {
      changes,
      users: users.added.length + users.removed.length,
      exports: next.exports.length,
    };
    if (changes.length === 0) this.log.info(fields, 'reloaded (SIGHUP): nothing changed');
    else this.log.info(fields, `reloaded (SIGHUP): ${changes.join('; ')}`);
    if (restartNeeded.size > 0) {
      this.log.warn(
        { restartNeeded: [...restartNeeded] },
        `changed in the configuration, applied only on restart: ${[...restartNeeded].join(', ')}`,
      );
    }
    return { changes, restartNeeded: [...restartNeeded] };
  }
}
