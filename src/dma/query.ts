// What `ndmp query` asks a server: the same as ndmjob's `-q` (host, server,
// connection types, backup types, file systems, tapes, SCSI devices). A part
// the server refuses is reported as that part's error; the rest still shows.

import { M, NdmpError, errorName } from '../wire/index.js';
import type { DeviceInfo, FsInfo, NdmpVersion, Pval } from '../wire/index.js';
import type { NdmpClient } from './client.js';

export interface QueryResult {
  version: NdmpVersion;
  host?: { hostname: string; osType: string; osVers: string; hostid: string };
  server?: { vendorName: string; productName: string; revisionNumber: string; authTypes: number[] };
  connectionTypes?: number[];
  butypes?: Array<{ butypeName: string; defaultEnv: Pval[]; attrs: number }>;
  fileSystems?: FsInfo[];
  tapes?: DeviceInfo[];
  scsi?: DeviceInfo[];
  /** Parts the server answered with an error: part name -> NDMP error name. */
  errors: Record<string, string>;
}

async function part<T>(
  errors: Record<string, string>,
  name: string,
  f: () => Promise<T>,
): Promise<T | undefined> {
  try {
    return await f();
  } catch (e) {
    if (!(e instanceof NdmpError)) throw e;
    errors[name] = errorName(e.ndmpError);
    return undefined;
  }
}

export async function query(client: NdmpClient): Promise<QueryResult> {
  const errors: Record<string, string> = {};
  const r: QueryResult = { version: client.version, errors };
  const host = await part(errors, 'host', () => client.call(M.CONFIG_GET_HOST_INFO, {}));
  if (host)
    r.host = { hostname: host.hostname, osType: host.osType, osVers: host.osVers, hostid: host.hostid };
  const server = await part(errors, 'server', () => client.call(M.CONFIG_GET_SERVER_INFO, {}));
  if (server) {
    r.server = {
      vendorName: server.vendorName,
      productName: server.productName,
      revisionNumber: server.revisionNumber,
      authTypes: server.authTypes,
    };
  }
  const conn = await part(errors, 'connectionTypes', () => client.call(M.CONFIG_GET_CONNECTION_TYPE, {}));
  if (conn) r.connectionTypes = conn.addrTypes;
  const bu = await part(errors, 'butypes', () => client.call(M.CONFIG_GET_BUTYPE_INFO, {}));
  if (bu) r.butypes = bu.butypeInfo;
  const fs = await part(errors, 'fileSystems', () => client.call(M.CONFIG_GET_FS_INFO, {}));
  if (fs) r.fileSystems = fs.fsInfo;
  const tape = await part(errors, 'tapes', () => client.call(M.CONFIG_GET_TAPE_INFO, {}));
  if (tape) r.tapes = tape.tapeInfo;
  const scsi = await part(errors, 'scsi', () => client.call(M.CONFIG_GET_SCSI_INFO, {}));
  if (scsi) r.scsi = scsi.scsiInfo;
  return r;
}
