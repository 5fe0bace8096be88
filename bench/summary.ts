// The last table of `npm run bench`: every target of issue 14 ("Targets"), one
// line each, with the figure this run measured and pass or FAIL, so one run
// answers the issue. A figure this run did not take (a corpus or --rss not
// run, a server that does not log a field yet) is "n/a", never a pass.

import type { DarFigures } from './dar.js';
import type { Figures } from './ndmpd-child.js';
import { historyCpuPer100k } from './ndmpd-child.js';
import type { RssResult } from './rss.js';

export interface CorpusOutcome {
  name: string;
  tarMs: number;
  /** NaN when the C ceiling could not be built. */
  ceilingMs: number;
  off: Figures | null;
  fast: Figures | null;
  slow: Figures | null;
}

interface Line {
  what: string;
  figure: string;
  target: string;
  pass: boolean | null;
}

const x = (r: number) => `${r.toFixed(2)}×`;

export class Summary {
  readonly corpora: CorpusOutcome[] = [];
  dar: DarFigures | null = null;
  rss: RssResult[] | null = null;

  constructor(readonly scale: number) {}

  private lines(): Line[] {
    const out: Line[] = [];
    const add = (what: string, value: number | null, target: string, ok: (v: number) => boolean, fmt = x) => {
      const have = value !== null && Number.isFinite(value);
      out.push({ what, figure: have ? fmt(value) : 'n/a', target, pass: have ? ok(value) : null });
    };
    const get = (name: string) => this.corpora.find((c) => c.name === name) ?? null;
    const ratio = (num: number | undefined, den: number | undefined) =>
      num === undefined || den === undefined ? null : num / den;
    const small = get('small');
    add(
      'small, history on, fast DMA: ×tar',
      ratio(small?.tarMs, small?.fast?.jobMs),
      '≥ 1.10×',
      (v) => v >= 1.1,
    );
    add('small, history off: ×tar', ratio(small?.tarMs, small?.off?.jobMs), '≥ 1.30×', (v) => v >= 1.3);
    add(
      'small, history off: ×C ceiling',
      ratio(small?.ceilingMs, small?.off?.jobMs),
      '≥ 0.90×',
      (v) => v >= 0.9,
    );
    for (const name of ['mixed', 'large']) {
      const c = get(name);
      add(`${name}, history off: ×tar`, ratio(c?.tarMs, c?.off?.jobMs), '≥ 1.50×', (v) => v >= 1.5);
      add(`${name}, history on, fast DMA: ×tar`, ratio(c?.tarMs, c?.fast?.jobMs), '≥ 1.50×', (v) => v >= 1.5);
    }
    const pct = (v: number) => `${v >= 0 ? '+' : ''}${(v * 100).toFixed(1)}%`;
    for (const name of ['small', 'mixed', 'large']) {
      const c = get(name);
      const cost = c?.fast && c.off ? c.fast.jobMs / c.off.jobMs - 1 : null;
      add(`${name}: history on (fast DMA) vs off, job time`, cost, '≤ +5%', (v) => v <= 0.05, pct);
    }
    for (const name of ['small', 'mixed', 'large']) {
      const c = get(name);
      const r = c?.slow && c.off ? c.slow.tapeMs / c.off.tapeMs : null;
      add(`${name}: slow DMA, tape's last write ×history off`, r, '≤ 1.05×', (v) => v <= 1.05);
    }
    const ms = (v: number) => `${v.toFixed(1)} ms`;
    for (const name of ['small', 'mixed', 'large']) {
      const c = get(name);
      add(
        `${name}: slow DMA, last write → NOTIFY_MOVER_HALTED`,
        c?.slow ? c.slow.haltLatencyMs : null,
        '≤ 100 ms',
        (v) => v <= 100,
        ms,
      );
    }
    const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
    for (const files of [1, 5]) {
      for (const speed of ['fast', 'slow'] as const) {
        const r = this.rss?.find((z) => z.millions === files && z.speed === speed);
        add(
          `peak RSS, ${files} M files${this.scale === 1 ? '' : ` (×${this.scale})`}, ${speed} DMA`,
          r?.peakRssKiB ?? null,
          '≤ 256 MiB',
          (v) => v <= 256 * 1024,
          mib,
        );
      }
    }
    return out;
  }

  print(): void {
    const lines = this.lines();
    console.log(
      `issue 14 targets, this run${this.scale === 1 ? '' : ` (--scale ${this.scale}: not the issue's corpora)`}:`,
    );
    const w = Math.max(...lines.map((l) => l.what.length)) + 2;
    console.log(`  ${'target'.padEnd(w)}${'figure'.padStart(12)}${'target'.padStart(12)}  verdict`);
    for (const l of lines) {
      const verdict = l.pass === null ? 'n/a' : l.pass ? 'pass' : 'FAIL';
      console.log(`  ${l.what.padEnd(w)}${l.figure.padStart(12)}${l.target.padStart(12)}  ${verdict}`);
    }
    const passed = lines.filter((l) => l.pass === true).length;
    const failed = lines.filter((l) => l.pass === false).length;
    console.log(`  ${passed} pass, ${failed} FAIL, ${lines.length - passed - failed} n/a`);
    // Figures the issue asks for without a target.
    const fast = this.corpora
      .map((c) => `${c.name} ${c.fast ? historyCpuPer100k(c.fast) : 'n/a'}`)
      .join(', ');
    console.log(`  history thread CPU (fast DMA): ${fast || 'n/a'}`);
    if (this.dar) {
      const d = this.dar;
      console.log(
        `  DAR of one file from a ${(d.streamBytes / 2 ** 30).toFixed(2)} GiB backup: ${d.dar.moverBytes.toLocaleString('en-US')} ` +
          `bytes read in ${(d.dar.ms / 1000).toFixed(3)} s; whole stream ${d.scan.moverBytes.toLocaleString('en-US')} bytes in ` +
          `${(d.scan.ms / 1000).toFixed(3)} s`,
      );
    } else {
      console.log('  DAR: n/a (the mixed corpus was not run, or --no-dar)');
    }
  }
}
