// Shell patterns (`*`, `?`, `[...]`, `[!...]`, backslash escapes), parsed
// once and written out in each store's own syntax: SQLite's GLOB and
// PostgreSQL's regular expressions. Neither store's syntax is the shell's
// (GLOB negates with `^` and has no escape; a regex has a dozen
// metacharacters), so passing the user's text through would match the
// wrong names for '%', '_', '.', '\' and friends.
//
// Semantics are fnmatch(3) without flags: case-sensitive, `*` and `?` also
// match '/', a leading '.' is not special, `?` is one character (a Unicode
// code point, as both stores count them), an unclosed `[` is a literal.
//
// Patterns match the printed form the catalog stores (docs/names.md), and a
// printed name pasted into a pattern matches itself: `\\` and `\xHH` in a
// pattern are taken as the printed text they are (a backslash, a byte of the
// name), not as escapes of the pattern; a backslash before anything else
// makes that character literal, as in the shell. An escaped byte is four
// characters of the printed form, so `?` is not one; `*` matches it.

import { CatalogError } from './errors.js';

/** A bracket expression's members: code point ranges, lo <= hi (a single character is lo = hi). */
interface Range {
  lo: number;
  hi: number;
}

export type Token =
  | { kind: 'any' }
  | { kind: 'one' }
  | { kind: 'lit'; cp: number }
  | { kind: 'set'; negated: boolean; ranges: Range[] };

export interface ParsedPattern {
  /** Match the whole path rather than the name: the pattern holds a '/'. */
  path: boolean;
  /** Nothing can match (a bracket expression with no members, like `[z-a]`). */
  never: boolean;
  tokens: Token[];
  /**
   * Where each token starts in the pattern, in code points (the tokens of one
   * escape share its start): the DMA cuts a path pattern at a token to match
   * what lies below a backup's source (src/dma/server-paths.ts).
   */
  starts: number[];
}

const BACKSLASH = 0x5c;
const cp = (s: string): number => s.codePointAt(0)!;

export function parsePattern(pattern: string): ParsedPattern {
  const chars = Array.from(pattern, cp);
  const tokens: Token[] = [];
  const starts: number[] = [];
  let never = false;
  // The tokens the last turn of the loop added start where that turn started.
  let at = 0;
  for (let i = 0; i < chars.length; i++) {
    while (starts.length < tokens.length) starts.push(at);
    at = i;
    const c = chars[i]!;
    if (c === cp('*')) {
      // `**` is `*`; one token keeps the translated pattern small.
      if (tokens.at(-1)?.kind !== 'any') tokens.push({ kind: 'any' });
    } else if (c === cp('?')) tokens.push({ kind: 'one' });
    else if (c === BACKSLASH && chars[i + 1] === BACKSLASH) {
      // The printed form's backslash: `\\` stands for itself.
      tokens.push({ kind: 'lit', cp: BACKSLASH }, { kind: 'lit', cp: BACKSLASH });
      i++;
    } else if (c === BACKSLASH && chars[i + 1] === cp('x') && isHex(chars[i + 2]) && isHex(chars[i + 3])) {
      // The printed form's byte: `\xHH`, its hex in lower case as escapeName writes it.
      for (const h of [BACKSLASH, cp('x'), lower(chars[i + 2]!), lower(chars[i + 3]!)]) {
        tokens.push({ kind: 'lit', cp: h });
      }
      i += 3;
    } else if (c === BACKSLASH && i + 1 < chars.length) tokens.push({ kind: 'lit', cp: chars[++i]! });
    else if (c === cp('[')) {
      const set = parseBracket(chars, i + 1);
      if (!set) tokens.push({ kind: 'lit', cp: c });
      else {
        i = set.end;
        if (set.ranges.length === 0) {
          // `[z-a]` matches nothing; `[!z-a]` any one character.
          if (set.negated) tokens.push({ kind: 'one' });
          else never = true;
        } else tokens.push({ kind: 'set', negated: set.negated, ranges: set.ranges });
      }
    } else tokens.push({ kind: 'lit', cp: c });
  }
  while (starts.length < tokens.length) starts.push(at);
  return { path: pattern.includes('/'), never, tokens, starts };
}

function isHex(c: number | undefined): boolean {
  return c !== undefined && /^[0-9a-fA-F]$/.test(String.fromCodePoint(c));
}

function lower(c: number): number {
  return c >= 0x41 && c <= 0x46 ? c + 0x20 : c;
}

