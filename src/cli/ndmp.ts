#!/usr/bin/env node
// ndmp: the DMA. Today it queries servers; backup, restore and the catalog follow.

import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { NdmpClient } from '../dma/client.js';
import { parseAuthLines } from '../services/credentials.js';
import { query } from '../dma/query.js';
import { NdmpError, TransportError } from '../wire/index.js';
import type { NdmpVersion } from '../wire/index.js';
import { VERSION } from '../util/version.js';
import { formatQuery, toJson } from './query-format.js';

/** Exit codes: 0 done, 1 the server refused or failed, 2 usage or local trouble, 3 connection trouble. */
const EXIT_NDMP = 1;
const EXIT_USAGE = 2;
const EXIT_TRANSPORT = 3;

class UsageError extends Error {}

export function parseTarget(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:/]+))(?::(\d+))?$/.exec(s);
  if (!m) throw new UsageError(`'${s}' is not HOST[:PORT]`);
  const port = m[3] ? Number(m[3]) : 10000;
  if (port < 1 || port > 65535) throw new UsageError(`port ${port} is out of range`);
  return { host: m[1] ?? m[2]!, port };
}

/**
 * The password: NDMP_PASSWORD, or the first line of --password-file that is
 * not a comment. A line `USER:PASSWORD` for the given user also works, so
 * ndmpd's generated auth file can be used as it is.
 */
export function readPassword(file: string | undefined, user: string): string {
  if (!file) {
    const env = process.env.NDMP_PASSWORD;
    if (env) return env;
    throw new UsageError('give --password-file FILE (or set NDMP_PASSWORD)');
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read password file: ${(e as Error).message}`);
  }
  const lines = parseAuthLines(text);
  const own = lines.find((l) => l.user === user);
  if (own) return own.password;
  if (lines.length === 0) throw new UsageError(`password file ${file} is empty`);
  // A file with just the password: the whole first line, colons and all.
  return lines[0]!.text;
}

interface ConnectOpts {
  user: string;
  passwordFile?: string;
  v3?: boolean;
  auth: 'md5' | 'text';
  timeout: string;
}

async function connectAndLogin(target: string, o: ConnectOpts): Promise<NdmpClient> {
  const { host, port } = parseTarget(target);
  const timeout = Number(o.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 2_000_000) {
    throw new UsageError(`--timeout must be a number of seconds, not '${o.timeout}'`);
  }
  const password = readPassword(o.passwordFile, o.user);
  const client = await NdmpClient.connect({ host, port, timeoutMs: timeout * 1000 });
  try {
    await client.open(o.v3 ? (3 as NdmpVersion) : undefined);
    if (o.auth === 'text') await client.authText(o.user, password);
    else await client.authMd5(o.user, password);
  } catch (e) {
    client.destroy();
    throw e;
  }
  return client;
}

function addConnectOptions(cmd: Command): Command {
  return cmd
    .requiredOption('-u, --user <user>', 'NDMP user name')
    .option(
      '-p, --password-file <file>',
      'file holding the password (or USER:PASSWORD lines); else $NDMP_PASSWORD',
    )
    .option('--v3', 'speak NDMP v3 (default: the highest both sides speak, normally v4)')
    .addOption(new Option('--auth <type>', 'authentication').choices(['md5', 'text']).default('md5'))
    .option('--timeout <seconds>', 'wait this long for the server and each reply', '30');
}

async function main(argv: string[]): Promise<void> {
  const program = new Command('ndmp')
    .description('NDMP DMA: query, back up and restore through NDMP servers')
    .version(VERSION)
    .showHelpAfterError();

  addConnectOptions(
    program
      .command('query')
      .description(
        'show what a server offers (as ndmjob -q): host, server, auth and connection types, backup types, file systems, tapes',
      )
      .argument('<server>', 'HOST[:PORT] (port 10000 by default)')
      .option('--json', 'print JSON instead of text'),
  ).action(async (target: string, o: ConnectOpts & { json?: boolean }) => {
    const client = await connectAndLogin(target, o);
    try {
      const r = await query(client);
      process.stdout.write(o.json ? `${toJson(r)}\n` : formatQuery(target, r));
    } finally {
      await client.close();
    }
  });

  await program.parseAsync(argv);
}

main(process.argv).catch((e: unknown) => {
  if (e instanceof UsageError) {
    process.stderr.write(`ndmp: ${e.message}\n`);
    process.exit(EXIT_USAGE);
  }
  if (e instanceof NdmpError) {
    const hint = e.ndmpErrorName === 'NDMP_NOT_AUTHORIZED_ERR' ? ' (wrong user or password?)' : '';
    process.stderr.write(`ndmp: ${e.message}${hint}\n`);
    process.exit(EXIT_NDMP);
  }
  if (e instanceof TransportError) {
    process.stderr.write(`ndmp: ${e.message}\n`);
    process.exit(EXIT_TRANSPORT);
  }
  process.stderr.write(`ndmp: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(EXIT_USAGE);
});
