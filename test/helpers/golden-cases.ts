// Golden wire bytes for every NDMP message body, in every version that has the
// message (docs/protocol.md §2.3, §3). The expected bytes are built with the
// test-only builder in xdr-bytes.ts, never with src/wire's XdrWriter, so a case
// fails when the codec and the protocol disagree.
//
// Shared by messages-golden (encode/decode), messages-truncation (every prefix
// must fail) and framing (every golden record through the framer).

import type {
  Addr,
  Codec,
  FileName,
  FileStat,
  Header,
  MessageDef,
  NdmpVersion,
  Pval,
} from '../../src/wire/index.js';
import { compiled, M } from '../../src/wire/index.js';
import type { Bytes } from './xdr-bytes.js';
import { b, headerBytes } from './xdr-bytes.js';

/** One body sample: the value, its wire bytes, and what decoding them yields (default: the value). */
export interface Sample<T> {
  readonly value: T;
  readonly bytes: Buffer;
  readonly decoded?: T;
}

/** One message in one version: its request (or post) body and, unless it has none, its reply body. */
export interface GoldenCase {
  readonly def: MessageDef;
  readonly version: NdmpVersion;
  readonly request: Sample<unknown>;
  readonly reply: Sample<unknown> | null;
}

export type Part = 'request' | 'post' | 'reply';

/** A body on the wire and the value it decodes to. */
export interface WireCase {
  readonly title: string;
  readonly def: MessageDef;
  readonly version: NdmpVersion;
  readonly part: Part;
  readonly bytes: Buffer;
  readonly decoded: unknown;
}

/** A body that must also encode from `value` to exactly `bytes`. */
export interface BodyCase extends WireCase {
  readonly value: unknown;
}

function s<T>(value: T, bytes: Bytes, decoded?: T): Sample<T> {
  return decoded === undefined ? { value, bytes: bytes.bytes() } : { value, bytes: bytes.bytes(), decoded };
}

function gc<Req, Rep>(
  def: MessageDef<Req, Rep>,
  version: NdmpVersion,
  request: Sample<Req>,
  reply: Sample<Rep> | null,
): GoldenCase {
  return { def: def as MessageDef, version, request, reply };
}

// ---- shared fixtures: each value next to its hand-built wire form -----------------------------

const EMPTY = (): Sample<Record<string, never>> => s({}, b());
const errorReply = (error: number): Sample<{ error: number }> => s({ error }, b().u32(error));

/** Two env entries; 'y' needs 3 pad bytes, 'FILESYSTEM' 2. */
const ENV: Pval[] = [
  { name: 'HIST', value: 'y' },
  { name: 'FILESYSTEM', value: '/export/home' },
];
const envW = () => b().u32(2).str('HIST').str('y').str('FILESYSTEM').str('/export/home');

const ENV2: Pval[] = [
  { name: 'TYPE', value: 'tar' },
  { name: 'PREFIX', value: '/données' }, // multi-byte UTF-8: 9 bytes, 3 pad
];
const env2W = () => b().u32(2).str('TYPE').str('tar').str('PREFIX').str('/données');

const DIGEST = Buffer.from('9f1142c95e359f5a9f630938dc81e6cc', 'hex');
const CHALLENGE = Buffer.from(Array.from({ length: 64 }, (_, i) => i));

// Addresses: v4 TCP carries a list with env, v3 one address without env (docs/protocol.md §3.1).
const ADDR_V4_TCP: Addr = {
  addrType: 1,
  tcpAddrs: [
    { ipAddr: 0x7f000001, port: 48347, addrEnv: [] },
    { ipAddr: 0xc0a80a05, port: 10001, addrEnv: [{ name: 'IF', value: 'eth0' }] },
  ],
};
const addrV4TcpW = () =>
  b().u32(1).u32(2).u32(0x7f000001).u32(48347).u32(0).u32(0xc0a80a05).u32(10001).u32(1).str('IF').str('eth0');
const ADDR_IPC: Addr = { addrType: 3, commData: Buffer.from([1, 2, 3, 4, 5]) };
const addrIpcW = () => b().u32(3).u32(5).hex('0102030405 000000');
const ADDR_V3_TCP: Addr = { addrType: 1, tcpAddrs: [{ ipAddr: 0x0a000002, port: 10000, addrEnv: [] }] };
const addrV3TcpW = () => b().u32(1).u32(0x0a000002).u32(10000);
const ADDR_V3_FC: Addr = { addrType: 2, loopId: 0x7d };
const addrV3FcW = () => b().u32(2).u32(0x7d);

const STAT_FILE: FileStat = {
  unsupported: 0x4,
  fsType: 0,
  ftype: 4,
  mtime: 0x6b05b6a1,
  atime: 0x6b05b600,
  ctime: 0x6b05b500,
  owner: 1000,
  group: 0,
  fattr: 0o100644,
  size: 2n ** 40n + 17n,
  links: 1,
};
const statFileW = () =>
  b()
    .u32(0x4)
    .u32(0)
    .u32(4)
    .u32(0x6b05b6a1)
    .u32(0x6b05b600)
    .u32(0x6b05b500)
    .u32(1000)
    .u32(0)
    .u32(0o100644)
    .hex('00000100 00000011')
    .u32(1);
