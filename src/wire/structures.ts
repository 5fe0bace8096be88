// NDMP's shared structures (docs/protocol.md §3.1) as codecs, once per protocol
// version. Where v3 and v4 differ on the wire (the TCP address, the error codes
// a peer may see, the butype attribute bits) the v3 codec translates to and from
// the canonical v4 model, so no code above the wire layer ever branches on it.

import { ButypeAttr, ErrorCode, RecoveryStatus } from './constants.js';
import type { NdmpVersion } from './constants.js';
import type { Codec, Infer } from './schema.js';
import { array, empty, fixedOpaque, mapped, opaque, string, struct, u32, u64, union } from './schema.js';

export const pval = struct({ name: string, value: string });
export type Pval = Infer<typeof pval>;

export type AuthData =
  | { authType: 0 }
  | { authType: 1; authId: string; authPassword: string }
  | { authType: 2; authId: string; authDigest: Buffer };
export const authData: Codec<AuthData> = union<AuthData>(
  'authType',
  {
    0: empty,
    1: struct({ authId: string, authPassword: string }),
    2: struct({ authId: string, authDigest: fixedOpaque(16) }),
  },
  () => ({ authType: 0 }),
);

export type AuthAttr = { authType: 0 } | { authType: 1 } | { authType: 2; challenge: Buffer };
export const authAttr: Codec<AuthAttr> = union<AuthAttr>(
  'authType',
  { 0: empty, 1: empty, 2: struct({ challenge: fixedOpaque(64) }) },
  () => ({ authType: 0 }),
);

export const tcpAddr = struct({ ipAddr: u32, port: u32, addrEnv: array(pval) });
export type TcpAddr = Infer<typeof tcpAddr>;

/** Canonical address: v4's `ndmp4_addr`, plus v3's Fibre Channel arm. */
export type Addr =
  | { addrType: 0 }
  | { addrType: 1; tcpAddrs: TcpAddr[] }
  | { addrType: 2; loopId?: number }
  | { addrType: 3; commData: Buffer };

const addrV4: Codec<Addr> = union<Addr>(
  'addrType',
  {
    0: empty,
    1: struct({ tcpAddrs: array(tcpAddr) }),
    // Reserved in v4 (was FC in v3): tolerated as an empty arm.
    2: empty,
    3: struct({ commData: opaque }),
  },
  () => ({ addrType: 0 }),
);

type AddrV3Wire =
  | { addrType: 0 }
  | { addrType: 1; ipAddr: number; port: number }
  | { addrType: 2; loopId: number }
  | { addrType: 3; commData: Buffer };
const addrV3Wire: Codec<AddrV3Wire> = union<AddrV3Wire>(
  'addrType',
  {
    0: empty,
    1: struct({ ipAddr: u32, port: u32 }),
    2: struct({ loopId: u32 }),
    3: struct({ commData: opaque }),
  },
  () => ({ addrType: 0 }),
);

// v3 carries a single TCP address and no environment; v4 a list in preference order.
const addrV3: Codec<Addr> = mapped<AddrV3Wire, Addr>(
  addrV3Wire,
  (w) => {
    switch (w.addrType) {
      case 1:
        return { addrType: 1, tcpAddrs: [{ ipAddr: w.ipAddr, port: w.port, addrEnv: [] }] };
      case 2:
        return { addrType: 2, loopId: w.loopId };
      default:
        return w;
    }
  },
  (a) => {
    switch (a.addrType) {
      case 1: {
        const first = a.tcpAddrs[0];
        return { addrType: 1, ipAddr: first?.ipAddr ?? 0, port: first?.port ?? 0 };
      }
      case 2:
        return { addrType: 2, loopId: a.loopId ?? 0 };
      default:
        return a;
    }
  },
);

export const deviceCapability = struct({ device: string, attr: u32, capability: array(pval) });
export const deviceInfo = struct({ model: string, caplist: array(deviceCapability) });
export type DeviceInfo = Infer<typeof deviceInfo>;

export const fsInfo = struct({
  unsupported: u32,
  fsType: string,
  fsLogicalDevice: string,
  fsPhysicalDevice: string,
  totalSize: u64,
  usedSize: u64,
  availSize: u64,
  totalInodes: u64,
  usedInodes: u64,
  fsEnv: array(pval),
  fsStatus: string,
});
export type FsInfo = Infer<typeof fsInfo>;

