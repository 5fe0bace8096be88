// Every NDMP v4 message, and the v3 ones, declared once: code, protocol name,
// who sends it, which versions have it, the request (or post) body and the
// reply body. Bodies are functions of the version's vocabulary (structures.ts),
// so the handful of v3 deltas are stated next to the message they touch and
// everything above the wire sees the canonical v4 model.
//
// Written from the protocol's facts (docs/protocol.md §2.3, §3), field names in
// camelCase of the spec's.

import type { NdmpVersion } from './constants.js';
import { MoverMode } from './constants.js';
import type { Codec, Infer } from './schema.js';
import { array, empty, i32, mapped, opaque, string, struct, u32, u64 } from './schema.js';
import type { Vocabulary } from './structures.js';
import {
  authAttr,
  authData,
  classList,
  classVersion,
  deviceInfo,
  dir,
  executeCdbRequest,
  file,
  fsInfo,
  nlistName,
  node,
  pval,
} from './structures.js';

export type Interface = 'CONNECT' | 'CONFIG' | 'SCSI' | 'TAPE' | 'DATA' | 'NOTIFY' | 'LOG' | 'FH' | 'MOVER';

/**
 * - `request`: DMA to server, answered by exactly one reply.
 * - `request-no-reply`: DMA to server, never answered (CONNECT_CLOSE only).
 * - `post`: server to DMA (NOTIFY_*, LOG_*, FH_*), never answered.
 */
export type MessageKind = 'request' | 'request-no-reply' | 'post';

export interface MessageDef<Req = unknown, Rep = unknown> {
  readonly code: number;
  /** The protocol's name, e.g. `NDMP_CONFIG_GET_HOST_INFO`. */
  readonly name: string;
  readonly iface: Interface;
  readonly kind: MessageKind;
  readonly versions: readonly NdmpVersion[];
  readonly request: (v: Vocabulary) => Codec<Req>;
  readonly reply: ((v: Vocabulary) => Codec<Rep>) | null;
}

export type RequestOf<D> = D extends MessageDef<infer Req, unknown> ? Req : never;
export type ReplyOf<D> = D extends MessageDef<unknown, infer Rep> ? Rep : never;

const BOTH: readonly NdmpVersion[] = [3, 4];
const V4_ONLY: readonly NdmpVersion[] = [4];
const V3_ONLY: readonly NdmpVersion[] = [3];

function iface(code: number): Interface {
  switch (code >> 8) {
    case 0x1:
      return 'CONFIG';
    case 0x2:
      return 'SCSI';
    case 0x3:
      return 'TAPE';
    case 0x4:
      return 'DATA';
    case 0x5:
      return 'NOTIFY';
    case 0x6:
      return 'LOG';
    case 0x7:
      return 'FH';
    case 0x9:
      return 'CONNECT';
    case 0xa:
      return 'MOVER';
    default:
      throw new Error(`no interface for code 0x${code.toString(16)}`);
  }
}

function request<Req, Rep>(
  code: number,
  name: string,
  req: (v: Vocabulary) => Codec<Req>,
  rep: (v: Vocabulary) => Codec<Rep>,
  versions = BOTH,
): MessageDef<Req, Rep> {
  return { code, name, iface: iface(code), kind: 'request', versions, request: req, reply: rep };
}

function post<Body>(
  code: number,
  name: string,
  body: (v: Vocabulary) => Codec<Body>,
): MessageDef<Body, never> {
  return { code, name, iface: iface(code), kind: 'post', versions: BOTH, request: body, reply: null };
}

/** Picks the v4 or the v3 shape of a body that differs between versions. */
function byVersion<T>(v: Vocabulary, v4: Codec<T>, v3: () => Codec<T>): Codec<T> {
  return v.version === 4 ? v4 : v3();
}

const none = () => empty;
const errorOnly = (v: Vocabulary) => struct({ error: v.error });

// ---- reply and post shapes used by more than one message --------------------

// TAPE_GET_STATE: `unsupported` comes before `error`, the one place besides
// DATA_GET_STATE where the error is not the first field of a reply.
function tapeStateFields(v: Vocabulary) {
  return {
    unsupported: u32,
    error: v.error,
    flags: u32,
    fileNum: u32,
    softErrors: u32,
    blockSize: u32,
    blockno: u32,
    totalSpace: u64,
    spaceRemain: u64,
  };
}

function moverStateFields(v: Vocabulary) {
  return {
    error: v.error,
    mode: u32,
    state: u32,
    pauseReason: u32,
    haltReason: u32,
    recordSize: u32,
    recordNum: u32,
    bytesMoved: u64,
    seekPosition: u64,
    bytesLeftToRead: u64,
    windowOffset: u64,
    windowLength: u64,
    dataConnectionAddr: v.addr,
  };
}

