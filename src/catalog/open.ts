// Which store a catalog spec names: a postgres:// URL is PostgreSQL, anything
// else a SQLite file, and no spec the SQLite file in the DMA's state dir.

import { join } from 'node:path';
import { PostgresCatalog } from './postgres.js';
import { SqliteCatalog } from './sqlite.js';
import type { Catalog } from './types.js';

export { CatalogError } from './errors.js';

export function isPostgresSpec(spec: string): boolean {
  return /^postgres(ql)?:\/\//i.test(spec);
}

export async function openCatalog(spec: string | undefined, defaultDir: string): Promise<Catalog> {
  if (spec === undefined || spec === '') return new SqliteCatalog(join(defaultDir, 'catalog.sqlite'));
  if (isPostgresSpec(spec)) return PostgresCatalog.open(spec);
  // "sqlite:/path", as `location` prints it, names the same file.
  return new SqliteCatalog(spec.startsWith('sqlite:') ? spec.slice('sqlite:'.length) : spec);
}
