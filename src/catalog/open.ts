// Which store a catalog spec names: a postgres:// URL is PostgreSQL, anything
// else a SQLite file, and no spec the SQLite file in the DMA's state dir.

import fs from 'node:fs';
import { join } from 'node:path';
import { CatalogError } from './errors.js';
import { PostgresCatalog } from './postgres.js';
import { SqliteCatalog } from './sqlite.js';
import type { Catalog } from './types.js';

export { CatalogError } from './errors.js';

export function isPostgresSpec(spec: string): boolean {
  return /^postgres(ql)?:\/\//i.test(spec);
}

export interface OpenOptions {
  /**
   * Make the catalog when there is none (default true). `ndmp` opens a
   * catalog it was named with create false, except for `ndmp init`: a
   * mistyped path must be an error, not a new empty catalog.
   */
  create?: boolean;
}

/** The hint that goes with a catalog that does not exist. */
export function initHint(spec: string): string {
  return `create it with 'ndmp init --catalog ${spec}', or check the path (NDMP_CATALOG, --catalog)`;
}

export async function openCatalog(
  spec: string | undefined,
  defaultDir: string,
  opts: OpenOptions = {},
): Promise<Catalog> {
  const create = opts.create ?? true;
  if (spec === undefined || spec === '') return new SqliteCatalog(join(defaultDir, 'catalog.sqlite'));
  if (isPostgresSpec(spec)) return PostgresCatalog.open(spec, { create });
  // "sqlite:/path", as `location` prints it, names the same file.
  const file = spec.startsWith('sqlite:') ? spec.slice('sqlite:'.length) : spec;
  if (!create && !fs.existsSync(file)) {
    throw new CatalogError(`there is no catalog at ${file}: ${initHint(spec)}`);
  }
  return new SqliteCatalog(file);
}