function withoutMode<F extends { mode: unknown }>(fields: F): Omit<F, 'mode'> {
  const { mode: _m, ...rest } = fields;
  return rest;
}

const tapeStateV4 = (v: Vocabulary) => struct(tapeStateFields(v));
export type TapeGetStateReply = Infer<ReturnType<typeof tapeStateV4>>;
const moverStateV4 = (v: Vocabulary) => struct(moverStateFields(v));
export type MoverGetStateReply = Infer<ReturnType<typeof moverStateV4>>;

/** NOTIFY_DATA_HALTED / NOTIFY_MOVER_HALTED: v3 adds a text reason, kept when present. */
export interface HaltedPost {
  reason: number;
  textReason?: string;
}
const halted = (v: Vocabulary): Codec<HaltedPost> =>
  byVersion<HaltedPost>(v, struct({ reason: u32 }), () =>
    mapped(
      struct({ reason: u32, textReason: string }),
      (w) => w,
      (c) => ({ reason: c.reason, textReason: c.textReason ?? '' }),
    ),
  );

const logMessageV4 = struct({
  logType: u32,
  messageId: u32,
  entry: string,
  associatedMessageValid: u32,
  associatedMessageSequence: u32,
});
export type LogMessagePost = Infer<typeof logMessageV4>;

const recoverRequest = (_v: Vocabulary) =>
  struct({ env: array(pval), nlist: array(nlistName), butypeName: string });

const executeCdbReply = (v: Vocabulary) =>
  struct({ error: v.error, status: u32, dataoutLen: u32, datain: opaque, extSense: opaque });

// ---- the table ---------------------------------------------------------------

