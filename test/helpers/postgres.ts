// A PostgreSQL for tests: NDMP_TEST_POSTGRES names a server, a database and a
// role that may create schemas there (.ci/run sets one up). Each caller gets a
// schema of its own, so runs never see each other's catalogs.

import { randomBytes } from 'node:crypto';
import pg from 'pg';

export function postgresForTests(): string | null {
  return process.env.NDMP_TEST_POSTGRES || null;
}

/** `url` with its connections' search_path set to `schema`. */
export function inSchema(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

/** The URL of a new, empty schema on the test server. */
export async function freshPostgresCatalog(): Promise<string> {
  const base = postgresForTests();
  if (!base) throw new Error('NDMP_TEST_POSTGRES is not set');
  const schema = `ndmp_dma_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: base });
  await client.connect();
  try {
    await client.query(`CREATE SCHEMA ${schema}`);
  } finally {
    await client.end();
  }
  return inSchema(base, schema);
}