const STAT_DIR: FileStat = {
  unsupported: 0,
  fsType: 1,
  ftype: 0,
  mtime: 1,
  atime: 2,
  ctime: 3,
  owner: 0xffffffff,
  group: 0xfffffffe,
  fattr: 0o40755,
  size: 4096n,
  links: 3,
};
const statDirW = () =>
  b()
    .u32(0)
    .u32(1)
    .u32(0)
    .u32(1)
    .u32(2)
    .u32(3)
    .u32(0xffffffff)
    .u32(0xfffffffe)
    .u32(0o40755)
    .quad(4096n)
    .u32(3);

const NAME_UNIX: FileName = { fsType: 0, unixName: 'b.txt' };
const nameUnixW = () => b().u32(0).str('b.txt');
const NAME_NT: FileName = { fsType: 1, ntPath: 'C:\\data\\b.txt', dosPath: 'B~1.TXT' };
const nameNtW = () => b().u32(1).str('C:\\data\\b.txt').str('B~1.TXT');
const NAME_OTHER: FileName = { fsType: 2, otherName: 'DKA0:[DATA]B.TXT;1' };
const nameOtherW = () => b().u32(2).str('DKA0:[DATA]B.TXT;1');

const NLIST = [
  {
    originalPath: '/export/home/a',
    destinationPath: '/restore/home/a',
    name: 'a',
    otherName: '',
    node: 2n ** 32n + 5n,
    fhInfo: 2n ** 40n + 512n,
  },
  {
    originalPath: '/export/home/dir',
    destinationPath: '/restore',
    name: 'dir2',
    otherName: 'x',
    node: 0xffffffffffffffffn,
    fhInfo: 0xffffffffffffffffn,
  },
];
const nlistW = () =>
  b()
    .u32(2)
    .str('/export/home/a')
    .str('/restore/home/a')
    .str('a')
    .str('')
    .hex('00000001 00000005')
    .hex('00000100 00000200')
    .str('/export/home/dir')
    .str('/restore')
    .str('dir2')
    .str('x')
    .hex('ffffffff ffffffff')
    .hex('ffffffff ffffffff');

// ---- the table: one entry per message × version -------------------------------------------------