export const M = {
  // CONNECT
  CONNECT_OPEN: request(0x900, 'NDMP_CONNECT_OPEN', () => struct({ protocolVersion: u32 }), errorOnly),
  CONNECT_CLIENT_AUTH: request(0x901, 'NDMP_CONNECT_CLIENT_AUTH', () => struct({ authData }), errorOnly),
  CONNECT_CLOSE: {
    code: 0x902,
    name: 'NDMP_CONNECT_CLOSE',
    iface: 'CONNECT',
    kind: 'request-no-reply',
    versions: BOTH,
    request: none,
    reply: null,
  } as MessageDef<Record<string, never>, never>,
  CONNECT_SERVER_AUTH: request(
    0x903,
    'NDMP_CONNECT_SERVER_AUTH',
    () => struct({ clientAttr: authAttr }),
    (v) => struct({ error: v.error, serverResult: authData }),
  ),

  // CONFIG
  CONFIG_GET_HOST_INFO: request(0x100, 'NDMP_CONFIG_GET_HOST_INFO', none, (v) =>
    struct({ error: v.error, hostname: string, osType: string, osVers: string, hostid: string }),
  ),
  CONFIG_GET_CONNECTION_TYPE: request(0x102, 'NDMP_CONFIG_GET_CONNECTION_TYPE', none, (v) =>
    struct({ error: v.error, addrTypes: array(u32) }),
  ),
  CONFIG_GET_AUTH_ATTR: request(
    0x103,
    'NDMP_CONFIG_GET_AUTH_ATTR',
    () => struct({ authType: u32 }),
    (v) => struct({ error: v.error, serverAttr: authAttr }),
  ),
  CONFIG_GET_BUTYPE_INFO: request(0x104, 'NDMP_CONFIG_GET_BUTYPE_INFO', none, (v) =>
    struct({
      error: v.error,
      butypeInfo: array(struct({ butypeName: string, defaultEnv: array(pval), attrs: v.butypeAttrs })),
    }),
  ),
  CONFIG_GET_FS_INFO: request(0x105, 'NDMP_CONFIG_GET_FS_INFO', none, (v) =>
    struct({ error: v.error, fsInfo: array(fsInfo) }),
  ),
  CONFIG_GET_TAPE_INFO: request(0x106, 'NDMP_CONFIG_GET_TAPE_INFO', none, (v) =>
    struct({ error: v.error, tapeInfo: array(deviceInfo) }),
  ),
  CONFIG_GET_SCSI_INFO: request(0x107, 'NDMP_CONFIG_GET_SCSI_INFO', none, (v) =>
    struct({ error: v.error, scsiInfo: array(deviceInfo) }),
  ),
  CONFIG_GET_SERVER_INFO: request(0x108, 'NDMP_CONFIG_GET_SERVER_INFO', none, (v) =>
    struct({
      error: v.error,
      vendorName: string,
      productName: string,
      revisionNumber: string,
      authTypes: array(u32),
    }),
  ),
  CONFIG_SET_EXT_LIST: request(
    0x109,
    'NDMP_CONFIG_SET_EXT_LIST',
    () => struct({ ndmpSelectedExt: array(classVersion) }),
    errorOnly,
    V4_ONLY,
  ),
  CONFIG_GET_EXT_LIST: request(
    0x10a,
    'NDMP_CONFIG_GET_EXT_LIST',
    none,
    (v) => struct({ error: v.error, classList: array(classList) }),
    V4_ONLY,
  ),

  // SCSI
  SCSI_OPEN: request(0x200, 'NDMP_SCSI_OPEN', () => struct({ device: string }), errorOnly),
  SCSI_CLOSE: request(0x201, 'NDMP_SCSI_CLOSE', none, errorOnly),
  SCSI_GET_STATE: request(0x202, 'NDMP_SCSI_GET_STATE', none, (v) =>
    struct({ error: v.error, targetController: i32, targetId: i32, targetLun: i32 }),
  ),
  SCSI_SET_TARGET: request(
    0x203,
    'NDMP_SCSI_SET_TARGET',
    () => struct({ device: string, targetController: u32, targetId: u32, targetLun: u32 }),
    errorOnly,
    V3_ONLY,
  ),
  SCSI_RESET_DEVICE: request(0x204, 'NDMP_SCSI_RESET_DEVICE', none, errorOnly),
  SCSI_RESET_BUS: request(0x205, 'NDMP_SCSI_RESET_BUS', none, errorOnly, V3_ONLY),
  SCSI_EXECUTE_CDB: request(0x206, 'NDMP_SCSI_EXECUTE_CDB', () => executeCdbRequest, executeCdbReply),

  // TAPE
  TAPE_OPEN: request(0x300, 'NDMP_TAPE_OPEN', () => struct({ device: string, mode: u32 }), errorOnly),
  TAPE_CLOSE: request(0x301, 'NDMP_TAPE_CLOSE', none, errorOnly),
  TAPE_GET_STATE: request(0x302, 'NDMP_TAPE_GET_STATE', none, (v) =>
    byVersion(v, tapeStateV4(v), () =>
      // v3 adds `partition` at the end; the virtual library has one partition.
      mapped(
        struct({ ...tapeStateFields(v), partition: u32 }),
        ({ partition: _p, ...rest }) => rest,
        (c) => ({ ...c, partition: 0 }),
      ),
    ),
  ),
  TAPE_MTIO: request(
    0x303,
    'NDMP_TAPE_MTIO',
    () => struct({ tapeOp: u32, count: u32 }),
    (v) => struct({ error: v.error, residCount: u32 }),
  ),
  TAPE_WRITE: request(
    0x304,
    'NDMP_TAPE_WRITE',
    () => struct({ dataOut: opaque }),
    (v) => struct({ error: v.error, count: u32 }),
  ),
  TAPE_READ: request(
    0x305,
    'NDMP_TAPE_READ',
    () => struct({ count: u32 }),
    (v) => struct({ error: v.error, dataIn: opaque }),
  ),
  TAPE_EXECUTE_CDB: request(0x307, 'NDMP_TAPE_EXECUTE_CDB', () => executeCdbRequest, executeCdbReply),

  // DATA
  DATA_GET_STATE: request(0x400, 'NDMP_DATA_GET_STATE', none, (v) =>
    struct({
      unsupported: u32, // before `error`, as in TAPE_GET_STATE
      error: v.error,
      operation: u32,
      state: u32,
      haltReason: u32,
      bytesProcessed: u64,
      estBytesRemain: u64,
      estTimeRemain: u32,
      dataConnectionAddr: v.addr,
      readOffset: u64,
      readLength: u64,
    }),
  ),
  DATA_START_BACKUP: request(
    0x401,
    'NDMP_DATA_START_BACKUP',
    () => struct({ butypeName: string, env: array(pval) }),
    errorOnly,
  ),
  DATA_START_RECOVER: request(0x402, 'NDMP_DATA_START_RECOVER', recoverRequest, errorOnly),
  DATA_ABORT: request(0x403, 'NDMP_DATA_ABORT', none, errorOnly),
  DATA_GET_ENV: request(0x404, 'NDMP_DATA_GET_ENV', none, (v) =>
    struct({ error: v.error, env: array(pval) }),
  ),
  DATA_STOP: request(0x407, 'NDMP_DATA_STOP', none, errorOnly),
  DATA_LISTEN: request(
    0x409,
    'NDMP_DATA_LISTEN',
    () => struct({ addrType: u32 }),
    (v) => struct({ error: v.error, connectAddr: v.addr }),
  ),
  DATA_CONNECT: request(0x40a, 'NDMP_DATA_CONNECT', (v) => struct({ addr: v.addr }), errorOnly),
  DATA_START_RECOVER_FILEHIST: request(0x40b, 'NDMP_DATA_START_RECOVER_FILEHIST', recoverRequest, errorOnly),

  // NOTIFY (posts)
  NOTIFY_DATA_HALTED: post(0x501, 'NDMP_NOTIFY_DATA_HALTED', halted),
  NOTIFY_CONNECTION_STATUS: post(0x502, 'NDMP_NOTIFY_CONNECTION_STATUS', () =>
    struct({ reason: u32, protocolVersion: u32, textReason: string }),
  ),
  NOTIFY_MOVER_HALTED: post(0x503, 'NDMP_NOTIFY_MOVER_HALTED', halted),
  NOTIFY_MOVER_PAUSED: post(0x504, 'NDMP_NOTIFY_MOVER_PAUSED', () =>
    struct({ reason: u32, seekPosition: u64 }),
  ),
  NOTIFY_DATA_READ: post(0x505, 'NDMP_NOTIFY_DATA_READ', () => struct({ offset: u64, length: u64 })),

  // LOG (posts)
  LOG_FILE: post(0x602, 'NDMP_LOG_FILE', (v) => struct({ name: string, recoveryStatus: v.recoveryStatus })),
  LOG_MESSAGE: post(0x603, 'NDMP_LOG_MESSAGE', (v) =>
    byVersion<LogMessagePost>(v, logMessageV4, () =>
      // v3 has no association fields: they read as "none".
      mapped(
        struct({ logType: u32, messageId: u32, entry: string }),
        (w) => ({ ...w, associatedMessageValid: 0, associatedMessageSequence: 0 }),
        ({ logType, messageId, entry }) => ({ logType, messageId, entry }),
      ),
    ),
  ),

  // FH (posts)
  FH_ADD_FILE: post(0x703, 'NDMP_FH_ADD_FILE', () => struct({ files: array(file) })),
  FH_ADD_DIR: post(0x704, 'NDMP_FH_ADD_DIR', () => struct({ dirs: array(dir) })),
  FH_ADD_NODE: post(0x705, 'NDMP_FH_ADD_NODE', () => struct({ nodes: array(node) })),

  // MOVER
  MOVER_GET_STATE: request(0xa00, 'NDMP_MOVER_GET_STATE', none, (v) =>
    byVersion(v, moverStateV4(v), () =>
      // v3 has no `mode` (and calls bytes_moved data_written): mode reads as NOACTION.
      mapped(
        struct(withoutMode(moverStateFields(v))),
        (w) => ({ ...w, mode: MoverMode.NDMP_MOVER_MODE_NOACTION }),
        ({ mode: _m, ...rest }) => rest,
      ),
    ),
  ),
  MOVER_LISTEN: request(
    0xa01,
    'NDMP_MOVER_LISTEN',
    () => struct({ mode: u32, addrType: u32 }),
    (v) => struct({ error: v.error, connectAddr: v.addr }),
  ),
  MOVER_CONTINUE: request(0xa02, 'NDMP_MOVER_CONTINUE', none, errorOnly),
  MOVER_ABORT: request(0xa03, 'NDMP_MOVER_ABORT', none, errorOnly),
  MOVER_STOP: request(0xa04, 'NDMP_MOVER_STOP', none, errorOnly),
  MOVER_SET_WINDOW: request(
    0xa05,
    'NDMP_MOVER_SET_WINDOW',
    () => struct({ offset: u64, length: u64 }),
    errorOnly,
  ),
  MOVER_READ: request(0xa06, 'NDMP_MOVER_READ', () => struct({ offset: u64, length: u64 }), errorOnly),
  MOVER_CLOSE: request(0xa07, 'NDMP_MOVER_CLOSE', none, errorOnly),
  MOVER_SET_RECORD_SIZE: request(0xa08, 'NDMP_MOVER_SET_RECORD_SIZE', () => struct({ len: u32 }), errorOnly),
  MOVER_CONNECT: request(0xa09, 'NDMP_MOVER_CONNECT', (v) => struct({ mode: u32, addr: v.addr }), errorOnly),
} as const;

export type MessageName = keyof typeof M;
export const ALL_MESSAGES: readonly MessageDef[] = Object.values(M) as readonly MessageDef[];
