// Typed errors (docs/contributing.md §6): one that carries the NDMP error for a reply, one
// for input so broken that the connection must close, one for undecodable
// bodies, and one for transport failures on the DMA side.

import { ErrorCode, errorName } from './constants.js';
import { CodedError } from '../util/coded-error.js';

/** The protocol layer's errors: coded like every error of ours (util/coded-error.ts). */
export abstract class NdmpBaseError extends CodedError {}

/**
 * An operation failed with an NDMP error code. Services throw it; the
 * dispatcher turns it into the reply's error field. On the DMA side the
 * client raises it when a reply carries a non-zero error.
 */
export class NdmpError extends NdmpBaseError {
  readonly code = 'NDMP_ERROR';
  constructor(
    readonly ndmpError: number,
    message?: string,
    /** Where the error came from: a reply header (no body) or the body's error field. */
    readonly where: 'header' | 'body' = 'body',
    /**
     * Reply fields that still mean something with this error (TAPE_WRITE's
     * `count` with NDMP_EOM_ERR in the early-warning zone); the rest are zero.
     */
    readonly reply?: Readonly<Record<string, unknown>>,
  ) {
    super(message ? `${errorName(ndmpError)}: ${message}` : errorName(ndmpError));
    this.name = 'NdmpError';
  }

  get ndmpErrorName(): string {
    return errorName(this.ndmpError);
  }

  static illegalArgs(message: string): NdmpError {
    return new NdmpError(ErrorCode.NDMP_ILLEGAL_ARGS_ERR, message);
  }

  static illegalState(message: string): NdmpError {
    return new NdmpError(ErrorCode.NDMP_ILLEGAL_STATE_ERR, message);
  }
}

/** A message body that cannot be decoded (answered with NDMP_XDR_DECODE_ERR). */
export class XdrDecodeError extends NdmpBaseError {
  readonly code = 'NDMP_XDR_DECODE';
  constructor(message: string) {
    super(message);
    this.name = 'XdrDecodeError';
  }
}

/** Broken record marking or an oversized record: the connection is closed. */
export class FramingError extends NdmpBaseError {
  readonly code = 'NDMP_FRAMING';
  constructor(message: string) {
    super(message);
    this.name = 'FramingError';
  }
}

/** The peer went away, refused, or did not answer in time. */
export class TransportError extends NdmpBaseError {
  constructor(
    readonly code: 'NDMP_CONNECTION_CLOSED' | 'NDMP_TIMEOUT' | 'NDMP_CONNECT_FAILED' | 'NDMP_REFUSED',
    message: string,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}