export const classList = struct({ classId: u32, versions: array(u32) });
export const classVersion = struct({ classId: u32, version: u32 });

export const executeCdbRequest = struct({
  flags: u32,
  timeout: u32,
  datainLen: u32,
  cdb: opaque,
  dataout: opaque,
});

/** An nlist entry (v3 names its fields destination_dir/new_name; same wire layout). */
export const nlistName = struct({
  originalPath: string,
  destinationPath: string,
  name: string,
  otherName: string,
  node: u64,
  fhInfo: u64,
});
export type NlistName = Infer<typeof nlistName>;

export type FileName =
  | { fsType: 0; unixName: string }
  | { fsType: 1; ntPath: string; dosPath: string }
  | { fsType: number; otherName: string };
export const fileName: Codec<FileName> = union<FileName>(
  'fsType',
  { 0: struct({ unixName: string }), 1: struct({ ntPath: string, dosPath: string }) },
  () => ({ fsType: 0, unixName: '' }),
  struct({ otherName: string }),
);

export const fileStat = struct({
  unsupported: u32,
  fsType: u32,
  ftype: u32,
  mtime: u32,
  atime: u32,
  ctime: u32,
  owner: u32,
  group: u32,
  fattr: u32,
  size: u64,
  links: u32,
});
export type FileStat = Infer<typeof fileStat>;

export const file = struct({ names: array(fileName), stats: array(fileStat), node: u64, fhInfo: u64 });
export type FhFile = Infer<typeof file>;
export const dir = struct({ names: array(fileName), node: u64, parent: u64 });
export type FhDir = Infer<typeof dir>;
export const node = struct({ stats: array(fileStat), node: u64, fhInfo: u64 });
export type FhNode = Infer<typeof node>;

// v3 knows error codes 0..23 only; the v4 additions are mapped to the nearest v3 meaning.
const V4_ONLY_ERROR_TO_V3: Readonly<Record<number, number>> = {
  [ErrorCode.NDMP_SEQUENCE_NUM_ERR]: ErrorCode.NDMP_UNDEFINED_ERR,
  [ErrorCode.NDMP_READ_IN_PROGRESS_ERR]: ErrorCode.NDMP_ILLEGAL_STATE_ERR,
  [ErrorCode.NDMP_PRECONDITION_ERR]: ErrorCode.NDMP_ILLEGAL_STATE_ERR,
  [ErrorCode.NDMP_CLASS_NOT_SUPPORTED_ERR]: ErrorCode.NDMP_NOT_SUPPORTED_ERR,
  [ErrorCode.NDMP_VERSION_NOT_SUPPORTED_ERR]: ErrorCode.NDMP_NOT_SUPPORTED_ERR,
  [ErrorCode.NDMP_EXT_DUPL_CLASSES_ERR]: ErrorCode.NDMP_ILLEGAL_ARGS_ERR,
  [ErrorCode.NDMP_EXT_DANDN_ILLEGAL_ERR]: ErrorCode.NDMP_ILLEGAL_STATE_ERR,
};
export function errorForVersion(version: NdmpVersion, code: number): number {
  return version === 3 ? (V4_ONLY_ERROR_TO_V3[code] ?? code) : code;
}
const errorV3: Codec<number> = mapped(
  u32,
  (w) => w,
  (c) => errorForVersion(3, c),
);

// v3 butype bits: 0x1 = BACKUP_FILE_HISTORY, 0x200 = RECOVER_FILE_HISTORY; 0x2..0x100 as v4.
const V3_BACKUP_FILE_HISTORY = 0x1;
const V3_RECOVER_FILE_HISTORY = 0x200;
const SHARED_BUTYPE_BITS = 0x1fe;
const butypeAttrsV3: Codec<number> = mapped(
  u32,
  (w) =>
    (w & SHARED_BUTYPE_BITS) |
    (w & V3_BACKUP_FILE_HISTORY
      ? ButypeAttr.NDMP_BUTYPE_BACKUP_FH_FILE | ButypeAttr.NDMP_BUTYPE_BACKUP_FH_DIR
      : 0) |
    (w & V3_RECOVER_FILE_HISTORY ? ButypeAttr.NDMP_BUTYPE_RECOVER_FILEHIST : 0),
  (c) =>
    (c & SHARED_BUTYPE_BITS) |
    (c & (ButypeAttr.NDMP_BUTYPE_BACKUP_FH_FILE | ButypeAttr.NDMP_BUTYPE_BACKUP_FH_DIR)
      ? V3_BACKUP_FILE_HISTORY
      : 0) |
    (c & ButypeAttr.NDMP_BUTYPE_RECOVER_FILEHIST ? V3_RECOVER_FILE_HISTORY : 0),
);

