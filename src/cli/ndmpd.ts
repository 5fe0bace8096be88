#!/usr/bin/env node
// ndmpd: the NDMP server a storage host runs.

import { existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import {
  AuthFileError,
  Credentials,
  DEFAULT_USER,
  ensureGeneratedAuthFile,
} from '../services/credentials.js';
import { AuthBackoff, DEFAULT_AUTH_BACKOFF } from '../services/auth-backoff.js';
import { Library, LibraryError } from '../devices/library.js';
import { CHANGER_DEVICE, LibraryChanger } from '../devices/library-changer.js';
import { LibraryLockedError, lockLibrary } from '../devices/library-lock.js';
import { HistoryHub, historyDefaults } from '../history/hub.js';
import { NdmpServer } from '../server/listener.js';
import { MetricsListenError, ServerMetrics, sessionStatesOf } from '../server/metrics.js';
import { bindControlPort } from '../server/bind.js';
import { ShutdownDrain } from '../server/drain.js';
import { returnMemory } from '../services/memory.js';
import type { ServerContext, ServerInfo } from '../services/session.js';
import { createLogger } from '../util/log.js';
import type { Logger } from '../util/log.js';
import { PRODUCT_NAME, VENDOR_NAME, VERSION } from '../util/version.js';
import type { ConfigInput, ServerConfig } from './server-config.js';
import { ConfigError, hostId, prepareStateDir, readConfigFile, resolveConfig } from './server-config.js';
import { CommandError, tapeCommand } from './tape-command.js';
import { sessionsCommand, statusCommand } from './admin-command.js';
import { ADMIN_SOCKET_NAME, AdminSocket, AdminSocketError } from '../server/admin-socket.js';
import { AdminOps } from '../server/admin-ops.js';
import { configToToml } from './config-toml.js';
import { Reloader } from './reload.js';
import { CodedError } from '../util/coded-error.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

const HELP_AFTER = `
Settings come from built-in defaults, then --config FILE (TOML, keys named as
the long flags: listen, state-dir, auth-file, export, ...; see
ndmpd.example.toml), then the flags; flags win. --export given on the command
line adds to the file's exports.

Auth file: one "user:password" per line ('#' starts a comment). It must not be
accessible by group or others (chmod 600), or ndmpd refuses to start. Without
--auth-file, the first start writes <state-dir>/auth with user "${DEFAULT_USER}" and a
random password, and says where.

Tape library: a folder (default <state-dir>/library, created on first start)
with tapes/<BARCODE> image files and drives/<drive>, slots/<n> and mailslot/1
symlinks to the tape in each; DMAs move tapes with the SCSI changer changer0.
Manage it with "ndmpd tape ..." (ndmpd tape --help).

Examples:
  ndmpd --export home=/home
  ndmpd --listen 0.0.0.0:10000 --state-dir /var/lib/ndmpd \\
        --export data=/srv/data --auth-file /etc/ndmpd/auth`;

function loadCredentials(cfg: ServerConfig, log: Logger): Credentials {
  if (cfg.authFile) return Credentials.load(cfg.authFile);
  const path = join(cfg.stateDir, 'auth');
  if (ensureGeneratedAuthFile(path)) {
    log.warn(
      { authFile: path, user: DEFAULT_USER },
      `no auth file configured: created ${path} with user '${DEFAULT_USER}' and a random password (read it from that file)`,
    );
  } else {
    log.info({ authFile: path }, 'using generated credentials');
  }
  return Credentials.load(path);
}

async function main(argv: string[]): Promise<void> {
  const program = new Command('ndmpd')
    .description('NDMP v4/v3 server: data, tape and mover services for backup applications (DMAs)')
    .version(VERSION)
    .option('-c, --config <file>', 'TOML config file')
    .option('--listen <host:port>', 'address for DMA control connections (default 127.0.0.1:10000)')
    .option(
      '--metrics-listen <host:port>',
      'serve Prometheus metrics at GET /metrics there, e.g. 127.0.0.1:9464 (default: off; docs/operations.md)',
    )
    .option(
      '--state-dir <dir>',
      'where ndmpd keeps its state (default $NDMPD_STATE_DIR, else /var/lib/ndmpd as root, else $XDG_STATE_HOME/ndmpd or ~/.local/state/ndmpd)',
    )
    .option('--export <name=path>', 'offer a directory tree for backup (repeatable)', collect)
    .option('--auth-file <file>', 'user:password lines, mode 0600 (default: generated in the state dir)')
    .option(
      '--max-connections <n>',
      'DMA connections at most; when full, the longest-idle session without a device gives way (default 64)',
    )
    .option(
      '--max-unauthenticated <n>',
      'connections not yet logged in at most; beyond, the oldest of them gives way (default 16)',
    )
    .option(
      '--max-unauthenticated-per-address <n>',
      'connections not yet logged in from one address (IPv6: one /64); more are refused (default 4)',
    )
    .option(
      '--reserved-connections <n>',
      'slots only sessions holding a device (tape, mover, data) may fill (default max-connections / 8)',
    )
    .option(
      '--idle-timeout <seconds>',
      'close logged-in sessions that hold no device and send nothing for this long (default 900, 0 = never)',
    )
    .option(
      '--allow <cidr>',
      'only these networks may connect, e.g. 10.0.0.0/8, ::1/128, a bare address (repeatable; default all)',
      collect,
    )
    .option(
      '--auth-backoff-max <seconds>',
      'failed logins from an address: refused unchecked for 1, 2, 4 ... s, up to this (default 60, 0 = off)',
    )
    .option(
      '--max-record-size <bytes>',
      'close a connection that sends a larger NDMP record (default 4 MiB + 4 KiB)',
    )
    .option(
      '--pre-auth-timeout <seconds>',
      'close connections that do not authenticate in time (default 30, 0 = never)',
    )
    .option(
      '--log-level <level>',
      'fatal, error, warn, info, debug (message trace), trace, silent (default info)',
    )
    .addOption(
      new Option('--log-format <format>', 'json lines, or pretty (default: pretty on a terminal)').choices([
        'json',
        'pretty',
      ]),
    )
    .option('--library <dir>', 'the virtual tape library folder (default <state-dir>/library)')
    .option('--drives <n>', 'number of tape drives in the library (default 2)')
    .option('--slots <n>', "storage slots of the library's changer (default 8)")
    .option('--tape-capacity <size>', 'size of new and blank tapes: bytes, or 512M, 10G, 1T (default 64G)')
    .option(
      '--data-ports <low-high>',
      'TCP ports for data connections, LOW-HIGH or one port (default 0 = any)',
    )
    .option(
      '--data-address <ipv4>',
      'address data connections listen on: one of this host, or 0.0.0.0 for all (default: the one the DMA reached)',
    )
    .addOption(
      new Option(
        '--history-mode <mode>',
        'who sends file history: worker (the history thread) or lockstep (each backup, waiting; a baseline) (default worker)',
      ).choices(['worker', 'lockstep']),
    )
    .option('--history-threads <n>', 'history threads (default 1)')
    .option(
      '--history-stall-timeout <seconds>',
      'a backup whose DMA takes no file history for this long halts (default 300)',
    )
    .option('--history-max-delay <ms>', 'a history batch waits at most this long to fill (default 50)')
    .option(
      '--history-spool-max <size>',
      'bytes of file history each backup may spool while its DMA lags, then it waits for the DMA; 0: no spool (default 4G)',
    )
    .option(
      '--history-spool-min-free <size>',
      'the spool stops while its disk has less free (default auto: the smaller of 1G and 5%; 0: no floor)',
    )
    .option(
      '--history-warn-spool <size>',
      "warn the DMA and the log when a backup's history spool holds more (default 64M; 0: never)",
    )
    .option(
      '--history-warn-lag-share <share>',
      'warn when the DMA took no history for more than this share of a backup (default 0.15; 0: never)',
    )
    .option(
      '--history-warn-lag-after <seconds>',
      'the share is looked at once a backup has run this long (default 30)',
    )
    .option(
      '--restore-special',
      'recovers create device nodes and fifos and keep setuid/setgid bits as stored, unless the DMA sends RESTORE_SPECIAL=n (default: not, unless it sends RESTORE_SPECIAL=y)',
    )
    .option(
      '--no-restore-special',
      'recovers withhold device nodes, fifos and setuid/setgid bits (the default)',
    )
    .option(
      '--shutdown-timeout <seconds>',
      'on SIGTERM, running backups and restores get this long to finish, then are aborted (default 300)',
    )
    .option(
      '--check-config',
      'print the resolved configuration (TOML, as the config file spells it) and exit',
    )
    .addHelpText('after', HELP_AFTER)
    .showHelpAfterError()
    // Options of ndmpd itself go before a subcommand; those after it are the subcommand's.
    .enablePositionalOptions()
    .action(() => runServer(program.opts()));
  program.addCommand(tapeCommand());
  program.addCommand(statusCommand());
  program.addCommand(sessionsCommand());
  await program.parseAsync(argv);
}

async function runServer(o: Record<string, string | string[] | boolean | undefined>): Promise<void> {
  const flags: ConfigInput = {};
  for (const k of [
    'listen',
    'metrics-listen',
    'state-dir',
    'auth-file',
    'log-level',
    'log-format',
    'library',
    'tape-capacity',
    'data-ports',
    'data-address',
    'history-mode',
  ] as const) {
    const v = o[camel(k)];
    if (typeof v === 'string') (flags as Record<string, unknown>)[k] = v;
  }
  // Numbers stay strings here: resolveConfig checks them and names a bad one.
  for (const k of [
    'max-connections',
    'max-unauthenticated',
    'max-unauthenticated-per-address',
    'reserved-connections',
    'idle-timeout',
    'auth-backoff-max',
    'max-record-size',
    'pre-auth-timeout',
    'drives',
    'slots',
    'history-threads',
    'history-stall-timeout',
    'history-max-delay',
    'history-spool-max',
    'history-spool-min-free',
    'history-warn-spool',
    'history-warn-lag-share',
    'history-warn-lag-after',
    'shutdown-timeout',
  ] as const) {
    const v = o[camel(k)];
    if (typeof v === 'string') (flags as Record<string, unknown>)[k] = v;
  }
  if (Array.isArray(o.export)) flags.export = o.export;
  if (typeof o.restoreSpecial === 'boolean') flags['restore-special'] = o.restoreSpecial;
  if (Array.isArray(o.allow)) flags.allow = o.allow;
  const configFile = typeof o.config === 'string' ? o.config : null;
  // The cwd of the start: a reload resolves relative paths as the start did.
  const cwd = process.cwd();
  const readConfig = () => resolveConfig(configFile ? readConfigFile(configFile) : {}, flags, cwd);
  const cfg = readConfig();

  if (o.checkConfig) {
    process.stdout.write(configToToml(cfg));
    return;
  }

  // The port first: if it is taken, nothing has been created yet (docs/operations.md).
  let bound;
  try {
    bound = await bindControlPort(cfg.host, cfg.port);
  } catch (e) {
    throw new ListenError(`cannot listen on ${cfg.host}:${cfg.port}: ${(e as Error).message}`);
  }

  const log = createLogger({ level: cfg.logLevel, ...(cfg.logFormat ? { format: cfg.logFormat } : {}) });
  // The metrics exist only when asked for: without --metrics-listen nothing counts and no port opens.
  // Their port, like the DMAs', is taken before anything is created: in use, the start ends here.
  const metrics = cfg.metrics ? new ServerMetrics(log.child({ component: 'metrics' })) : null;
  if (metrics && cfg.metrics) await metrics.listen(cfg.metrics.host, cfg.metrics.port);
  // Before any thread starts: session threads come and go all day (services/memory.ts).
  const memory = returnMemory(log);
  prepareStateDir(cfg.stateDir);
  const credentials = loadCredentials(cfg, log);
  const info: ServerInfo = {
    vendorName: VENDOR_NAME,
    productName: PRODUCT_NAME,
    revisionNumber: VERSION,
    hostname: os.hostname(),
    osType: os.type(),
    osVers: os.release(),
    hostId: hostId(cfg.stateDir),
  };
  const { library, changer } = openLibrary(cfg, info.hostId, log);
  const history = new HistoryHub(
    { ...historyDefaults(join(cfg.stateDir, 'spool')), ...cfg.history },
    log.child({ component: 'history' }),
  );
  // What SIGHUP replaces; sessions read it at login and at their data thread's start (src/cli/reload.ts).
  const live = { credentials, exports: cfg.exports, allow: cfg.allow };
  const ctx: ServerContext = {
    observer: metrics,
    info,
    get credentials() {
      return live.credentials;
    },
    get exports() {
      return live.exports;
    },
    log,
    library,
    changer,
    dataPorts: cfg.dataPorts,
    dataAddress: cfg.dataAddress,
    history,
    stateDir: cfg.stateDir,
    restoreSpecial: cfg.restore.special,
    authBackoff:
      cfg.authBackoffMaxMs > 0
        ? new AuthBackoff({ ...DEFAULT_AUTH_BACKOFF, maxMs: cfg.authBackoffMaxMs })
        : null,
  };
  if (cfg.exports.length === 0)
    log.warn('no exports configured: nothing can be backed up (use --export NAME=PATH)');
  for (const e of cfg.exports) log.info({ export: e.name, path: e.path }, 'export');

  const server = new NdmpServer(ctx, {
    host: cfg.host,
    port: cfg.port,
    maxConnections: cfg.maxConnections,
    maxUnauthenticated: cfg.maxUnauthenticated,
    maxUnauthenticatedPerAddress: cfg.maxUnauthenticatedPerAddress,
    reservedConnections: cfg.reservedConnections,
    maxRecordSize: cfg.maxRecordSize,
    preAuthTimeoutMs: cfg.preAuthTimeoutMs,
    idleTimeoutMs: cfg.idleTimeoutMs,
    allow: cfg.allow,
    bound,
  });
  if (cfg.allow.length > 0) log.info({ allow: cfg.allow }, 'only these networks may connect');
  metrics?.attach({
    connections: () => ({ accepted: server.accepted, open: server.connectionCount }),
    sessions: sessionStatesOf(() => server.openSessions()),
    history,
  });
  try {
    await server.listen();
  } catch (e) {
    throw new ListenError(`cannot listen on ${cfg.host}:${cfg.port}: ${(e as Error).message}`);
  }

  // The operator's window on the sessions (docs/operations.md, "Sessions").
  const addr = server.address();
  const adminOps = new AdminOps(server, ctx, {
    version: VERSION,
    startedAt: Date.now(),
    listen: `${addr.address}:${addr.port}`,
    stateDir: cfg.stateDir,
  });
  const admin = new AdminSocket(join(cfg.stateDir, ADMIN_SOCKET_NAME), adminOps.handle, log);
  try {
    await admin.start();
  } catch (e) {
    // Backups do not need it: say what is missing and serve DMAs anyway.
    if (!(e instanceof AdminSocketError)) throw e;
    log.error(
      { err: e.message },
      'no admin socket: ndmpd status and ndmpd sessions will not reach this server',
    );
  }

  // SIGTERM/SIGINT: drain (src/server/drain.ts); a second one aborts at once; a third exits now.
  let drain: ShutdownDrain | null = null;
  let signals = 0;
  const reloader = new Reloader(cfg, live, readConfig, (cidrs) => server.setAllowList(cidrs), log);
  process.on('SIGHUP', () => {
    if (drain) log.warn('SIGHUP while shutting down: not reloaded');
    else reloader.reload();
  });
  const stop = (signal: string) => {
    signals++;
    if (drain) {
      if (signals === 2) {
        log.warn({ signal }, 'second signal: aborting running backups and restores now');
        drain.hurry();
      } else {
        log.error({ signal }, 'third signal: exiting at once');
        process.exit(1);
      }
      return;
    }
    log.info({ signal }, 'shutting down');
    drain = new ShutdownDrain(server, log, { timeoutMs: cfg.shutdownTimeoutMs });
    drain
      .run()
      .then(async (r) => {
        // The history threads end promptly once no session feeds them; bounded all the same.
        setTimeout(() => process.exit(1), 10_000).unref();
        // The admin socket stays up while the sessions drain: an operator can watch them go.
        adminOps.stop();
        await admin.stop();
        await metrics?.close();
        await history.shutdown();
        return r.closed;
      })
      .finally(() => memory.stop())
      .then(
        (closed) => {
          log.info('stopped');
          process.exit(closed ? 0 : 1);
        },
        (e: unknown) => {
          log.error({ err: e }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/**
 * Opens (on first start, creates) the tape library, takes its lock for the
 * server's lifetime (docs/changer.md §2: the server's changer is the
 * one owner of moves), takes inventory, and says what is where.
 */
function openLibrary(
  cfg: ServerConfig,
  seed: string,
  log: Logger,
): { library: Library; changer: LibraryChanger } {
  const fresh = !existsSync(cfg.library);
  const library = Library.open(cfg.library, {
    drives: cfg.drives,
    slots: cfg.slots,
    capacity: BigInt(cfg.tapeCapacity),
    serialSeed: seed,
  });
  try {
    // Held until the process exits: the kernel drops it then, even after a crash.
    lockLibrary(library.dir, 'ndmpd server');
  } catch (e) {
    if (e instanceof LibraryLockedError) {
      throw new LibraryError(
        `${e.message}: one server per library (stop it, or give this one --library DIR)`,
      );
    }
    throw e;
  }
  if (fresh) {
    // A new library comes with media, as a VTL does: a scratch tape in each
    // drive and as many spare (sparse files: they cost nothing until written).
    const barcodes = library.createTapes({ count: cfg.drives * 2 });
    library.drives().forEach((d, i) => library.load(barcodes[i]!, d.name));
    log.info(
      { library: library.dir, drives: cfg.drives, tapeCapacity: cfg.tapeCapacity, tapes: barcodes },
      `created the tape library ${library.dir} with ${barcodes.length} tapes, one loaded in each drive`,
    );
  } else {
    log.info(
      { library: library.dir, drives: cfg.drives, tapeCapacity: cfg.tapeCapacity },
      `tape library ${library.dir}`,
    );
  }
  // Tapes made while no slot was free, or by `ndmpd tape create` while a server ran.
  const placed = library.placeOutsiders();
  if (placed.length > 0) log.info({ tapes: placed }, `placed ${placed.length} tapes into free slots`);
  const changer = new LibraryChanger(library);
  for (const d of library.drives()) {
    const tape = library.loaded(d.name);
    log.info(
      { drive: d.name, serial: d.serial, tape },
      tape ? `${d.name}: tape ${tape} loaded` : `${d.name}: empty`,
    );
  }
  const contents = library.contents();
  const slotted = contents.filter((c) => c.place.kind === 'slot').length;
  const outside = library
    .listTapes()
    .filter((t) => t.place === null)
    .map((t) => t.barcode);
  log.info(
    { changer: CHANGER_DEVICE, serial: changer.identity.serial, slots: cfg.slots, full: slotted, outside },
    `changer ${CHANGER_DEVICE}: ${cfg.slots} slots (${slotted} full), ${library.mailslotCount} mail slot` +
      (outside.length > 0 ? `; ${outside.length} tapes in no slot (all full)` : ''),
  );
  const { low, high } = cfg.dataPorts;
  log.info(
    { dataPorts: cfg.dataPorts },
    low ? `data connections on ports ${low}-${high}` : 'data connections on any port',
  );
  return { library, changer };
}

class ListenError extends CodedError {
  readonly code = 'NDMPD_LISTEN';
}

function camel(k: string): string {
  return k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

main(process.argv).catch((e: unknown) => {
  if (e instanceof CommandError) {
    process.stderr.write(`ndmpd: ${e.message}\n`);
    process.exit(e.exitCode);
  }
  if (e instanceof ConfigError || e instanceof AuthFileError || e instanceof LibraryError) {
    process.stderr.write(`ndmpd: ${e.message}\n`);
    process.exit(2);
  }
  const err = e as NodeJS.ErrnoException;
  // A port in use, a state dir we may not create: one line in the system's own words.
  if (e instanceof ListenError || e instanceof MetricsListenError || (err.code && err.syscall)) {
    process.stderr.write(`ndmpd: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`ndmpd: ${err.stack ?? String(e)}\n`);
  process.exit(1);
});
