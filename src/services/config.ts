// CONFIG_* (docs/protocol.md §3.3, draft §3.2): what this server is and offers.

import { AddrType, AuthType, ButypeAttr, ErrorCode, M, NdmpError } from '../wire/index.js';
import type { DeviceInfo, Pval } from '../wire/index.js';
import { newChallenge } from './connect.js';
import { describeExport } from './exports.js';
import type { Handler } from './session.js';
import { handler } from './session.js';
import { TAPE_IMAGE_MODEL } from '../devices/library.js';
import { CHANGER_DEVICE } from '../devices/library-changer.js';
import type { Library } from '../devices/library.js';

/** The backup type the data service offers: a POSIX pax stream (docs/design.md). */
export const TAR_BUTYPE = 'tar';

/**
 * What the `tar` type supports. Declared now, made true by the data service:
 * file lists (FILES / name lists), DAR both ways, incremental levels, UTF-8
 * names, both history models, and history regenerated on RECOVER_FILEHIST.
 */
export const TAR_ATTRS =
  ButypeAttr.NDMP_BUTYPE_BACKUP_FILELIST |
  ButypeAttr.NDMP_BUTYPE_RECOVER_FILELIST |
  ButypeAttr.NDMP_BUTYPE_BACKUP_DIRECT |
  ButypeAttr.NDMP_BUTYPE_RECOVER_DIRECT |
  ButypeAttr.NDMP_BUTYPE_BACKUP_INCREMENTAL |
  ButypeAttr.NDMP_BUTYPE_RECOVER_INCREMENTAL |
  ButypeAttr.NDMP_BUTYPE_BACKUP_UTF8 |
  ButypeAttr.NDMP_BUTYPE_RECOVER_UTF8 |
  ButypeAttr.NDMP_BUTYPE_BACKUP_FH_FILE |
  ButypeAttr.NDMP_BUTYPE_BACKUP_FH_DIR |
  ButypeAttr.NDMP_BUTYPE_RECOVER_FILEHIST |
  ButypeAttr.NDMP_BUTYPE_RECOVER_FH_FILE |
  ButypeAttr.NDMP_BUTYPE_RECOVER_FH_DIR;

/** Defaults a backup uses for variables the DMA does not send (docs/protocol.md §9.3). */
export const TAR_DEFAULT_ENV: readonly Pval[] = [
  { name: 'TYPE', value: TAR_BUTYPE },
  { name: 'HIST', value: 'n' },
  { name: 'LEVEL', value: '0' },
  { name: 'UPDATE', value: 'y' },
  { name: 'DIRECT', value: 'n' },
  { name: 'RECURSIVE', value: 'y' },
];

const AUTH_TYPES = [AuthType.NDMP_AUTH_TEXT, AuthType.NDMP_AUTH_MD5];

const getServerInfo = handler(M.CONFIG_GET_SERVER_INFO, {
  preAuth: true,
  handle(s) {
    // Before authentication only the auth types are told (docs/protocol.md §5.4).
    const i = s.ctx.info;
    return s.user === null
      ? { vendorName: '', productName: '', revisionNumber: '', authTypes: AUTH_TYPES }
      : {
          vendorName: i.vendorName,
          productName: i.productName,
          revisionNumber: i.revisionNumber,
          authTypes: AUTH_TYPES,
        };
  },
});

const getAuthAttr = handler(M.CONFIG_GET_AUTH_ATTR, {
  preAuth: true,
  handle(s, req) {
    switch (req.authType) {
      case AuthType.NDMP_AUTH_TEXT:
        return { serverAttr: { authType: AuthType.NDMP_AUTH_TEXT } };
      case AuthType.NDMP_AUTH_MD5: {
        // A fresh challenge per request; the latest one is the one CLIENT_AUTH must answer.
        const challenge = newChallenge();
        s.md5Challenge = challenge;
        return { serverAttr: { authType: AuthType.NDMP_AUTH_MD5, challenge } };
      }
      default:
        throw NdmpError.illegalArgs(`auth type ${req.authType} not supported`);
    }
  },
});

const getHostInfo = handler(M.CONFIG_GET_HOST_INFO, {
  handle(s) {
    const i = s.ctx.info;
    return { hostname: i.hostname, osType: i.osType, osVers: i.osVers, hostid: i.hostId };
  },
});

const getConnectionType = handler(M.CONFIG_GET_CONNECTION_TYPE, {
  // Only what works: LOCAL (data and mover in this server) and TCP (three-way).
  handle: () => ({ addrTypes: [AddrType.NDMP_ADDR_LOCAL, AddrType.NDMP_ADDR_TCP] }),
});

const getButypeInfo = handler(M.CONFIG_GET_BUTYPE_INFO, {
  handle: () => ({
    butypeInfo: [{ butypeName: TAR_BUTYPE, defaultEnv: [...TAR_DEFAULT_ENV], attrs: TAR_ATTRS }],
  }),
});

const getFsInfo = handler(M.CONFIG_GET_FS_INFO, {
  async handle(s) {
    return { fsInfo: await Promise.all(s.ctx.exports.map(describeExport)) };
  },
});