function casesFor(V: NdmpVersion): GoldenCase[] {
  const v3 = V === 3;
  const v4only = (c: () => GoldenCase): GoldenCase[] => (v3 ? [] : [c()]);
  const v3only = (c: () => GoldenCase): GoldenCase[] => (v3 ? [c()] : []);
  // The same canonical value, the wire forms differ (v3 addr, butype bits, LOG_FILE status).
  const addrA = v3 ? ADDR_V3_TCP : ADDR_V4_TCP;
  const addrAW = v3 ? addrV3TcpW : addrV4TcpW;
  const addrB = v3 ? ADDR_V3_FC : ADDR_IPC;
  const addrBW = v3 ? addrV3FcW : addrIpcW;

  return [
    // CONNECT
    gc(
      M.CONNECT_OPEN,
      V,
      s({ protocolVersion: V }, b().u32(V)),
      errorReply(9), // ILLEGAL_ARGS
    ),
    gc(
      M.CONNECT_CLIENT_AUTH,
      V,
      v3
        ? s(
            { authData: { authType: 1, authId: 'admin', authPassword: 'secret!' } },
            b().u32(1).str('admin').str('secret!'),
          )
        : s(
            { authData: { authType: 2, authId: 'ndmp', authDigest: DIGEST } },
            b().u32(2).str('ndmp').fixed(DIGEST),
          ),
      errorReply(4), // NOT_AUTHORIZED
    ),
    gc(M.CONNECT_CLOSE, V, EMPTY(), null),
    gc(
      M.CONNECT_SERVER_AUTH,
      V,
      s({ clientAttr: { authType: 2, challenge: CHALLENGE } }, b().u32(2).fixed(CHALLENGE)),
      s(
        { error: 0, serverResult: { authType: 2, authId: 'ndmpd', authDigest: DIGEST } },
        b().u32(0).u32(2).str('ndmpd').fixed(DIGEST),
      ),
    ),

    // CONFIG
    gc(
      M.CONFIG_GET_HOST_INFO,
      V,
      EMPTY(),
      s(
        { error: 0, hostname: 'backup01', osType: 'Linux', osVers: '6.1.0-18', hostid: 'a1b2c3' },
        b().u32(0).str('backup01').str('Linux').str('6.1.0-18').str('a1b2c3'),
      ),
    ),
    gc(
      M.CONFIG_GET_CONNECTION_TYPE,
      V,
      EMPTY(),
      s({ error: 0, addrTypes: [0, 1] }, b().u32(0).u32(2).u32(0).u32(1)),
    ),
    gc(
      M.CONFIG_GET_AUTH_ATTR,
      V,
      s({ authType: 2 }, b().u32(2)),
      v3
        ? s({ error: 0, serverAttr: { authType: 1 } }, b().u32(0).u32(1))
        : s(
            { error: 0, serverAttr: { authType: 2, challenge: CHALLENGE } },
            b().u32(0).u32(2).fixed(CHALLENGE),
          ),
    ),
    gc(
      M.CONFIG_GET_BUTYPE_INFO,
      V,
      EMPTY(),
      s(
        {
          error: 0,
          butypeInfo: [
            // FILELIST | INCREMENTAL | FH_FILE | FH_DIR
            { butypeName: 'dump', defaultEnv: ENV, attrs: 0x622 },
            // RECOVER_FILELIST | FH_FILE | FH_DIR | RECOVER_FILEHIST
            { butypeName: 'tar', defaultEnv: [], attrs: 0xe04 },
          ],
        },
        b()
          .u32(0)
          .u32(2)
          .str('dump')
          .raw(envW())
          .u32(v3 ? 0x023 : 0x622) // v3: FH_FILE|FH_DIR -> BACKUP_FILE_HISTORY 0x1
          .str('tar')
          .u32(0)
          .u32(v3 ? 0x205 : 0xe04), // v3: RECOVER_FILEHIST -> RECOVER_FILE_HISTORY 0x200
      ),
    ),
    gc(
      M.CONFIG_GET_FS_INFO,
      V,
      EMPTY(),
      s(
        {
          error: 0,
          fsInfo: [
            {
              unsupported: 0x18,
              fsType: 'zfs',
              fsLogicalDevice: '/export/home',
              fsPhysicalDevice: 'tank/home',
              totalSize: 0x10000000005n,
              usedSize: 0x123456789n,
              availSize: 0xedcba987cn,
              totalInodes: 0xffffffffffffffffn,
              usedInodes: 0x100000000n,
              fsEnv: ENV,
              fsStatus: 'online',
            },
            {
              unsupported: 0,
              fsType: 'ufs',
              fsLogicalDevice: '/',
              fsPhysicalDevice: '/dev/ada0p2',
              totalSize: 20n * 2n ** 30n,
              usedSize: 1n,
              availSize: 2n ** 33n,
              totalInodes: 1000n,
              usedInodes: 10n,
              fsEnv: [],
              fsStatus: 'degraded',
            },
          ],
        },
        b()
          .u32(0)
          .u32(2)
          .u32(0x18)
          .str('zfs')
          .str('/export/home')
          .str('tank/home')
          .hex('00000100 00000005')
          .hex('00000001 23456789')
          .hex('0000000e dcba987c')
          .hex('ffffffff ffffffff')
          .hex('00000001 00000000')
          .raw(envW())
          .str('online')
          .u32(0)
          .str('ufs')
          .str('/')
          .str('/dev/ada0p2')
          .hex('00000005 00000000')
          .hex('00000000 00000001')
          .hex('00000002 00000000')
          .hex('00000000 000003e8')
          .hex('00000000 0000000a')
          .u32(0)
          .str('degraded'),
      ),
    ),
    gc(
      M.CONFIG_GET_TAPE_INFO,
      V,
      EMPTY(),
      s(
        {
          error: 0,
          tapeInfo: [
            {
              model: 'HP Ultrium 8-SCSI',
              caplist: [
                {
                  device: '/dev/nsa0',
                  attr: 0x3,
                  capability: [
                    { name: 'EXECUTE_CDB', value: 't' },
                    { name: 'SERIAL_NUMBER', value: 'HU19487T4B' },
                  ],
                },
                { device: '/dev/nsa1', attr: 0x4, capability: [] },
              ],
            },
            { model: 'VTL', caplist: [] },
          ],
        },
        b()
          .u32(0)
          .u32(2)
          .str('HP Ultrium 8-SCSI')
          .u32(2)
          .str('/dev/nsa0')
          .u32(0x3)
          .u32(2)
          .str('EXECUTE_CDB')
          .str('t')
          .str('SERIAL_NUMBER')
          .str('HU19487T4B')
          .str('/dev/nsa1')
          .u32(0x4)
          .u32(0)
          .str('VTL')
          .u32(0),
      ),
    ),
    gc(
      M.CONFIG_GET_SCSI_INFO,
      V,
      EMPTY(),
      s(
        {
          error: 7,
          scsiInfo: [
            {
              model: 'STK L700',
              caplist: [
                { device: '/dev/ch0', attr: 0x1, capability: [{ name: 'SERIAL', value: 'XYZZY_A' }] },
              ],
            },
            { model: 'IBM 3573-TL', caplist: [{ device: '/dev/ch1', attr: 0, capability: [] }] },
          ],
        },
        b()
          .u32(7)
          .u32(2)
          .str('STK L700')
          .u32(1)
          .str('/dev/ch0')
          .u32(1)
          .u32(1)
          .str('SERIAL')
          .str('XYZZY_A')
          .str('IBM 3573-TL')
          .u32(1)
          .str('/dev/ch1')
          .u32(0)
          .u32(0),
      ),
    ),
    gc(
      M.CONFIG_GET_SERVER_INFO,
      V,
      EMPTY(),
      s(
        {
          error: 0,
          vendorName: 'ndmpd project',
          productName: 'ndmpd',
          revisionNumber: '0.1.0',
          authTypes: [1, 2],
        },
        b().u32(0).str('ndmpd project').str('ndmpd').str('0.1.0').u32(2).u32(1).u32(2),
      ),
    ),
    ...v4only(() =>
      gc(
        M.CONFIG_SET_EXT_LIST,
        V,
        s(
          {
            ndmpSelectedExt: [
              { classId: 0x2050, version: 1 },
              { classId: 0x7ff0, version: 2 },
            ],
          },
          b().u32(2).u32(0x2050).u32(1).u32(0x7ff0).u32(2),
        ),
        errorReply(29), // EXT_DUPL_CLASSES
      ),
    ),
    ...v4only(() =>
      gc(
        M.CONFIG_GET_EXT_LIST,
        V,
        EMPTY(),
        s(
          {
            error: 0,
            classList: [
              { classId: 0x2050, versions: [1, 2] },
              { classId: 0x7ff0, versions: [] },
            ],
          },
          b().u32(0).u32(2).u32(0x2050).u32(2).u32(1).u32(2).u32(0x7ff0).u32(0),
        ),
      ),
    ),

    // SCSI
    gc(M.SCSI_OPEN, V, s({ device: '/dev/sg3' }, b().str('/dev/sg3')), errorReply(2)),
    gc(M.SCSI_CLOSE, V, EMPTY(), errorReply(6)),
    gc(
      M.SCSI_GET_STATE,
      V,
      EMPTY(),
      s(
        { error: 0, targetController: -1, targetId: 5, targetLun: -2 },
        b().u32(0).hex('ffffffff').u32(5).hex('fffffffe'),
      ),
    ),
    ...v3only(() =>
      gc(
        M.SCSI_SET_TARGET,
        V,
        s(
          { device: '/dev/sg1', targetController: 1, targetId: 4, targetLun: 2 },
          b().str('/dev/sg1').u32(1).u32(4).u32(2),
        ),
        errorReply(16), // NO_DEVICE
      ),
    ),
    gc(M.SCSI_RESET_DEVICE, V, EMPTY(), errorReply(17)),
    ...v3only(() => gc(M.SCSI_RESET_BUS, V, EMPTY(), errorReply(17))),
    gc(
      M.SCSI_EXECUTE_CDB,
      V,
      s(
        {
          flags: 1,
          timeout: 30000,
          datainLen: 96,
          cdb: Buffer.from('120000006000', 'hex'),
          dataout: Buffer.from('ab', 'hex'),
        },
        b().u32(1).u32(30000).u32(96).u32(6).hex('12000000 60000000').u32(1).hex('ab000000'),
      ),
      s(
        {
          error: 0,
          status: 2,
          dataoutLen: 0,
          datain: Buffer.from('0180050200', 'hex'),
          extSense: Buffer.from('70000600000000', 'hex'),
        },
        b().u32(0).u32(2).u32(0).u32(5).hex('01800502 00000000').u32(7).hex('70000600 000000 00'),
      ),
    ),

    // TAPE
    gc(M.TAPE_OPEN, V, s({ device: '/dev/nst0', mode: 1 }, b().str('/dev/nst0').u32(1)), errorReply(3)),
    gc(M.TAPE_CLOSE, V, EMPTY(), errorReply(11)),
    gc(
      M.TAPE_GET_STATE,
      V,
      EMPTY(),
      s(
        {
          unsupported: 0x8,
          error: 0,
          flags: 0x10,
          fileNum: 3,
          softErrors: 1,
          blockSize: 65536,
          blockno: 17,
          totalSpace: 12n * 2n ** 40n,
          spaceRemain: 2n ** 33n + 7n,
        },
        b()
          .u32(0x8)
          .u32(0)
          .u32(0x10)
          .u32(3)
          .u32(1)
          .u32(65536)
          .u32(17)
          .hex('00000c00 00000000')
          .hex('00000002 00000007')
          .raw(v3 ? b().u32(0) : b()), // v3: trailing partition, always 0 here
      ),
    ),
    gc(
      M.TAPE_MTIO,
      V,
      s({ tapeOp: 1, count: 2 }, b().u32(1).u32(2)),
      s({ error: 12, residCount: 1 }, b().u32(12).u32(1)),
    ),
    gc(
      M.TAPE_WRITE,
      V,
      s({ dataOut: Buffer.from('0123456789', 'utf8') }, b().u32(10).hex('30313233 34353637 38390000')),
      s({ error: 0, count: 10 }, b().u32(0).u32(10)),
    ),
    gc(
      M.TAPE_READ,
      V,
      s({ count: 1024 }, b().u32(1024)),
      s(
        { error: 13, dataIn: Buffer.from('deadbeefcafe01', 'hex') },
        b().u32(13).u32(7).hex('deadbeef cafe0100'),
      ),
    ),
    gc(
      M.TAPE_EXECUTE_CDB,
      V,
      s(
        {
          flags: 2,
          timeout: 0,
          datainLen: 0,
          cdb: Buffer.from('0a0000000100', 'hex'),
          dataout: Buffer.from('fffefd', 'hex'),
        },
        b().u32(2).u32(0).u32(0).u32(6).hex('0a000000 01000000').u32(3).hex('fffefd00'),
      ),
      s(
        { error: 0, status: 0, dataoutLen: 3, datain: Buffer.alloc(0), extSense: Buffer.from('f0', 'hex') },
        b().u32(0).u32(0).u32(3).u32(0).u32(1).hex('f0000000'),
      ),
    ),

    // DATA
    gc(
      M.DATA_GET_STATE,
      V,
      EMPTY(),
      s(
        {
          unsupported: 0x2,
          error: 0,
          operation: 1,
          state: 1,
          haltReason: 0,
          bytesProcessed: 2n ** 35n + 1n,
          estBytesRemain: 2n ** 32n,
          estTimeRemain: 0xffffffff,
          dataConnectionAddr: addrA,
          readOffset: 2n ** 40n,
          readLength: 0xffffffffffffffffn,
        },
        b()
          .u32(0x2)
          .u32(0)
          .u32(1)
          .u32(1)
          .u32(0)
          .hex('00000008 00000001')
          .hex('00000001 00000000')
          .u32(0xffffffff)
          .raw(addrAW())
          .hex('00000100 00000000')
          .hex('ffffffff ffffffff'),
      ),
    ),
    gc(
      M.DATA_START_BACKUP,
      V,
      s({ butypeName: 'dump', env: ENV }, b().str('dump').raw(envW())),
      errorReply(19), // ILLEGAL_STATE
    ),
    gc(
      M.DATA_START_RECOVER,
      V,
      s({ env: ENV2, nlist: NLIST, butypeName: 'tar' }, b().raw(env2W()).raw(nlistW()).str('tar')),
      errorReply(0),
    ),
    gc(M.DATA_ABORT, V, EMPTY(), errorReply(19)),
    gc(M.DATA_GET_ENV, V, EMPTY(), s({ error: 0, env: ENV2 }, b().u32(0).raw(env2W()))),
    gc(M.DATA_STOP, V, EMPTY(), errorReply(19)),
    gc(
      M.DATA_LISTEN,
      V,
      s({ addrType: 1 }, b().u32(1)),
      s({ error: 0, connectAddr: addrB }, b().u32(0).raw(addrBW())),
    ),
    gc(M.DATA_CONNECT, V, s({ addr: addrA }, b().raw(addrAW())), errorReply(23)),
    gc(
      M.DATA_START_RECOVER_FILEHIST,
      V,
      s({ env: ENV, nlist: NLIST, butypeName: 'dump' }, b().raw(envW()).raw(nlistW()).str('dump')),
      errorReply(1),
    ),

    // NOTIFY
    gc(
      M.NOTIFY_DATA_HALTED,
      V,
      v3
        ? s({ reason: 3, textReason: 'internal error' }, b().u32(3).str('internal error'))
        : s({ reason: 1 }, b().u32(1)),
      null,
    ),
    gc(
      M.NOTIFY_CONNECTION_STATUS,
      V,
      s({ reason: 2, protocolVersion: V, textReason: 'too busy' }, b().u32(2).u32(V).str('too busy')),
      null,
    ),
    gc(
      M.NOTIFY_MOVER_HALTED,
      V,
      v3
        ? s({ reason: 1, textReason: 'connection closed' }, b().u32(1).str('connection closed'))
        : s({ reason: 5 }, b().u32(5)),
      null,
    ),
    gc(
      M.NOTIFY_MOVER_PAUSED,
      V,
      s({ reason: 1, seekPosition: 2n ** 36n + 3n }, b().u32(1).hex('00000010 00000003')),
      null,
    ),
    gc(
      M.NOTIFY_DATA_READ,
      V,
      s(
        { offset: 2n ** 33n, length: 2n ** 34n + 12345n },
        b().hex('00000002 00000000').hex('00000004 00003039'),
      ),
      null,
    ),

    // LOG
    gc(
      M.LOG_FILE,
      V,
      // NOT_FOUND: v4 recovery status 2, v3 FILE_NOT_FOUND_ERR 14 (docs/protocol.md §9.4)
      s(
        { name: '/données/ü.txt', recoveryStatus: 2 },
        b()
          .str('/données/ü.txt')
          .u32(v3 ? 14 : 2),
      ),
      null,
    ),
    gc(
      M.LOG_MESSAGE,
      V,
      v3
        ? s(
            {
              logType: 3,
              messageId: 78,
              entry: 'slow tape',
              associatedMessageValid: 0,
              associatedMessageSequence: 0,
            },
            b().u32(3).u32(78).str('slow tape'),
          )
        : s(
            {
              logType: 2,
              messageId: 77,
              entry: 'write failed',
              associatedMessageValid: 1,
              associatedMessageSequence: 42,
            },
            b().u32(2).u32(77).str('write failed').u32(1).u32(42),
          ),
      null,
    ),

    // FH
    gc(
      M.FH_ADD_FILE,
      V,
      s(
        {
          files: [
            {
              names: [NAME_UNIX, NAME_NT],
              stats: [STAT_FILE, STAT_DIR],
              node: 2n ** 40n + 1n,
              fhInfo: 2n ** 41n,
            },
            { names: [NAME_OTHER], stats: [], node: 5n, fhInfo: 0n },
          ],
        },
        b()
          .u32(2)
          .u32(2)
          .raw(nameUnixW())
          .raw(nameNtW())
          .u32(2)
          .raw(statFileW())
          .raw(statDirW())
          .hex('00000100 00000001')
          .hex('00000200 00000000')
          .u32(1)
          .raw(nameOtherW())
          .u32(0)
          .quad(5n)
          .quad(0n),
      ),
      null,
    ),
    gc(
      M.FH_ADD_DIR,
      V,
      s(
        {
          dirs: [
            { names: [NAME_UNIX], node: 2n ** 32n + 2n, parent: 2n ** 32n + 1n },
            { names: [NAME_NT, NAME_OTHER], node: 7n, parent: 2n },
          ],
        },
        b()
          .u32(2)
          .u32(1)
          .raw(nameUnixW())
          .hex('00000001 00000002')
          .hex('00000001 00000001')
          .u32(2)
          .raw(nameNtW())
          .raw(nameOtherW())
          .quad(7n)
          .quad(2n),
      ),
      null,
    ),
    gc(
      M.FH_ADD_NODE,
      V,
      s(
        {
          nodes: [
            { stats: [STAT_FILE], node: 2n ** 32n + 2n, fhInfo: 2n ** 45n },
            { stats: [STAT_DIR, STAT_FILE], node: 3n, fhInfo: 0xffffffffffffffffn },
          ],
        },
        b()
          .u32(2)
          .u32(1)
          .raw(statFileW())
          .hex('00000001 00000002')
          .hex('00002000 00000000')
          .u32(2)
          .raw(statDirW())
          .raw(statFileW())
          .quad(3n)
          .hex('ffffffff ffffffff'),
      ),
      null,
    ),

    // MOVER
    gc(
      M.MOVER_GET_STATE,
      V,
      EMPTY(),
      s(
        {
          error: 0,
          // v3 has no mode on the wire: it decodes as NOACTION (2), so the v3 sample uses 2.
          mode: v3 ? 2 : 1,
          state: 3,
          pauseReason: 5,
          haltReason: 0,
          recordSize: 10240,
          recordNum: 99,
          bytesMoved: 2n ** 40n + 10240n,
          seekPosition: 2n ** 33n,
          bytesLeftToRead: 2n ** 32n + 1n,
          windowOffset: 2n ** 34n,
          windowLength: 0xffffffffffffffffn,
          dataConnectionAddr: v3 ? ADDR_IPC : ADDR_V4_TCP,
        },
        b()
          .u32(0)
          .raw(v3 ? b() : b().u32(1))
          .u32(3)
          .u32(5)
          .u32(0)
          .u32(10240)
          .u32(99)
          .hex('00000100 00002800')
          .hex('00000002 00000000')
          .hex('00000001 00000001')
          .hex('00000004 00000000')
          .hex('ffffffff ffffffff')
          .raw(v3 ? addrIpcW() : addrV4TcpW()),
      ),
    ),
    gc(
      M.MOVER_LISTEN,
      V,
      s({ mode: 0, addrType: 1 }, b().u32(0).u32(1)),
      s({ error: 0, connectAddr: addrA }, b().u32(0).raw(addrAW())),
    ),
    gc(M.MOVER_CONTINUE, V, EMPTY(), errorReply(19)),
    gc(M.MOVER_ABORT, V, EMPTY(), errorReply(0)),
    gc(M.MOVER_STOP, V, EMPTY(), errorReply(19)),
    gc(
      M.MOVER_SET_WINDOW,
      V,
      s({ offset: 2n ** 40n, length: 2n ** 36n + 1n }, b().hex('00000100 00000000').hex('00000010 00000001')),
      errorReply(9),
    ),
    gc(
      M.MOVER_READ,
      V,
      s(
        { offset: 2n ** 32n + 4n, length: 0xffffffffffffffffn },
        b().hex('00000001 00000004').hex('ffffffff ffffffff'),
      ),
      errorReply(22), // NO_MEM
    ),
    gc(M.MOVER_CLOSE, V, EMPTY(), errorReply(19)),
    gc(M.MOVER_SET_RECORD_SIZE, V, s({ len: 65536 }, b().u32(65536)), errorReply(9)),
    gc(M.MOVER_CONNECT, V, s({ mode: 1, addr: addrB }, b().u32(1).raw(addrBW())), errorReply(23)),
  ];
}

