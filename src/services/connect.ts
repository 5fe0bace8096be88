// CONNECT_* (docs/protocol.md §5, §6, draft §3.1): version negotiation, client and server authentication.

import { randomBytes } from 'node:crypto';
import { AuthType, ErrorCode, M, NdmpError, SUPPORTED_VERSIONS, md5Digest } from '../wire/index.js';
import type { AuthData, NdmpVersion } from '../wire/index.js';
import type { Handler, Session } from './session.js';
import { handler } from './session.js';

/** After this many refused CONNECT_CLIENT_AUTH attempts the connection is closed. */
export const MAX_AUTH_FAILURES = 3;
export const DEFAULT_AUTH_FAILURE_DELAY_MS = 1000;

const connectOpen = handler(M.CONNECT_OPEN, {
  preAuth: true,
  // A second CONNECT_OPEN after one succeeded is refused (docs/protocol.md §5.2).
  when: { state: (s) => (s.opened ? 'open' : 'offered'), allow: ['offered'] },
  handle(s, req) {
    // Unsupported version: ILLEGAL_ARGS, and the DMA may retry lower (docs/protocol.md §5.2, draft §3.1.1).
    if (!SUPPORTED_VERSIONS.includes(req.protocolVersion as NdmpVersion)) {
      throw NdmpError.illegalArgs(`protocol version ${req.protocolVersion} not supported (3 and 4 are)`);
    }
    // The codec switches after this reply is sent (the connection reads `version` per message).
    s.version = req.protocolVersion as NdmpVersion;
    s.opened = true;
    s.log.info({ version: s.version }, 'protocol version negotiated');
    return {};
  },
});

type Verdict = { user: string; refused: string | null };

/**
 * Checks the credentials: `refused` is null when they are right, else why not.
 * Throws ILLEGAL_ARGS for an auth type we do not offer (the spec's answer).
 */
function verify(s: Session, a: AuthData): Verdict {
  switch (a.authType) {
    case AuthType.NDMP_AUTH_TEXT:
      return {
        user: a.authId,
        refused: s.ctx.credentials.checkText(a.authId, a.authPassword) ? null : 'wrong user or password',
      };
    case AuthType.NDMP_AUTH_MD5: {
      // The digest must answer the latest challenge this session handed out, and
      // a challenge answers one attempt: reuse would allow replaying a captured digest.
      const challenge = s.md5Challenge;
      s.md5Challenge = null;
      if (!challenge)
        return { user: a.authId, refused: 'MD5 without a prior CONFIG_GET_AUTH_ATTR challenge' };
      const ok = s.ctx.credentials.checkMd5(a.authId, challenge, a.authDigest);
      return { user: a.authId, refused: ok ? null : 'wrong user or MD5 digest' };
    }
    default:
      throw NdmpError.illegalArgs(`auth type ${a.authType} not supported (TEXT and MD5 are)`);
  }
}

const connectClientAuth = handler(M.CONNECT_CLIENT_AUTH, {
  preAuth: true,
  async handle(s, req) {
    const backoff = s.ctx.authBackoff ?? null;
    const wait = backoff?.penaltyLeft(s.peerAddress) ?? 0;
    if (backoff && wait > 0) {
      // The address is paying for earlier wrong passwords: no password is looked
      // at until its penalty is over, and the answer comes at once (nothing to slow
      // down, and a storm ties up no timers). Other addresses are not affected.
      s.md5Challenge = null;
      s.authFailures++;
      s.ctx.observer?.authFailed('backoff');
      const retry = Math.ceil(wait / 1000);
      if (backoff.firstRefusalOfWindow(s.peerAddress)) {
        s.log.warn(
          { peer: s.peerAddress, retryInS: retry },
          'authentication refused unchecked: this address failed to log in recently (further refusals in this window are not logged)',
        );
      }
      if (s.authFailures >= MAX_AUTH_FAILURES) s.close(`${MAX_AUTH_FAILURES} failed authentication attempts`);
      throw new NdmpError(
        ErrorCode.NDMP_NOT_AUTHORIZED_ERR,
        `too many failed logins from ${s.peerAddress}: retry in ${retry} s`,
      );
    }
    const { user, refused } = verify(s, req.authData);
    if (refused !== null) {
      // Each guess costs the guesser a delay, and the connection goes after a few.
      s.authFailures++;
      s.ctx.observer?.authFailed('password');
      const penaltyMs = backoff?.failed(s.peerAddress) ?? 0;
      // The user name is the peer's text: cut it so a refusal cannot flood the log.
      s.log.warn(
        { user: user.slice(0, 64), failures: s.authFailures, peer: s.peerAddress, penaltyMs },
        `authentication refused: ${refused}`,
      );
      if (s.authFailures >= MAX_AUTH_FAILURES) s.close(`${MAX_AUTH_FAILURES} failed authentication attempts`);
      await new Promise((r) => setTimeout(r, s.ctx.authFailureDelayMs ?? DEFAULT_AUTH_FAILURE_DELAY_MS));
      throw new NdmpError(ErrorCode.NDMP_NOT_AUTHORIZED_ERR, 'authentication failed');
    }
    backoff?.succeeded(s.peerAddress);
    s.user = user;
    const authType = req.authData.authType === AuthType.NDMP_AUTH_MD5 ? 'md5' : 'text';
    s.log.info({ user, authType }, 'authenticated');
    return {};
  },
});

const connectClose = handler(M.CONNECT_CLOSE, {
  preAuth: true,
  handle(s) {
    s.close('CONNECT_CLOSE from the DMA');
  },
});

const connectServerAuth = handler(M.CONNECT_SERVER_AUTH, {
  handle(s, req) {
    // The server proves it knows the secret of the user the DMA logged in as,
    // by answering the DMA's own challenge. Only MD5 proves anything without
    // sending the secret back in the clear.
    const attr = req.clientAttr;
    if (attr.authType !== AuthType.NDMP_AUTH_MD5) {
      throw NdmpError.illegalArgs('server authentication is offered with MD5 only');
    }
    const user = s.user as string;
    const password = s.ctx.credentials.passwordOf(user);
    if (password === undefined)
      throw new NdmpError(ErrorCode.NDMP_NOT_AUTHORIZED_ERR, 'user no longer known');
    return {
      serverResult: {
        authType: AuthType.NDMP_AUTH_MD5,
        authId: user,
        authDigest: md5Digest(password, attr.challenge),
      },
    };
  },
});

/** A fresh 64-byte challenge for MD5 authentication. */
export function newChallenge(): Buffer {
  return randomBytes(64);
}

export const connectHandlers: readonly Handler[] = [
  connectOpen,
  connectClientAuth,
  connectClose,
  connectServerAuth,
] as readonly Handler[];