// The library's drives, grouped by model as device_info wants. Closing never
// rewinds or unloads; RAW opens are accepted (v4 only has the bit).
const getTapeInfo = handler(M.CONFIG_GET_TAPE_INFO, {
  handle: (s) => {
    const byModel = new Map<string, DeviceInfo>();
    for (const d of s.ctx.library?.drives() ?? []) {
      let info = byModel.get(d.model);
      if (!info) byModel.set(d.model, (info = { model: d.model, caplist: [] }));
      info.caplist.push({
        device: d.name,
        attr: s.version === 4 ? TAPE_ATTR_RAW : 0,
        capability: [
          { name: 'SERIAL_NUMBER', value: d.serial },
          // TAPE_EXECUTE_CDB answers INQUIRY for the drives when the changer is offered (docs/changer.md §4.1).
          { name: 'EXECUTE_CDB', value: s.ctx.changer ? 't' : 'f' },
        ],
      });
    }
    const tapes = s.ctx.library ? tapeImages(s.ctx.library, s.version) : null;
    return { tapeInfo: tapes ? [...byModel.values(), tapes] : [...byModel.values()] };
  },
});

/**
 * The library's tapes, as devices of their own: TAPE_OPEN takes
 * `tapes/BARCODE` as well as a drive. Until the SCSI media changer, this is
 * how a DMA sees the library's contents (barcode, label, how full, whether
 * write-protected or loaded) and picks a blank tape to continue on at EOM.
 */
function tapeImages(library: Library, version: number): DeviceInfo | null {
  let list: ReturnType<Library['listTapes']>;
  try {
    list = library.listTapes();
  } catch {
    return null;
  }
  if (list.length === 0) return null;
  const yn = (b: boolean) => (b ? 'y' : 'n');
  return {
    model: TAPE_IMAGE_MODEL,
    caplist: list.map((t) => ({
      device: `tapes/${t.barcode}`,
      attr: version === 4 ? TAPE_ATTR_RAW : 0,
      capability: [
        { name: 'BARCODE', value: t.barcode },
        { name: 'LABEL', value: t.label },
        { name: 'CAPACITY', value: String(t.capacity) },
        { name: 'USED', value: String(t.usedBytes) },
        { name: 'FILES', value: String(t.filemarks) },
        { name: 'BLANK', value: yn(t.blank) },
        { name: 'WRITE_PROTECTED', value: yn(t.writeProtected) },
        { name: 'LOADED_IN', value: t.loadedIn ?? '' },
      ],
    })),
  };
}

/** device_capability.attr: the drive accepts NDMP_TAPE_RAW_MODE opens (docs/protocol.md §4.3). */
const TAPE_ATTR_RAW = 0x4;
// The changer, named and identified as its INQUIRY says (docs/changer.md §4.1).
const getScsiInfo = handler(M.CONFIG_GET_SCSI_INFO, {
  handle: (s) => {
    const c = s.ctx.changer;
    if (!c) return { scsiInfo: [] };
    return {
      scsiInfo: [
        {
          model: c.model,
          caplist: [
            {
              device: CHANGER_DEVICE,
              attr: 0,
              capability: [
                { name: 'SERIAL_NUMBER', value: c.identity.serial },
                { name: 'WORLD_WIDE_NAME', value: c.worldWideName },
              ],
            },
          ],
        },
      ],
    };
  },
});

// Extensions (v4 only, docs/protocol.md §2.3, draft §2.5.4): this server implements none. The DMA may
// list them, then select once; anything after the selection is out of order.
const getExtList = handler(M.CONFIG_GET_EXT_LIST, {
  when: {
    state: (s) => s.extNegotiation,
    allow: ['none', 'listed'],
    error: ErrorCode.NDMP_EXT_DANDN_ILLEGAL_ERR,
  },
  handle(s) {
    s.extNegotiation = 'listed';
    return { classList: [] };
  },
});

const setExtList = handler(M.CONFIG_SET_EXT_LIST, {
  when: {
    state: (s) => s.extNegotiation,
    allow: ['listed'],
    // Selecting before listing is out of order; selecting twice is a second negotiation.
    error: (state) =>
      state === 'none' ? ErrorCode.NDMP_PRECONDITION_ERR : ErrorCode.NDMP_EXT_DANDN_ILLEGAL_ERR,
  },
  handle(s, req) {
    const ids = req.ndmpSelectedExt.map((c) => c.classId);
    if (new Set(ids).size !== ids.length) {
      throw new NdmpError(ErrorCode.NDMP_EXT_DUPL_CLASSES_ERR, 'a class is selected twice');
    }
    if (ids.length > 0) {
      throw new NdmpError(
        ErrorCode.NDMP_CLASS_NOT_SUPPORTED_ERR,
        `no extension class is offered (asked: ${ids.join(', ')})`,
      );
    }
    s.extNegotiation = 'selected';
    return {};
  },
});

export const configHandlers: readonly Handler[] = [
  getServerInfo,
  getAuthAttr,
  getHostInfo,
  getConnectionType,
  getButypeInfo,
  getFsInfo,
  getTapeInfo,
  getScsiInfo,
  getExtList,
  setExtList,
] as readonly Handler[];
