// Every document a comment cites must be in this repository, so a contributor
// who clones it alone can follow each reference (docs/contributing.md §11):
// no notes that lived outside it, every cited docs/ page exists, every cited
// section (`docs/protocol.md §7.2`) or quoted heading (`docs/design.md,
// "Layers"`) is there, and a cited draft section sits next to the
// docs/protocol.md section that names it.
//
// The names being hunted are assembled below from pieces, so this file does
// not cite them itself.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT } from '../helpers/ndmpd-process.js';

const SECTION_SIGN = '\u00a7';
/** A section number as cited: 7, 7.2, 3.5.2.4. */
const NUM = '[0-9]+(?:\\.[0-9]+)*';
const OUTSIDE_NOTES = ['PROTOCOL', 'DESIGN', 'STYLE', 'SMC', 'INTEROP'].map((n) => `${n}.md`);
const OUTSIDE_PATHS = ['../' + 'shared', '/work/' + 'shared'];

/** Where citations live: the code, its tests and tools, the CI script, README and docs. */
const SCAN_DIRS = ['src', 'test', 'bench', 'scripts', '.ci', 'docs'];
const SCAN_FILES = ['eslint.config.js', 'README.md'];
const SCAN_EXT = /\.(ts|js|mjs|c|h|sh|md|json|toml)$|^run$/;

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listFiles(p));
    else if (SCAN_EXT.test(name)) out.push(p);
  }
  return out;
}

function scannedFiles(): string[] {
  const files: string[] = [];
  for (const d of SCAN_DIRS) {
    const p = join(REPO_ROOT, d);
    if (existsSync(p)) files.push(...listFiles(p));
  }
  for (const f of SCAN_FILES) {
    const p = join(REPO_ROOT, f);
    if (existsSync(p)) files.push(p);
  }
  return files.sort();
}

