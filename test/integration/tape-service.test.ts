// The TAPE interface over real sockets with our client, for what ndmjob's
// suites do not reach: device names and the library, write protection, the
// early-warning EOM of TAPE_WRITE, MTIO OFF/TUR, v3 differences, the drives in
// CONFIG_GET_TAPE_INFO, and a session that ends with its tape open.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import { createTapeImage, readTapeImageInfo } from '../../src/devices/tape-image.js';
import {
  ErrorCode,
  INVALID_U32,
  M,
  NdmpError,
  TapeMtioOp,
  TapeOpenMode,
  TapeStateFlags,
} from '../../src/wire/index.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';

const RDWR = TapeOpenMode.NDMP_TAPE_RDWR_MODE;
const READ = TapeOpenMode.NDMP_TAPE_READ_MODE;

async function rejectsWith(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof NdmpError, String(e));
    assert.equal(e.ndmpErrorName, new NdmpError(code).ndmpErrorName);
    return true;
  });
}

describe('tape service', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let dir: string;
  let lib: Library;

  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-tapesvc-'));
    lib = Library.open(join(dir, 'library'), { drives: 2 });
    srv = await startServer({}, { library: lib });
  });
  after(async () => {
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('CONFIG_GET_TAPE_INFO lists the drives with serial numbers', async () => {
    if (lib.listTapes().length < 2) lib.createTapes({ count: 2, label: 'listed' });
    const c = await client(srv.port, 'md5');
    try {
      const { tapeInfo } = await c.call(M.CONFIG_GET_TAPE_INFO, {});
      assert.equal(tapeInfo.length, 2);
      assert.equal(tapeInfo[0]!.model, 'NDMPD-VTL');
      assert.deepEqual(
        tapeInfo[0]!.caplist.map((d) => d.device),
        ['drive0', 'drive1'],
      );
      for (const d of tapeInfo[0]!.caplist) {
        assert.match(d.capability.find((p) => p.name === 'SERIAL_NUMBER')!.value, /^VTL/);
      }
      // The tapes themselves, each a device TAPE_OPEN accepts, with what a DMA needs to pick one.
      const tapes = tapeInfo[1]!;
      assert.equal(tapes.model, 'NDMPD-VTL-TAPE');
      assert.ok(tapes.caplist.length >= 2);
      for (const t of tapes.caplist) {
        const env = Object.fromEntries(t.capability.map((p) => [p.name, p.value]));
        assert.equal(t.device, `tapes/${env.BARCODE}`);
        assert.match(env.CAPACITY!, /^\d+$/);
        assert.match(env.BLANK!, /^[yn]$/);
        assert.match(env.WRITE_PROTECTED!, /^[yn]$/);
      }
    } finally {
      c.destroy();
    }
  });

  test('device names: drives, images inside the library, nothing else', async () => {
    const [barcode] = lib.createTapes({ count: 1, label: 'names' });
    const c = await client(srv.port, 'md5');
    try {
      // An empty drive.
      await rejectsWith(
        c.call(M.TAPE_OPEN, { device: 'drive1', mode: READ }),
        ErrorCode.NDMP_NO_TAPE_LOADED_ERR,
      );
      // Outside the library, by path, by `..`, by a symlink that leads out.
      const outside = join(dir, 'outside.tape');
      writeFileSync(outside, '');
      symlinkSync(outside, join(lib.dir, 'tapes', 'escape'));
      for (const device of [
        outside,
        join(lib.dir, '..', 'outside.tape'),
        join(lib.dir, 'tapes', 'escape'),
        '/etc/passwd',
        'bogus',
      ]) {
        await rejectsWith(c.call(M.TAPE_OPEN, { device, mode: READ }), ErrorCode.NDMP_NO_DEVICE_ERR);
      }
      // A drive with a tape, then the same tape by path from another session: busy.
      lib.load(barcode!, 'drive0');
      await c.call(M.TAPE_OPEN, { device: 'drive0', mode: RDWR });
      const other = await client(srv.port, 'md5');
      try {
        await rejectsWith(
          other.call(M.TAPE_OPEN, { device: lib.tapePath(barcode!), mode: READ }),
          ErrorCode.NDMP_DEVICE_BUSY_ERR,
        );
        await rejectsWith(
          other.call(M.TAPE_OPEN, { device: 'drive0', mode: READ }),
          ErrorCode.NDMP_DEVICE_BUSY_ERR,
        );
      } finally {
        other.destroy();
      }
      await c.call(M.TAPE_CLOSE, {});
      lib.unload('drive0');
    } finally {
      c.destroy();
    }
  });

  test('write protection: RDWR open refused, READ open shows WR_PROT and refuses writes', async () => {
    const path = join(lib.dir, 'tapes', 'WP0001');
    createTapeImage(path, { writeProtected: true });
    const c = await client(srv.port, 'md5');
    try {
      await rejectsWith(c.call(M.TAPE_OPEN, { device: path, mode: RDWR }), ErrorCode.NDMP_WRITE_PROTECT_ERR);
      await c.call(M.TAPE_OPEN, { device: path, mode: READ });
      const st = await c.call(M.TAPE_GET_STATE, {});
      assert.ok(st.flags & TapeStateFlags.WR_PROT);
      assert.equal(st.unsupported, 0);
      await rejectsWith(c.call(M.TAPE_WRITE, { dataOut: Buffer.alloc(10) }), ErrorCode.NDMP_PERMISSION_ERR);
      await rejectsWith(
        c.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_EOF, count: 1 }),
        ErrorCode.NDMP_PERMISSION_ERR,
      );
      await c.call(M.TAPE_CLOSE, {});
    } finally {
      c.destroy();
    }
  });

  test('TAPE_WRITE in the early-warning zone is written and answered EOM with its count; past the end nothing is', async () => {
    const path = join(lib.dir, 'tapes', 'SMALL1');
    createTapeImage(path, { capacity: 100_000n, earlyWarning: 30_000n });
    const c = await client(srv.port, 'md5');
    try {
      await c.call(M.TAPE_OPEN, { device: path, mode: RDWR });
      const rec = Buffer.alloc(20_000, 1);
      for (let i = 0; i < 3; i++) assert.equal((await c.call(M.TAPE_WRITE, { dataOut: rec })).count, 20_000);
      // 80,000 > 70,000: inside the zone.
      const r = await c.request(M.TAPE_WRITE, { dataOut: rec });
      assert.deepEqual(r, { error: ErrorCode.NDMP_EOM_ERR, count: 20_000 });
      assert.deepEqual(await c.request(M.TAPE_WRITE, { dataOut: rec }), {
        error: ErrorCode.NDMP_EOM_ERR,
        count: 20_000,
      });
      // 120,000 > capacity: refused, nothing written.
      assert.deepEqual(await c.request(M.TAPE_WRITE, { dataOut: rec }), {
        error: ErrorCode.NDMP_EOM_ERR,
        count: 0,
      });
      const st = await c.call(M.TAPE_GET_STATE, {});
      assert.equal(st.blockno, 5);
      assert.equal(st.totalSpace, 100_000n);
      assert.equal(st.spaceRemain, 0n);
      await c.call(M.TAPE_CLOSE, {});
      // Closing after writes ended the tape file with a filemark.
      const info = readTapeImageInfo(path);
      assert.equal(info.records, 5);
      assert.equal(info.filemarks, 1);
    } finally {
      c.destroy();
    }
  });

  test('MTIO OFF takes the tape offline until it is closed; TUR is v4 only', async () => {
    const path = join(lib.dir, 'tapes', 'OFF001');
    writeFileSync(path, ''); // a blank tape by the empty-file convention
    const c4 = await client(srv.port, 'md5', 4);
    try {
      await c4.call(M.TAPE_OPEN, { device: path, mode: TapeOpenMode.NDMP_TAPE_RAW_MODE });
      assert.deepEqual(await c4.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_TUR, count: 1 }), {
        error: 0,
        residCount: 0,
      });
      await c4.call(M.TAPE_WRITE, { dataOut: Buffer.from('label') });
      await c4.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_OFF, count: 1 });
      await rejectsWith(c4.call(M.TAPE_READ, { count: 10 }), ErrorCode.NDMP_NO_TAPE_LOADED_ERR);
      const st = await c4.call(M.TAPE_GET_STATE, {});
      assert.ok(st.flags & TapeStateFlags.UNLOAD);
      await c4.call(M.TAPE_CLOSE, {});
    } finally {
      c4.destroy();
    }
    const c3 = await client(srv.port, 'md5', 3);
    try {
      await c3.call(M.TAPE_OPEN, { device: path, mode: READ });
      await rejectsWith(
        c3.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_TUR, count: 1 }),
        ErrorCode.NDMP_ILLEGAL_ARGS_ERR,
      );
      // v3: a read at a filemark reports EOF and crosses it; end of data is EOF too.
      assert.equal((await c3.call(M.TAPE_READ, { count: 100 })).dataIn.toString(), 'label');
      await rejectsWith(c3.call(M.TAPE_READ, { count: 100 }), ErrorCode.NDMP_EOF_ERR);
      const st = await c3.call(M.TAPE_GET_STATE, {});
      assert.deepEqual([st.fileNum, st.blockno], [1, 0]);
      await rejectsWith(c3.call(M.TAPE_READ, { count: 100 }), ErrorCode.NDMP_EOF_ERR);
      await c3.call(M.TAPE_CLOSE, {});
    } finally {
      c3.destroy();
    }
  });

  test('v4 reads: a filemark is reported without being crossed; oversize counts are refused', async () => {
    const path = join(lib.dir, 'tapes', 'RD0001');
    createTapeImage(path);
    const c = await client(srv.port, 'md5', 4);
    try {
      await c.call(M.TAPE_OPEN, { device: path, mode: RDWR });
      await c.call(M.TAPE_WRITE, { dataOut: Buffer.alloc(1024, 2) });
      await c.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_EOF, count: 1 });
      await c.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_REW, count: 1 });
      // A short read returns what fits and drops the rest of the record.
      assert.equal((await c.call(M.TAPE_READ, { count: 100 })).dataIn.length, 100);
      await rejectsWith(c.call(M.TAPE_READ, { count: 100 }), ErrorCode.NDMP_EOF_ERR);
      await rejectsWith(c.call(M.TAPE_READ, { count: 100 }), ErrorCode.NDMP_EOF_ERR);
      const st = await c.call(M.TAPE_GET_STATE, {});
      assert.deepEqual([st.fileNum, st.blockno], [0, INVALID_U32]);
      assert.deepEqual(await c.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_FSF, count: 5 }), {
        error: 0,
        residCount: 4,
      });
      await rejectsWith(c.call(M.TAPE_READ, { count: 100 }), ErrorCode.NDMP_EOM_ERR);
      await rejectsWith(c.call(M.TAPE_READ, { count: 0x80000000 }), ErrorCode.NDMP_ILLEGAL_ARGS_ERR);
      await rejectsWith(c.call(M.TAPE_MTIO, { tapeOp: 99, count: 1 }), ErrorCode.NDMP_ILLEGAL_ARGS_ERR);
      await rejectsWith(c.call(M.TAPE_OPEN, { device: path, mode: READ }), ErrorCode.NDMP_DEVICE_OPENED_ERR);
      // The state rule comes before the arguments: a second open is refused whatever its mode.
      await rejectsWith(c.call(M.TAPE_OPEN, { device: path, mode: 7 }), ErrorCode.NDMP_DEVICE_OPENED_ERR);
      await c.call(M.TAPE_CLOSE, {});
      await rejectsWith(c.call(M.TAPE_OPEN, { device: path, mode: 7 }), ErrorCode.NDMP_ILLEGAL_ARGS_ERR);
    } finally {
      c.destroy();
    }
  });

  test('a session that ends with its tape open: the tape file is closed with a filemark and released', async () => {
    const path = join(lib.dir, 'tapes', 'END001');
    createTapeImage(path);
    const c = await client(srv.port, 'md5');
    await c.call(M.TAPE_OPEN, { device: path, mode: RDWR });
    await c.call(M.TAPE_WRITE, { dataOut: Buffer.alloc(512, 3) });
    c.destroy();
    const other = await client(srv.port, 'md5');
    try {
      const deadline = Date.now() + 5000;
      for (;;) {
        try {
          await other.call(M.TAPE_OPEN, { device: path, mode: READ });
          break;
        } catch (e) {
          if (
            !(e instanceof NdmpError) ||
            e.ndmpError !== ErrorCode.NDMP_DEVICE_BUSY_ERR ||
            Date.now() > deadline
          )
            throw e;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      assert.equal((await other.call(M.TAPE_READ, { count: 1024 })).dataIn.length, 512);
      await rejectsWith(other.call(M.TAPE_READ, { count: 1024 }), ErrorCode.NDMP_EOF_ERR);
      await other.call(M.TAPE_CLOSE, {});
    } finally {
      other.destroy();
    }
  });

  test('an index reached through a symlink is refused; MTIO EOF counts are bounded', async () => {
    const path = join(lib.dir, 'tapes', 'LINKED');
    writeFileSync(path, '');
    const elsewhere = join(dir, 'elsewhere.idx');
    createTapeImage(join(dir, 'elsewhere'));
    symlinkSync(join(dir, 'elsewhere.idx'), `${path}.idx`);
    const c = await client(srv.port, 'md5');
    try {
      await rejectsWith(c.call(M.TAPE_OPEN, { device: path, mode: RDWR }), ErrorCode.NDMP_IO_ERR);
      assert.equal(readTapeImageInfo(join(dir, 'elsewhere')).records, 0, elsewhere);
      const ok = join(lib.dir, 'tapes', 'MARKS');
      createTapeImage(ok);
      await c.call(M.TAPE_OPEN, { device: ok, mode: RDWR });
      await rejectsWith(
        c.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_EOF, count: 0xffffffff }),
        ErrorCode.NDMP_ILLEGAL_ARGS_ERR,
      );
      await c.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_EOF, count: 3 });
      assert.equal((await c.call(M.TAPE_GET_STATE, {})).fileNum, 3);
      await c.call(M.TAPE_CLOSE, {});
    } finally {
      c.destroy();
    }
  });

  test('labelling a blank tape gives it the library capacity', () => {
    const small = Library.open(join(dir, 'small-lib'), { capacity: 1n << 30n });
    const path = join(small.dir, 'tapes', 'BLANK1');
    writeFileSync(path, '');
    small.label('BLANK1', 'monday');
    const info = readTapeImageInfo(path);
    assert.equal(info.label, 'monday');
    assert.equal(info.capacity, 1n << 30n);
  });
});

describe('server shutdown', { timeout: 30_000 }, () => {
  test('stopping the server closes open tapes (with their filemark) before it returns', async () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-shutdown-'));
    const lib = Library.open(join(dir, 'library'));
    const srv = await startServer({}, { library: lib });
    const path = join(lib.dir, 'tapes', 'STOP01');
    createTapeImage(path);
    const c = await client(srv.port, 'md5');
    try {
      await c.call(M.TAPE_OPEN, { device: path, mode: RDWR });
      await c.call(M.TAPE_WRITE, { dataOut: Buffer.alloc(4096, 1) });
      await srv.server.close();
      const info = readTapeImageInfo(path);
      assert.deepEqual([info.records, info.filemarks], [1, 1]);
    } finally {
      c.destroy();
      await srv.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