/** The bracket expression starting after '[' at `start`, or null when it is not closed (then '[' is a literal). */
function parseBracket(
  chars: number[],
  start: number,
): { negated: boolean; ranges: Range[]; end: number } | null {
  let i = start;
  const negated = chars[i] === cp('!') || chars[i] === cp('^');
  if (negated) i++;
  const ranges: Range[] = [];
  // A ']' first is a member, not the end.
  let first = true;
  const member = (): number | null => {
    const c = chars[i];
    if (c === undefined) return null;
    if (c === BACKSLASH && i + 1 < chars.length) {
      i += 2;
      return chars[i - 1]!;
    }
    i++;
    return c;
  };
  for (;;) {
    const c = chars[i];
    if (c === undefined) return null;
    if (c === cp(']') && !first) return { negated, ranges, end: i };
    if (c === cp('[') && (chars[i + 1] === cp(':') || chars[i + 1] === cp('=') || chars[i + 1] === cp('.'))) {
      const close = String.fromCodePoint(chars[i + 1]!) + ']';
      const rest = String.fromCodePoint(...chars.slice(i));
      if (rest.includes(close, 2)) {
        throw new CatalogError(
          `pattern: character classes like ${rest.slice(0, rest.indexOf(close, 2) + 2)} are not supported`,
        );
      }
    }
    first = false;
    const lo = member()!;
    if (chars[i] === cp('-') && chars[i + 1] !== undefined && chars[i + 1] !== cp(']')) {
      i++;
      const hi = member()!;
      // An empty range matches nothing, as in fnmatch; PostgreSQL would reject it.
      if (lo <= hi) ranges.push({ lo, hi });
    } else ranges.push({ lo, hi: lo });
  }
}

// ---- SQLite GLOB -------------------------------------------------------------
//
// GLOB has `*`, `?` and `[...]` with `^` for negation, and no escape: a
// metacharacter is made literal by putting it alone in brackets. Inside
// brackets ']' is a member only first, '-' only first or last (or right
// after a range), '^' only when not first.

function globChar(c: number): string {
  const s = String.fromCodePoint(c);
  return s === '*' || s === '?' || s === '[' ? `[${s}]` : s;
}

function globSet(negated: boolean, ranges: Range[]): string {
  const RB = cp(']');
  const DASH = cp('-');
  const CARET = cp('^');
  const specials = new Set<number>();
  const spans: Range[] = [];
  // Split ranges so that no range starts or ends on a character GLOB treats specially in brackets.
  const work = [...ranges];
  while (work.length > 0) {
    const r = work.pop()!;
    const edge = [RB, DASH, CARET].find((s) => r.lo === s || r.hi === s);
    if (r.lo === r.hi) {
      if (edge !== undefined) specials.add(r.lo);
      else spans.push(r);
    } else if (r.lo === edge) {
      specials.add(edge);
      work.push({ lo: edge + 1, hi: r.hi });
    } else if (r.hi === edge) {
      specials.add(edge);
      work.push({ lo: r.lo, hi: edge - 1 });
    } else spans.push(r);
  }
  const body = [
    specials.has(RB) ? ']' : '',
    ...spans.map((r) =>
      r.lo === r.hi
        ? String.fromCodePoint(r.lo)
        : `${String.fromCodePoint(r.lo)}-${String.fromCodePoint(r.hi)}`,
    ),
    specials.has(CARET) ? '^' : '',
    specials.has(DASH) ? '-' : '',
  ].join('');
  if (!negated && body.startsWith('^')) {
    // Only '^' and perhaps '-': a leading '^' would negate.
    if (body === '^') return '^';
    return '[-^]';
  }
  return `[${negated ? '^' : ''}${body}]`;
}

export function toSqliteGlob(p: ParsedPattern): string {
  return p.tokens
    .map((t) => {
      switch (t.kind) {
        case 'any':
          return '*';
        case 'one':
          return '?';
        case 'lit':
          return globChar(t.cp);
        case 'set':
          return globSet(t.negated, t.ranges);
      }
    })
    .join('');
}

// ---- PostgreSQL regular expression ---------------------------------------------
//
// Every ASCII character that is not a letter or digit is written as a \u
// escape, inside brackets too: one rule with no metacharacter left to get
// wrong. Other characters stand for themselves.

function reChar(c: number): string {
  const isAlnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  if (c >= 0x80 || isAlnum) return String.fromCodePoint(c);
  return `\\u${c.toString(16).padStart(4, '0')}`;
}

export function toPostgresRegex(p: ParsedPattern): string {
  const body = p.tokens
    .map((t) => {
      switch (t.kind) {
        case 'any':
          // '.' matches newlines too: PostgreSQL's default is not newline-sensitive.
          return '.*';
        case 'one':
          return '.';
        case 'lit':
          return reChar(t.cp);
        case 'set':
          return `[${t.negated ? '^' : ''}${t.ranges.map((r) => (r.lo === r.hi ? reChar(r.lo) : `${reChar(r.lo)}-${reChar(r.hi)}`)).join('')}]`;
      }
    })
    .join('');
  return `^${body}$`;
}
