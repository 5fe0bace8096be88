// NDMP constants, named as the protocol names them (docs/protocol.md §4, draft-skardal-ndmpv4-04).
// Enumerations are plain `as const` objects: the numbers are the wire values,
// and `nameOf` turns a number back into its protocol name for logs and errors.

export const NdmpVersion = { V3: 3, V4: 4 } as const;
export type NdmpVersion = (typeof NdmpVersion)[keyof typeof NdmpVersion];
export const SUPPORTED_VERSIONS: readonly NdmpVersion[] = [4, 3];
export const HIGHEST_VERSION: NdmpVersion = 4;

export const ErrorCode = {
  NDMP_NO_ERR: 0,
  NDMP_NOT_SUPPORTED_ERR: 1,
  NDMP_DEVICE_BUSY_ERR: 2,
  NDMP_DEVICE_OPENED_ERR: 3,
  NDMP_NOT_AUTHORIZED_ERR: 4,
  NDMP_PERMISSION_ERR: 5,
  NDMP_DEV_NOT_OPEN_ERR: 6,
  NDMP_IO_ERR: 7,
  NDMP_TIMEOUT_ERR: 8,
  NDMP_ILLEGAL_ARGS_ERR: 9,
  NDMP_NO_TAPE_LOADED_ERR: 10,
  NDMP_WRITE_PROTECT_ERR: 11,
  NDMP_EOF_ERR: 12,
  NDMP_EOM_ERR: 13,
  NDMP_FILE_NOT_FOUND_ERR: 14,
  NDMP_BAD_FILE_ERR: 15,
  NDMP_NO_DEVICE_ERR: 16,
  NDMP_NO_BUS_ERR: 17,
  NDMP_XDR_DECODE_ERR: 18,
  NDMP_ILLEGAL_STATE_ERR: 19,
  NDMP_UNDEFINED_ERR: 20,
  NDMP_XDR_ENCODE_ERR: 21,
  NDMP_NO_MEM_ERR: 22,
  NDMP_CONNECT_ERR: 23,
  // v4 only from here on: a v3 peer must never see them (structures.ts maps them down).
  NDMP_SEQUENCE_NUM_ERR: 24,
  NDMP_READ_IN_PROGRESS_ERR: 25,
  NDMP_PRECONDITION_ERR: 26,
  NDMP_CLASS_NOT_SUPPORTED_ERR: 27,
  NDMP_VERSION_NOT_SUPPORTED_ERR: 28,
  NDMP_EXT_DUPL_CLASSES_ERR: 29,
  NDMP_EXT_DANDN_ILLEGAL_ERR: 30,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const MessageType = { NDMP_MESSAGE_REQUEST: 0, NDMP_MESSAGE_REPLY: 1 } as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export const AuthType = { NDMP_AUTH_NONE: 0, NDMP_AUTH_TEXT: 1, NDMP_AUTH_MD5: 2 } as const;
export type AuthType = (typeof AuthType)[keyof typeof AuthType];

export const AddrType = {
  NDMP_ADDR_LOCAL: 0,
  NDMP_ADDR_TCP: 1,
  /** v3: Fibre Channel; v4: reserved. */
  NDMP_ADDR_FC: 2,
  NDMP_ADDR_IPC: 3,
} as const;
export type AddrType = (typeof AddrType)[keyof typeof AddrType];

export const ConnectionStatusReason = { NDMP_CONNECTED: 0, NDMP_SHUTDOWN: 1, NDMP_REFUSED: 2 } as const;

export const TapeOpenMode = {
  NDMP_TAPE_READ_MODE: 0,
  NDMP_TAPE_RDWR_MODE: 1,
  NDMP_TAPE_RAW_MODE: 2,
} as const;

export const TapeMtioOp = {
  NDMP_MTIO_FSF: 0,
  NDMP_MTIO_BSF: 1,
  NDMP_MTIO_FSR: 2,
  NDMP_MTIO_BSR: 3,
  NDMP_MTIO_REW: 4,
  NDMP_MTIO_EOF: 5,
  NDMP_MTIO_OFF: 6,
  NDMP_MTIO_TUR: 7,
} as const;

export const DataOperation = {
  NDMP_DATA_OP_NOACTION: 0,
  NDMP_DATA_OP_BACKUP: 1,
  NDMP_DATA_OP_RECOVER: 2,
  NDMP_DATA_OP_RECOVER_FILEHIST: 3,
} as const;

export const DataState = {
  NDMP_DATA_STATE_IDLE: 0,
  NDMP_DATA_STATE_ACTIVE: 1,
  NDMP_DATA_STATE_HALTED: 2,
  NDMP_DATA_STATE_LISTEN: 3,
  NDMP_DATA_STATE_CONNECTED: 4,
} as const;

export const DataHaltReason = {
  NDMP_DATA_HALT_NA: 0,
  NDMP_DATA_HALT_SUCCESSFUL: 1,
  NDMP_DATA_HALT_ABORTED: 2,
  NDMP_DATA_HALT_INTERNAL_ERROR: 3,
  NDMP_DATA_HALT_CONNECT_ERROR: 4,
} as const;

export const MoverState = {
  NDMP_MOVER_STATE_IDLE: 0,
  NDMP_MOVER_STATE_LISTEN: 1,
  NDMP_MOVER_STATE_ACTIVE: 2,
  NDMP_MOVER_STATE_PAUSED: 3,
  NDMP_MOVER_STATE_HALTED: 4,
} as const;

export const MoverMode = {
  NDMP_MOVER_MODE_READ: 0,
  NDMP_MOVER_MODE_WRITE: 1,
  NDMP_MOVER_MODE_NOACTION: 2,
} as const;

export const MoverPauseReason = {
  NDMP_MOVER_PAUSE_NA: 0,
  NDMP_MOVER_PAUSE_EOM: 1,
  NDMP_MOVER_PAUSE_EOF: 2,
  NDMP_MOVER_PAUSE_SEEK: 3,
  /** v3 only (v4 halts with MEDIA_ERROR instead); decoders accept it in v4 too. */
  NDMP_MOVER_PAUSE_MEDIA_ERROR: 4,
  NDMP_MOVER_PAUSE_EOW: 5,
} as const;

export const MoverHaltReason = {
  NDMP_MOVER_HALT_NA: 0,
  NDMP_MOVER_HALT_CONNECT_CLOSED: 1,
  NDMP_MOVER_HALT_ABORTED: 2,
  NDMP_MOVER_HALT_INTERNAL_ERROR: 3,
  NDMP_MOVER_HALT_CONNECT_ERROR: 4,
  /** v4 only. */
  NDMP_MOVER_HALT_MEDIA_ERROR: 5,
} as const;

export const LogType = {
  NDMP_LOG_NORMAL: 0,
  NDMP_LOG_DEBUG: 1,
  NDMP_LOG_ERROR: 2,
  NDMP_LOG_WARNING: 3,
} as const;

export const RecoveryStatus = {
  NDMP_RECOVERY_SUCCESSFUL: 0,
  NDMP_RECOVERY_FAILED_PERMISSION: 1,
  NDMP_RECOVERY_FAILED_NOT_FOUND: 2,
  NDMP_RECOVERY_FAILED_NO_DIRECTORY: 3,
  NDMP_RECOVERY_FAILED_OUT_OF_MEMORY: 4,
  NDMP_RECOVERY_FAILED_IO_ERROR: 5,
  NDMP_RECOVERY_FAILED_UNDEFINED_ERROR: 6,
  NDMP_RECOVERY_FAILED_FILE_PATH_EXISTS: 7,
} as const;

export const FsType = { NDMP_FS_UNIX: 0, NDMP_FS_NT: 1, NDMP_FS_OTHER: 2 } as const;

export const FileType = {
  NDMP_FILE_DIR: 0,
  NDMP_FILE_FIFO: 1,
  NDMP_FILE_CSPEC: 2,
  NDMP_FILE_BSPEC: 3,
  NDMP_FILE_REG: 4,
  NDMP_FILE_SLINK: 5,
  NDMP_FILE_SOCK: 6,
  NDMP_FILE_REGISTRY: 7,
  NDMP_FILE_OTHER: 8,
} as const;

/** CONFIG_GET_BUTYPE_INFO attribute bits as v4 defines them (v3 differs: structures.ts translates). */
export const ButypeAttr = {
  NDMP_BUTYPE_BACKUP_FILELIST: 0x2,
  NDMP_BUTYPE_RECOVER_FILELIST: 0x4,
  NDMP_BUTYPE_BACKUP_DIRECT: 0x8,
  NDMP_BUTYPE_RECOVER_DIRECT: 0x10,
  NDMP_BUTYPE_BACKUP_INCREMENTAL: 0x20,
  NDMP_BUTYPE_RECOVER_INCREMENTAL: 0x40,
  NDMP_BUTYPE_BACKUP_UTF8: 0x80,
  NDMP_BUTYPE_RECOVER_UTF8: 0x100,
  NDMP_BUTYPE_BACKUP_FH_FILE: 0x200,
  NDMP_BUTYPE_BACKUP_FH_DIR: 0x400,
  NDMP_BUTYPE_RECOVER_FILEHIST: 0x800,
  NDMP_BUTYPE_RECOVER_FH_FILE: 0x1000,
  NDMP_BUTYPE_RECOVER_FH_DIR: 0x2000,
} as const;

export const FsInfoUnsupported = {
  TOTAL_SIZE: 0x1,
  USED_SIZE: 0x2,
  AVAIL_SIZE: 0x4,
  TOTAL_INODES: 0x8,
  USED_INODES: 0x10,
} as const;

export const FileStatUnsupported = { ATIME: 0x1, CTIME: 0x2, GROUP: 0x4 } as const;

export const TapeStateFlags = { NOREWIND: 0x8, WR_PROT: 0x10, ERROR: 0x20, UNLOAD: 0x40 } as const;

export const TapeStateUnsupported = {
  FILE_NUM: 0x1,
  SOFT_ERRORS: 0x2,
  BLOCK_SIZE: 0x4,
  BLOCKNO: 0x8,
  TOTAL_SPACE: 0x10,
  SPACE_REMAIN: 0x20,
  /** v3 only. */
  PARTITION: 0x40,
} as const;

export const DataStateUnsupported = { EST_BYTES_REMAIN: 0x1, EST_TIME_REMAIN: 0x2 } as const;

/** All-ones: "unknown / not supported" for any u_long or u_quad field (docs/protocol.md §1.3). */
export const INVALID_U32 = 0xffffffff;
export const INVALID_U64 = 0xffffffffffffffffn;

/** Reverse lookup for logs: the protocol name of a value in one of the tables above. */
export function nameOf(table: Readonly<Record<string, number>>, value: number): string {
  for (const [k, v] of Object.entries(table)) if (v === value) return k;
  return `${value}`;
}

export function errorName(code: number): string {
  return nameOf(ErrorCode, code);
}
