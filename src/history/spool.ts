// A session's history that its DMA has not taken yet, on disk: encoded
// messages appended as they are made and read back in order as the DMA
// catches up, so memory stays bounded however far behind the DMA is. Each
// entry is a 4-byte length and the message. The file lives in the state dir
// (mode 0600: file names are as private as the files), is emptied whenever it
// has been read to the end, and removed when the session's history is done.

import fs from 'node:fs';
import { join } from 'node:path';

export class Spool {
  private fd: number;
  private writeAt = 0;
  private readAt = 0;
  private readonly len = Buffer.alloc(4);
  /** Bytes appended over the spool's life. */
  total = 0;

  constructor(dir: string, name: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, name);
    this.fd = fs.openSync(
      this.path,
      fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW,
      0o600,
    );
  }

  readonly path: string;

  /** Bytes waiting in the file. */
  get pending(): number {
    return this.writeAt - this.readAt;
  }

  append(message: ArrayBuffer): void {
    this.len.writeUInt32LE(message.byteLength, 0);
    writeAll(this.fd, this.len, this.writeAt);
    writeAll(this.fd, new Uint8Array(message), this.writeAt + 4);
    this.writeAt += 4 + message.byteLength;
    this.total += message.byteLength;
  }

  /** The length of the next message, or -1 when the spool is empty. */
  peekLength(): number {
    if (this.readAt === this.writeAt) return -1;
    fs.readSync(this.fd, this.len, 0, 4, this.readAt);
    return this.len.readUInt32LE(0);
  }

  /** The next message (the spool must not be empty). */
  take(): ArrayBuffer {
    const n = this.peekLength();
    const out = new ArrayBuffer(n);
    const view = new Uint8Array(out);
    for (let got = 0; got < n;) {
      const r = fs.readSync(this.fd, view, got, n - got, this.readAt + 4 + got);
      if (r === 0) throw new Error(`history spool ${this.path} is shorter than it should be`);
      got += r;
    }
    this.readAt += 4 + n;
    if (this.readAt === this.writeAt) {
      // Read to the end: start over, so the file does not grow for ever.
      fs.ftruncateSync(this.fd, 0);
      this.readAt = this.writeAt = 0;
    }
    return out;
  }

  close(): void {
    if (this.fd < 0) return;
    fs.closeSync(this.fd);
    this.fd = -1;
    fs.rmSync(this.path, { force: true });
  }
}

function writeAll(fd: number, bytes: Uint8Array, at: number): void {
  for (let done = 0; done < bytes.length;)
    done += fs.writeSync(fd, bytes, done, bytes.length - done, at + done);
}