/** The golden table: every message in every version that has it. */
export const GOLDEN_CASES: readonly GoldenCase[] = [...casesFor(4), ...casesFor(3)];

function partOf(def: MessageDef, reply: boolean): Part {
  if (reply) return 'reply';
  return def.kind === 'post' ? 'post' : 'request';
}

function bodyCase(
  title: string,
  def: MessageDef,
  version: NdmpVersion,
  part: Part,
  sample: Sample<unknown>,
): BodyCase {
  return {
    title,
    def,
    version,
    part,
    value: sample.value,
    bytes: sample.bytes,
    decoded: 'decoded' in sample ? sample.decoded : sample.value,
  };
}

/** Golden bodies, flattened: one per message × version × (request|post, reply). */
export const GOLDEN_BODIES: readonly BodyCase[] = GOLDEN_CASES.flatMap((c) => {
  const out = [
    bodyCase(
      `${c.def.name} v${c.version} ${partOf(c.def, false)}`,
      c.def,
      c.version,
      partOf(c.def, false),
      c.request,
    ),
  ];
  if (c.reply) out.push(bodyCase(`${c.def.name} v${c.version} reply`, c.def, c.version, 'reply', c.reply));
  return out;
});

// ---- v3 deltas and other translations: value -> bytes -> a (possibly different) decoded value ----

