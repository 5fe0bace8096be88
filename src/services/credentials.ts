// Credentials for CONNECT_CLIENT_AUTH: the auth file (`user:password` lines),
// its permission check, the generated first-start file, and verification of
// TEXT passwords and MD5 digests in constant time. The DMA's password files
// are read with the same line parser, so both sides agree on what a line means.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { md5Digest } from '../wire/index.js';
import { CodedError } from '../util/coded-error.js';

export class AuthFileError extends CodedError {
  readonly code = 'NDMPD_AUTH_FILE';
}

/** The users allowed to connect. Passwords stay in here and never reach a log. */
export class Credentials {
  private constructor(private readonly users: ReadonlyMap<string, string>) {}

  static fromEntries(entries: Iterable<[string, string]>): Credentials {
    return new Credentials(new Map(entries));
  }

  /**
   * Loads an auth file. Refuses a file that group or others may access: it holds
   * clear-text passwords (MD5 auth needs the clear secret on the server side).
   */
  static load(path: string): Credentials {
    let st;
    try {
      st = statSync(path);
    } catch (e) {
      throw new AuthFileError(`cannot read auth file ${path}: ${(e as Error).message}`);
    }
    if (!st.isFile()) throw new AuthFileError(`auth file ${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      throw new AuthFileError(
        `auth file ${path} has mode ${(st.mode & 0o777).toString(8)}: it holds passwords and must not be ` +
          `accessible to group or others (run: chmod 600 ${path})`,
      );
    }
    const users = new Map<string, string>();
    for (const { line, user, password } of parseAuthLines(readFileSync(path, 'utf8'))) {
      if (user === null) throw new AuthFileError(`${path}:${line}: expected user:password`);
      if (password === '') throw new AuthFileError(`${path}:${line}: empty password for user '${user}'`);
      users.set(user, password);
    }
    if (users.size === 0) throw new AuthFileError(`auth file ${path} defines no user`);
    return new Credentials(users);
  }

  checkText(user: string, password: string): boolean {
    const expected = this.users.get(user);
    // Compare digests of equal length so the time taken says nothing about the password.
    const a = sha256(expected ?? randomBytes(16).toString('hex'));
    const b = sha256(password);
    return timingSafeEqual(a, b) && expected !== undefined;
  }

  checkMd5(user: string, challenge: Buffer, digest: Buffer): boolean {
    const password = this.users.get(user);
    if (password === undefined || digest.length !== 16) return false;
    return timingSafeEqual(md5Digest(password, challenge), digest);
  }

  passwordOf(user: string): string | undefined {
    return this.users.get(user);
  }

  /** What `next` changes, by user name only (a reload's log line; passwords never reach a log). */
  changesTo(next: Credentials): { added: string[]; removed: string[]; passwordChanged: string[] } {
    const added = [...next.users.keys()].filter((u) => !this.users.has(u));
    const removed = [...this.users.keys()].filter((u) => !next.users.has(u));
    const passwordChanged = [...next.users].filter(([u, p]) => this.users.has(u) && this.users.get(u) !== p);
    return { added, removed, passwordChanged: passwordChanged.map(([u]) => u) };
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export interface AuthLine {
  /** 1-based line number. */
  line: number;
  /** null when the line has no `user:` part. */
  user: string | null;
  /** The text after the first colon, or the whole line when there is none. */
  password: string;
  /** The whole line, trimmed (a password file may hold just a password, colons and all). */
  text: string;
}

/**
 * The meaningful lines of an auth or password file: surrounding blanks are
 * trimmed; empty lines and lines starting with '#' are skipped.
 */
export function parseAuthLines(text: string): AuthLine[] {
  const out: AuthLine[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    out.push(
      colon <= 0
        ? { line: i + 1, user: null, password: line, text: line }
        : { line: i + 1, user: line.slice(0, colon), password: line.slice(colon + 1), text: line },
    );
  });
  return out;
}

export const DEFAULT_USER = 'ndmp';

/**
 * With no auth file configured, the first start writes one (0600) with a random
 * password, so the quick start needs no editing. Later starts reuse it.
 * Returns whether the file was created.
 */
export function ensureGeneratedAuthFile(path: string): boolean {
  if (existsSync(path)) return false;
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const password = randomBytes(18).toString('base64url');
  writeFileSync(
    path,
    `# ndmpd credentials: user:password, one per line. Keep this file mode 0600.\n${DEFAULT_USER}:${password}\n`,
    {
      mode: 0o600,
      flag: 'wx',
    },
  );
  chmodSync(path, 0o600);
  return true;
}
