// Reading a cataloged backup's stream back across its tapes (docs/dma.md):
// which tape part holds a stream byte, the mover window that part allows,
// mounting its tape (through the changer when the server has one), and what
// to do when the mover pauses at a part's end. Shared by `ndmp restore`
// (restore-job.ts) and `ndmp verify` (verify-job.ts).

import { INVALID_U64, M, MoverPauseReason, nameOf } from '../wire/index.js';
import type { TapeSegment } from '../catalog/types.js';
import type { TapeLoader } from './loader.js';
import type { JobLink } from './job.js';

export class SegmentReader {
  /** The part whose tape is mounted, or null before the first. */
  segment: TapeSegment | null = null;
  /** Tapes mounted, in order. */
  readonly tapesRead: string[] = [];

  constructor(
    private readonly segments: readonly TapeSegment[],
    private readonly link: JobLink,
    /** Gets each tape into a drive through the tape server's changer, when it has one. */
    private readonly loader: TapeLoader,
    private readonly say: (text: string) => void,
  ) {}

  /** The segment holding stream byte `pos`, or null past the end. */
  segmentAt(pos: bigint): TapeSegment | null {
    const segs = this.segments;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i]!;
      const start = BigInt(s.streamOffset);
      const last = i === segs.length - 1;
      if (pos >= start && (last || pos < start + BigInt(s.length))) return s;
    }
    return null;
  }

  window(s: TapeSegment): { offset: bigint; length: bigint } {
    const segs = this.segments;
    // The last tape's part ends in padding; an open window reads it to its filemark.
    const last = s.seq === segs[segs.length - 1]!.seq;
    return { offset: BigInt(s.streamOffset), length: last ? INVALID_U64 : BigInt(s.length) };
  }

  async mount(s: TapeSegment): Promise<void> {
    if (this.segment) {
      await this.link.tape.call(M.TAPE_CLOSE, {});
      await this.loader.unmount();
    }
    // Through the tape server's changer, when it has one: the tape the catalog names, checked in its drive.
    await this.loader.mount(s, (device) => this.link.openAt(device, 'read', s.tapeFile));
    this.segment = s;
    this.tapesRead.push(s.barcode ?? s.device);
    this.say(`reading tape ${s.barcode ?? s.device}, file ${s.tapeFile} (stream byte ${s.streamOffset})`);
  }

  /** The mover wants bytes this tape's part does not hold: mount the tape that does, or end the stream. */
  async onPause(reason: number, seekPosition: bigint): Promise<void> {
    const { tape } = this.link;
    const cur = this.segment!;
    let pos = seekPosition;
    if (reason !== MoverPauseReason.NDMP_MOVER_PAUSE_SEEK) {
      if (
        reason !== MoverPauseReason.NDMP_MOVER_PAUSE_EOF &&
        reason !== MoverPauseReason.NDMP_MOVER_PAUSE_EOM
      ) {
        throw new Error(`the mover paused ${nameOf(MoverPauseReason, reason)}`);
      }
      // End of this tape's part: the stream goes on where it ends.
      const end = BigInt(cur.streamOffset + cur.length);
      if (pos === INVALID_U64 || pos < end) pos = end;
    }
    const next = this.segmentAt(pos);
    if (!next || (next.seq === cur.seq && reason !== MoverPauseReason.NDMP_MOVER_PAUSE_SEEK)) {
      // Past the last tape: the stream ends here.
      await tape.call(M.MOVER_CLOSE, {});
      return;
    }
    await this.mount(next);
    await tape.call(M.MOVER_SET_WINDOW, this.window(next));
    await tape.call(M.MOVER_CONTINUE, {});
  }
}