function delta<Req, Rep>(
  what: string,
  def: MessageDef<Req, Rep>,
  version: NdmpVersion,
  part: 'body' | 'reply',
  sample: Sample<Req | Rep>,
): BodyCase {
  const p = part === 'reply' ? 'reply' : partOf(def as MessageDef, false);
  return bodyCase(`${def.name} v${version} ${p}: ${what}`, def as MessageDef, version, p, sample);
}

/** v4-only error codes 24..30 and the v3 code each goes out as (structures.ts errorForVersion). */
export const V3_ERROR_MAP: ReadonlyArray<readonly [number, number]> = [
  [24, 20], // SEQUENCE_NUM -> UNDEFINED
  [25, 19], // READ_IN_PROGRESS -> ILLEGAL_STATE
  [26, 19], // PRECONDITION -> ILLEGAL_STATE
  [27, 1], // CLASS_NOT_SUPPORTED -> NOT_SUPPORTED
  [28, 1], // VERSION_NOT_SUPPORTED -> NOT_SUPPORTED
  [29, 9], // EXT_DUPL_CLASSES -> ILLEGAL_ARGS
  [30, 19], // EXT_DANDN_ILLEGAL -> ILLEGAL_STATE
];

/** v4 recovery status -> the v3 ndmp_error on the wire -> the status it decodes back to. */
export const V3_LOG_FILE_MAP: ReadonlyArray<readonly [number, number, number]> = [
  [0, 0, 0], // SUCCESSFUL <-> NO_ERR
  [1, 5, 1], // PERMISSION <-> PERMISSION_ERR
  [2, 14, 2], // NOT_FOUND <-> FILE_NOT_FOUND_ERR
  [3, 15, 3], // NO_DIRECTORY <-> BAD_FILE_ERR
  [4, 22, 4], // OUT_OF_MEMORY <-> NO_MEM_ERR
  [5, 7, 5], // IO_ERROR <-> IO_ERR
  [6, 20, 6], // UNDEFINED_ERROR <-> UNDEFINED_ERR
  [7, 20, 6], // FILE_PATH_EXISTS -> UNDEFINED_ERR -> UNDEFINED_ERROR (v3 has no such code)
];

