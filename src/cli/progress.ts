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

/**
 * How often the plain progress line comes (not on a terminal): every 10 s,
 * or every $NDMP_PROGRESS_INTERVAL seconds (a log that wants more or fewer).
 */
export function plainEveryMs(): number {
  const s = Number(process.env.NDMP_PROGRESS_INTERVAL);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 10_000;
}

/** How often a job asks the server how far it is: each second, or as often as the plain line comes. */
export function pollEveryMs(): number {
  return Math.min(1000, plainEveryMs());
}

/** A duration for people: 45 s, 12 min, 2 h 5 min. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/**
 * The whole job's size and what is left, from the server's estimates (or a
 * size known beforehand), as the progress lines show them; null parts when
 * nothing is known. The ETA is the server's when it gives one, else the
 * bytes left at the rate so far.
 */
export function outlook(
  p: Progress,
  elapsedS: number,
): { total: number | null; percent: number | null; etaS: number | null } {
  const total =
    p.bytesRemaining !== null
      ? p.bytes + p.bytesRemaining
      : p.bytesTotal
        ? Math.max(p.bytesTotal, p.bytes)
        : null;
  if (total === null || total <= 0) return { total: null, percent: null, etaS: null };
  const percent = Math.min(100, (100 * p.bytes) / total);
  const rate = elapsedS > 0 ? p.bytes / elapsedS : 0;
  const etaS = p.secondsRemaining ?? (rate > 0 ? (total - p.bytes) / rate : null);
  return { total, percent, etaS };
}

export function progressView(title: string, stream: NodeJS.WriteStream = process.stderr): ProgressView {
  const started = Date.now();
  const rate = (bytes: number) => {
    const s = (Date.now() - started) / 1000;
    return s > 0 ? `${size(bytes / s)}/s` : '-';
  };
  if (!stream.isTTY) {
    // The first line after plainEveryMs(): a short job needs none.
    const every = plainEveryMs();
    let lastLine = started;
    return {
      update(p) {
        if (Date.now() - lastLine < every) return;
        lastLine = Date.now();
        const o = outlook(p, (Date.now() - started) / 1000);
        const of = o.total === null ? '' : ` of ~${size(o.total)} (${o.percent!.toFixed(0)}%)`;
        const eta = o.etaS === null ? '' : `, ETA ${duration(o.etaS)}`;
        stream.write(
          `${title}: ${size(p.bytes)}${of}, ${p.files} files, ${rate(p.bytes)}${eta}${p.tape ? `, tape ${p.tape}` : ''}\n`,
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
          ? `${title} [{bar}] {percentage}% | {done} | {files} files | {rate} | ETA {eta} | {tape}`
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
      const o = outlook(p, (Date.now() - started) / 1000);
      const total = o.total ?? p.bytes;
      const payload = {
        done: size(p.bytes),
        files: p.files,
        rate: rate(p.bytes),
        tape: p.tape,
        eta: o.etaS === null ? '-' : duration(o.etaS),
      };
      if (!started_ || !bar) {
        started_ = true;
        bar ??= makeBar(o.total !== null);
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
