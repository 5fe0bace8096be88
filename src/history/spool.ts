// A session's history that its DMA has not taken yet, on disk: encoded
// messages appended as they are made and read back in order as the DMA
// catches up, so memory stays bounded however far behind the DMA is. The
// file holds the messages back to back; their lengths stay in memory (a
// number per message of up to 1000 entries). It lives in the state dir (mode
// 0600: file names are as private as the files), is emptied whenever it has
// been read to the end, and removed when the session's history is done.

import fs from 'node:fs';
import { join } from 'node:path';

export class Spool {
  readonly path: string;
  private fd: number;
  private writeAt = 0;
  private readAt = 0;
  /** Lengths of the messages not yet taken, oldest first. */
  private readonly lengths: number[] = [];

  constructor(dir: string, name: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, name);
    this.fd = fs.openSync(
      this.path,
      fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW,
      0o600,
    );
  }

  /** Bytes waiting in the file. */
  get pending(): number {
    return this.writeAt - this.readAt;
  }

  /** The length of the next message, or -1 when the spool is empty. */
  peekLength(): number {
    return this.lengths[0] ?? -1;
  }

  append(message: ArrayBuffer): void {
    const bytes = new Uint8Array(message);
    for (let done = 0; done < bytes.length;)
      done += fs.writeSync(this.fd, bytes, done, bytes.length - done, this.writeAt + done);
    this.writeAt += bytes.length;
    this.lengths.push(bytes.length);
  }

  /** The next message (the spool must not be empty). */
  take(): ArrayBuffer {
    const n = this.lengths.shift()!;
    const out = new ArrayBuffer(n);
    const view = new Uint8Array(out);
    for (let got = 0; got < n;) {
      const r = fs.readSync(this.fd, view, got, n - got, this.readAt + got);
      if (r === 0) throw new Error(`history spool ${this.path} is shorter than it should be`);
      got += r;
    }
    this.readAt += n;
    if (this.lengths.length === 0) {
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