const moverStateSample = (mode: number) => ({
  error: 0,
  mode,
  state: 2,
  pauseReason: 0,
  haltReason: 0,
  recordSize: 512,
  recordNum: 1,
  bytesMoved: 2n ** 32n,
  seekPosition: 0n,
  bytesLeftToRead: 0n,
  windowOffset: 0n,
  windowLength: 2n ** 63n,
  dataConnectionAddr: { addrType: 0 } as Addr,
});
const moverStateV3W = () =>
  b()
    .u32(0)
    .u32(2)
    .u32(0)
    .u32(0)
    .u32(512)
    .u32(1)
    .quad(2n ** 32n)
    .quad(0n)
    .quad(0n)
    .quad(0n)
    .hex('80000000 00000000')
    .u32(0);

const tapeStateSample = (error: number) => ({
  unsupported: 0x3f,
  error,
  flags: 0x28,
  fileNum: 0xffffffff,
  softErrors: 0xffffffff,
  blockSize: 0,
  blockno: 0xffffffff,
  totalSpace: 0xffffffffffffffffn,
  spaceRemain: 0xffffffffffffffffn,
});

export const DELTA_BODIES: readonly BodyCase[] = [
  ...V3_ERROR_MAP.map(([v4, v3]) =>
    delta(
      `v4-only error ${v4} goes out as v3 error ${v3}`,
      M.CONNECT_OPEN,
      3,
      'reply',
      s({ error: v4 }, b().u32(v3), { error: v3 }),
    ),
  ),
  ...V3_ERROR_MAP.map(([v4]) =>
    delta(`error ${v4} goes out unchanged`, M.CONNECT_OPEN, 4, 'reply', s({ error: v4 }, b().u32(v4))),
  ),
  delta(
    'v4-only error 25 in the second field goes out as ILLEGAL_STATE 19',
    M.TAPE_GET_STATE,
    3,
    'reply',
    s(
      tapeStateSample(25),
      b()
        .u32(0x3f)
        .u32(19)
        .u32(0x28)
        .u32(0xffffffff)
        .u32(0xffffffff)
        .u32(0)
        .u32(0xffffffff)
        .hex('ffffffff ffffffff ffffffff ffffffff')
        .u32(0),
      tapeStateSample(19),
    ),
  ),
  delta(
    'mode is not on the wire and decodes as NOACTION',
    M.MOVER_GET_STATE,
    3,
    'reply',
    s(moverStateSample(1), moverStateV3W(), moverStateSample(2)),
  ),
  delta(
    'a text reason is not on the v4 wire',
    M.NOTIFY_DATA_HALTED,
    4,
    'body',
    s({ reason: 2, textReason: 'aborted' }, b().u32(2), { reason: 2 }),
  ),
  delta(
    'a text reason is not on the v4 wire',
    M.NOTIFY_MOVER_HALTED,
    4,
    'body',
    s({ reason: 4, textReason: 'refused' }, b().u32(4), { reason: 4 }),
  ),
  delta(
    'association fields are not on the v3 wire and decode as 0',
    M.LOG_MESSAGE,
    3,
    'body',
    s(
      { logType: 2, messageId: 5, entry: 'oops', associatedMessageValid: 1, associatedMessageSequence: 42 },
      b().u32(2).u32(5).str('oops'),
      { logType: 2, messageId: 5, entry: 'oops', associatedMessageValid: 0, associatedMessageSequence: 0 },
    ),
  ),
  delta(
    'a v4 address list goes out as its first address without env',
    M.DATA_CONNECT,
    3,
    'body',
    s({ addr: ADDR_V4_TCP }, b().u32(1).u32(0x7f000001).u32(48347), {
      addr: { addrType: 1, tcpAddrs: [{ ipAddr: 0x7f000001, port: 48347, addrEnv: [] }] },
    }),
  ),
  delta(
    'FC arm 2 carries loop_id',
    M.MOVER_CONNECT,
    3,
    'body',
    s({ mode: 0, addr: { addrType: 2, loopId: 0xffffff } }, b().u32(0).u32(2).u32(0xffffff)),
  ),
  delta('reserved arm 2 is void in v4', M.DATA_CONNECT, 4, 'body', s({ addr: { addrType: 2 } }, b().u32(2))),
  delta(
    'reserved arm 2 drops a loop_id in v4',
    M.MOVER_CONNECT,
    4,
    'body',
    s({ mode: 1, addr: { addrType: 2, loopId: 9 } }, b().u32(1).u32(2), { mode: 1, addr: { addrType: 2 } }),
  ),
  delta('LOCAL address', M.DATA_CONNECT, 3, 'body', s({ addr: { addrType: 0 } }, b().u32(0))),
  delta('LOCAL address', M.DATA_CONNECT, 4, 'body', s({ addr: { addrType: 0 } }, b().u32(0))),
  delta(
    'BACKUP_FH_FILE alone goes out as BACKUP_FILE_HISTORY 0x1 and reads back as FH_FILE|FH_DIR',
    M.CONFIG_GET_BUTYPE_INFO,
    3,
    'reply',
    s(
      { error: 0, butypeInfo: [{ butypeName: 'dump', defaultEnv: [], attrs: 0x200 }] },
      b().u32(0).u32(1).str('dump').u32(0).u32(0x1),
      { error: 0, butypeInfo: [{ butypeName: 'dump', defaultEnv: [], attrs: 0x600 }] },
    ),
  ),
  delta(
    'RECOVER_FILEHIST goes out as 0x200, RECOVER_FH_FILE/DIR have no v3 bit',
    M.CONFIG_GET_BUTYPE_INFO,
    3,
    'reply',
    s(
      { error: 0, butypeInfo: [{ butypeName: 'tar', defaultEnv: [], attrs: 0x3880 }] },
      b().u32(0).u32(1).str('tar').u32(0).u32(0x280),
      { error: 0, butypeInfo: [{ butypeName: 'tar', defaultEnv: [], attrs: 0x880 }] },
    ),
  ),
  ...V3_LOG_FILE_MAP.map(([status, wire, back]) =>
    delta(
      `recovery status ${status} goes out as v3 error ${wire}`,
      M.LOG_FILE,
      3,
      'body',
      s({ name: '/a', recoveryStatus: status }, b().str('/a').u32(wire), {
        name: '/a',
        recoveryStatus: back,
      }),
    ),
  ),
];