// v3 LOG_FILE carries an ndmp_error where v4 carries a recovery status (docs/protocol.md §9.4).
const RECOVERY_TO_V3_ERROR: Readonly<Record<number, number>> = {
  [RecoveryStatus.NDMP_RECOVERY_SUCCESSFUL]: ErrorCode.NDMP_NO_ERR,
  [RecoveryStatus.NDMP_RECOVERY_FAILED_PERMISSION]: ErrorCode.NDMP_PERMISSION_ERR,
  [RecoveryStatus.NDMP_RECOVERY_FAILED_NOT_FOUND]: ErrorCode.NDMP_FILE_NOT_FOUND_ERR,
  [RecoveryStatus.NDMP_RECOVERY_FAILED_NO_DIRECTORY]: ErrorCode.NDMP_BAD_FILE_ERR,
  [RecoveryStatus.NDMP_RECOVERY_FAILED_OUT_OF_MEMORY]: ErrorCode.NDMP_NO_MEM_ERR,
  [RecoveryStatus.NDMP_RECOVERY_FAILED_IO_ERROR]: ErrorCode.NDMP_IO_ERR,
  [RecoveryStatus.NDMP_RECOVERY_FAILED_UNDEFINED_ERROR]: ErrorCode.NDMP_UNDEFINED_ERR,
  [RecoveryStatus.NDMP_RECOVERY_FAILED_FILE_PATH_EXISTS]: ErrorCode.NDMP_UNDEFINED_ERR,
};
const V3_ERROR_TO_RECOVERY: Readonly<Record<number, number>> = {
  [ErrorCode.NDMP_NO_ERR]: RecoveryStatus.NDMP_RECOVERY_SUCCESSFUL,
  [ErrorCode.NDMP_PERMISSION_ERR]: RecoveryStatus.NDMP_RECOVERY_FAILED_PERMISSION,
  [ErrorCode.NDMP_FILE_NOT_FOUND_ERR]: RecoveryStatus.NDMP_RECOVERY_FAILED_NOT_FOUND,
  [ErrorCode.NDMP_BAD_FILE_ERR]: RecoveryStatus.NDMP_RECOVERY_FAILED_NO_DIRECTORY,
  [ErrorCode.NDMP_NO_MEM_ERR]: RecoveryStatus.NDMP_RECOVERY_FAILED_OUT_OF_MEMORY,
  [ErrorCode.NDMP_IO_ERR]: RecoveryStatus.NDMP_RECOVERY_FAILED_IO_ERROR,
};
const recoveryStatusV3: Codec<number> = mapped(
  u32,
  (e) => V3_ERROR_TO_RECOVERY[e] ?? RecoveryStatus.NDMP_RECOVERY_FAILED_UNDEFINED_ERROR,
  (s) => RECOVERY_TO_V3_ERROR[s] ?? ErrorCode.NDMP_UNDEFINED_ERR,
);

/** The version-dependent pieces message declarations are built from. */
export interface Vocabulary {
  readonly version: NdmpVersion;
  /** `ndmp_error` as this version may carry it. */
  readonly error: Codec<number>;
  readonly addr: Codec<Addr>;
  readonly butypeAttrs: Codec<number>;
  /** LOG_FILE's status field: v4 recovery status, v3 ndmp_error (canonical: recovery status). */
  readonly recoveryStatus: Codec<number>;
}

export const VOCABULARY: Readonly<Record<NdmpVersion, Vocabulary>> = {
  4: { version: 4, error: u32, addr: addrV4, butypeAttrs: u32, recoveryStatus: u32 },
  3: {
    version: 3,
    error: errorV3,
    addr: addrV3,
    butypeAttrs: butypeAttrsV3,
    recoveryStatus: recoveryStatusV3,
  },
};