/** Comment continuation lines joined, so a citation broken over two lines reads as one. */
function joinComments(text: string): string {
  return text.replace(/\n[ \t]*(?:\/\/|\*|#)[ \t]*/g, ' ');
}

interface Heading {
  level: number;
  /** "7.2" for "### 7.2 The mover", null for an unnumbered heading. */
  number: string | null;
  /** The heading's text without its number. */
  title: string;
  line: number;
}

interface Page {
  lines: string[];
  headings: Heading[];
}

const pages = new Map<string, Page | null>();

function page(name: string): Page | null {
  if (!pages.has(name)) {
    const p = join(REPO_ROOT, 'docs', name);
    if (!existsSync(p)) {
      pages.set(name, null);
    } else {
      const lines = readFileSync(p, 'utf8').split('\n');
      const headings: Heading[] = [];
      let fenced = false;
      lines.forEach((l, i) => {
        if (l.startsWith('```')) fenced = !fenced;
        const m = fenced ? null : /^(#{1,6})\s+(?:([0-9]+(?:\.[0-9]+)*)\.?\s+)?(.*)$/.exec(l);
        if (m) headings.push({ level: m[1].length, number: m[2] ?? null, title: m[3], line: i });
      });
      pages.set(name, { lines, headings });
    }
  }
  return pages.get(name) ?? null;
}

/** The text of section `num` of a page, its subsections included. */
function sectionText(p: Page, num: string): string | null {
  const i = p.headings.findIndex((h) => h.number === num);
  if (i < 0) return null;
  const h = p.headings[i];
  const next = p.headings.slice(i + 1).find((n) => n.level <= h.level);
  return p.lines.slice(h.line, next ? next.line : p.lines.length).join('\n');
}

/** True when `text` names draft section `num` (not merely a longer number starting with it). */
function namesDraftSection(text: string, num: string): boolean {
  const escaped = num.replace(/\./g, '\\.');
  return new RegExp(`${SECTION_SIGN}${escaped}(?![0-9]|\\.[0-9])`).test(text);
}

interface Finding {
  file: string;
  problem: string;
}

function check(): Finding[] {
  const findings: Finding[] = [];
  const citation = new RegExp(
    // docs/<page>.md, then optional sections "§7.2, §7.3", then an optional
    // attached draft section (", draft" and a number) or a quoted heading.
    `docs/([\\w.-]+\\.md)(?:#[\\w-]+)?` +
      `((?: ${SECTION_SIGN}${NUM})(?:, ${SECTION_SIGN}${NUM})*)?` +
      `(?:, draft ${SECTION_SIGN}(${NUM}))?` +
      `(?:, "([^"]+)")?`,
    'g',
  );
  const bareDraft = new RegExp(`\\b(?:draft|D4) ${SECTION_SIGN}${NUM}`, 'g');

  for (const path of scannedFiles()) {
    const file = relative(REPO_ROOT, path);
    const isDoc = file.endsWith('.md');
    const text = readFileSync(path, 'utf8');

    text.split('\n').forEach((line, i) => {
      for (const name of [...OUTSIDE_NOTES, ...OUTSIDE_PATHS]) {
        if (line.includes(name)) {
          findings.push({ file: `${file}:${i + 1}`, problem: `cites ${name}, outside the repository` });
        }
      }
    });

    const joined = joinComments(text);
    for (const m of joined.matchAll(citation)) {
      const [whole, name, sections, draft, heading] = m;
      const p = page(name);
      if (!p) {
        findings.push({ file, problem: `cites docs/${name}, which does not exist` });
        continue;
      }
      const nums = sections ? [...sections.matchAll(new RegExp(NUM, 'g'))].map((s) => s[0]) : [];
      for (const n of nums) {
        if (sectionText(p, n) === null) {
          findings.push({ file, problem: `"${whole}": docs/${name} has no section ${n}` });
        }
      }
      if (heading !== undefined && !p.headings.some((h) => h.title.startsWith(heading))) {
        findings.push({ file, problem: `"${whole}": docs/${name} has no heading "${heading}"` });
      }
      if (draft !== undefined) {
        const where = nums.length ? nums.map((n) => sectionText(p, n) ?? '') : [p.lines.join('\n')];
        if (!where.some((t) => namesDraftSection(t, draft))) {
          findings.push({
            file,
            problem: `"${whole}": docs/${name} does not name draft ${SECTION_SIGN}${draft} there`,
          });
        }
      }
    }

    // In code a draft section must come attached to the page section that
    // explains it; the docs pages themselves cite the draft freely.
    if (!isDoc) {
      const detached = joined.replace(citation, '');
      for (const m of detached.matchAll(bareDraft)) {
        findings.push({ file, problem: `"${m[0]}" without the docs/protocol.md section that covers it` });
      }
    }
  }
  return findings;
}

test('every document the sources cite is in the repository, with the cited section', () => {
  const findings = check();
  assert.deepEqual(
    findings.map((f) => `${f.file}: ${f.problem}`),
    [],
    'point each citation inside the repository: a docs/ page with its section number or quoted ' +
      'heading, a draft section next to the docs/protocol.md section that names it ' +
      '(docs/contributing.md §11); or add the missing section to the page',
  );
});

test('the checker sees what it must reject', () => {
  // A guard on the guard: the patterns above must catch the forms they hunt.
  const S = SECTION_SIGN;
  const sample = joinComments(`// (docs/protocol.md\n// ${S}3.5, draft ${S}3.4.7)`);
  assert.equal(sample, `// (docs/protocol.md ${S}3.5, draft ${S}3.4.7)`);
  const p = page('protocol.md');
  assert.ok(p, 'docs/protocol.md exists');
  assert.ok(sectionText(p, '7.2')?.includes('### 7.2'));
  assert.equal(sectionText(p, '99.9'), null);
  assert.equal(namesDraftSection(`(draft ${S}3.5.2.4)`, '3.5'), false);
  assert.equal(namesDraftSection(`(draft ${S}3.5.2.4)`, '3.5.2.4'), true);
});