// ---- bodies a peer may send that we never produce: bytes -> value only --------------------------

function decodeOnly(
  what: string,
  def: MessageDef,
  version: NdmpVersion,
  part: Part,
  bytes: Bytes,
  decoded: unknown,
): WireCase {
  return {
    title: `${def.name} v${version} ${part}: ${what}`,
    def,
    version,
    part,
    bytes: bytes.bytes(),
    decoded,
  };
}

export const DECODE_ONLY: readonly WireCase[] = [
  decodeOnly(
    'a non-zero partition is dropped',
    M.TAPE_GET_STATE as MessageDef,
    3,
    'reply',
    b()
      .u32(0x3f)
      .u32(0)
      .u32(0x28)
      .u32(0xffffffff)
      .u32(0xffffffff)
      .u32(0)
      .u32(0xffffffff)
      .hex('ffffffff ffffffff ffffffff ffffffff')
      .u32(7),
    tapeStateSample(0),
  ),
  decodeOnly(
    'a v3 error without a recovery meaning reads as UNDEFINED_ERROR',
    M.LOG_FILE as MessageDef,
    3,
    'post',
    b().str('/x').u32(9),
    { name: '/x', recoveryStatus: 6 },
  ),
  decodeOnly(
    'butype bits 0x1 and 0x200 read as FH_FILE|FH_DIR and RECOVER_FILEHIST, 0x2..0x100 kept',
    M.CONFIG_GET_BUTYPE_INFO as MessageDef,
    3,
    'reply',
    b().u32(0).u32(2).str('a').u32(0).u32(0x3ff).str('b').u32(0).u32(0x200),
    {
      error: 0,
      butypeInfo: [
        { butypeName: 'a', defaultEnv: [], attrs: 0xffe },
        { butypeName: 'b', defaultEnv: [], attrs: 0x800 },
      ],
    },
  ),
  decodeOnly(
    'the ndmjob capture: one TCP address 127.0.0.1:48347 (docs/protocol.md §7.6)',
    M.MOVER_LISTEN as MessageDef,
    4,
    'reply',
    b().hex('00000000 00000001 00000001 7f000001 0000bcdb 00000000'),
    { error: 0, connectAddr: { addrType: 1, tcpAddrs: [{ ipAddr: 0x7f000001, port: 48347, addrEnv: [] }] } },
  ),
];

