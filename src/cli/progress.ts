// A job's progress for the person watching: a bar (bytes, files, rate, ETA)
// on a terminal; on anything else a plain line now and then, which reads well
// in a log file or a CI transcript.

import cliProgress from 'cli-progress';
import type { Progress } from '../dma/backup-job.js';
import { size } from './query-format.js';

export interface ProgressView {
  update(p: Progress): void;
  /** A message line that must not be torn by the bar. */
  line(text: string): void;
  stop(): void;
}

const PLAIN_EVERY_MS = 10_000;

export function progressView(title: string, stream: NodeJS.WriteStream = process.stderr): ProgressView {
  const started = Date.now();
  const rate = (bytes: number) => {
    const s = (Date.now() - started) / 1000;
    return s > 0 ? `${size(bytes / s)}/s` : '-';
  };
  if (!stream.isTTY) {
    // The first line after PLAIN_EVERY_MS: a short job needs none.
    let lastLine = started;
    return {
      update(p) {
        if (Date.now() - lastLine < PLAIN_EVERY_MS) return;
        lastLine = Date.now();
        const left = p.bytesRemaining === null ? '' : `, ${size(p.bytesRemaining)} left`;
        stream.write(
          `${title}: ${size(p.bytes)}, ${p.files} files, ${rate(p.bytes)}${left}, tape ${p.tape}\n`,
        );
      },
      line: (text) => void stream.write(`${text}\n`),
      stop: () => undefined,
    };
  }
  // The format is chosen at the first update: a percentage and ETA only when the server estimates what is left.
  let bar: cliProgress.SingleBar | null = null;
  const makeBar = (estimated: boolean) =>
    new cliProgress.SingleBar(
      {
        stream,
        format: estimated
          ? `${title} [{bar}] {percentage}% | {done} | {files} files | {rate} | ETA {eta_formatted} | {tape}`
          : `${title} {done} | {files} files | {rate} | {tape}`,
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 20,
      },
      cliProgress.Presets.shades_classic,
    );
  let started_ = false;
  return {
    update(p) {
      const total = p.bytesRemaining === null ? p.bytes : p.bytes + p.bytesRemaining;
      const payload = { done: size(p.bytes), files: p.files, rate: rate(p.bytes), tape: p.tape };
      if (!started_ || !bar) {
        started_ = true;
        bar ??= makeBar(p.bytesRemaining !== null);
        bar.start(total, p.bytes, payload);
      } else {
        bar.setTotal(total);
        bar.update(p.bytes, payload);
      }
    },
    line(text) {
      if (started_) bar?.stop();
      stream.write(`${text}\n`);
      if (started_) started_ = false;
    },
    stop() {
      if (started_) bar?.stop();
      started_ = false;
    },
  };
}
