// One error type for everything the catalog refuses or cannot do, so the DMA
// can tell a catalog problem (print it, exit) from a bug. The store's own
// error, when there is one, is the cause.

import { CodedError } from '../util/coded-error.js';

export class CatalogError extends CodedError {
  override readonly name = 'CatalogError';
  readonly code = 'CATALOG_ERROR';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The message of whatever was thrown. */
export function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Rethrows a CatalogError as is; wraps anything else, naming what failed. */
export function wrap(what: string, e: unknown): CatalogError {
  return e instanceof CatalogError ? e : new CatalogError(`${what}: ${reason(e)}`, { cause: e });
}
