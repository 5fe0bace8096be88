// CONNECT_* (draft §3.1): version negotiation, client and server authentication.

import { randomBytes } from 'node:crypto';
import { AuthType, ErrorCode, M, NdmpError, SUPPORTED_VERSIONS, md5Digest } from '../wire/index.js';
import type { NdmpVersion } from '../wire/index.js';
import type { Handler, Session } from './session.js';
import { handler } from './session.js';

/** After this many refused CONNECT_CLIENT_AUTH attempts the connection is closed. */
export const MAX_AUTH_FAILURES = 3;

const connectOpen = handler(M.CONNECT_OPEN, {
  preAuth: true,
  // A second CONNECT_OPEN after one succeeded is refused (PROTOCOL.md §5.2).
  when: { state: (s) => (s.opened ? 'open' : 'offered'), allow: ['offered'] },
  handle(s, req) {
    // Unsupported version: ILLEGAL_ARGS, and the DMA may retry lower (draft §3.1.1).
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

function refuse(s: Session, user: string, why: string): never {
  s.authFailures++;
  s.log.warn({ user, failures: s.authFailures }, `authentication refused: ${why}`);
  if (s.authFailures >= MAX_AUTH_FAILURES) s.close(`${MAX_AUTH_FAILURES} failed authentication attempts`);
  throw new NdmpError(ErrorCode.NDMP_NOT_AUTHORIZED_ERR, 'authentication failed');
}

const connectClientAuth = handler(M.CONNECT_CLIENT_AUTH, {
  preAuth: true,
  handle(s, req) {
    const a = req.authData;
    switch (a.authType) {
      case AuthType.NDMP_AUTH_TEXT:
        if (!s.ctx.credentials.checkText(a.authId, a.authPassword))
          refuse(s, a.authId, 'wrong user or password');
        s.user = a.authId;
        break;
      case AuthType.NDMP_AUTH_MD5: {
        // The digest must answer the latest challenge this session handed out.
        const challenge = s.md5Challenge;
        if (!challenge) refuse(s, a.authId, 'MD5 without a prior CONFIG_GET_AUTH_ATTR challenge');
        // A challenge answers one attempt: reuse would allow replaying a captured digest.
        s.md5Challenge = null;
        if (!s.ctx.credentials.checkMd5(a.authId, challenge, a.authDigest)) {
          refuse(s, a.authId, 'wrong user or MD5 digest');
        }
        s.user = a.authId;
        break;
      }
      default:
        // NONE (or anything else) is not offered: the spec's answer is ILLEGAL_ARGS.
        throw NdmpError.illegalArgs(`auth type ${a.authType} not supported (TEXT and MD5 are)`);
    }
    s.log.info(
      { user: s.user, authType: a.authType === AuthType.NDMP_AUTH_MD5 ? 'md5' : 'text' },
      'authenticated',
    );
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