/** Every body that must encode to golden bytes and decode back. */
export const ENCODE_CASES: readonly BodyCase[] = [...GOLDEN_BODIES, ...DELTA_BODIES];
/** Every body on the wire with the value it decodes to. */
export const WIRE_CASES: readonly WireCase[] = [...ENCODE_CASES, ...DECODE_ONLY];

// ---- helpers shared by the test files ---------------------------------------------------------

/** The compiled codec a case's body is decoded with. */
export function codecOf(c: Pick<WireCase, 'def' | 'version' | 'part'>): Codec<unknown> {
  const cm = compiled(c.version, c.def);
  const codec = c.part === 'reply' ? cm.reply : cm.body;
  if (!codec) throw new Error(`${c.def.name} v${c.version} has no ${c.part} body`);
  return codec;
}

export const TIME_STAMP = 0x6b05b6a1;

/** The header a case's message is sent with, and its 24 bytes built by hand. */
export function headerOf(c: Pick<WireCase, 'def' | 'part'>): { header: Header; bytes: Buffer } {
  const reply = c.part === 'reply';
  const header: Header = {
    sequence: reply ? 8 : 7,
    timeStamp: TIME_STAMP,
    messageType: reply ? 1 : 0,
    messageCode: c.def.code,
    replySequence: reply ? 7 : 0,
    errorCode: 0,
  };
  return {
    header,
    bytes: headerBytes(header.sequence, TIME_STAMP, reply ? 1 : 0, c.def.code, reply ? 7 : 0, 0),
  };
}

/** A case's record without the mark: header bytes then body bytes, both built by hand. */
export function recordOf(c: WireCase): Buffer {
  return Buffer.concat([headerOf(c).bytes, c.bytes]);
}
