// Shell-style patterns for EXCLUDE (ndmjob `-e PATTERN`): `*`, `?` and
// bracket classes, matched against a file's name or, when the pattern holds
// a '/', against its path below the backup root. Node 20 has no glob matcher
// in its standard library (path.matchesGlob arrived in 22).
//
// Patterns and names are lossless strings (docs/names.md): a byte that is not
// UTF-8 is one UTF-16 unit (U+DC80..U+DCFF) that only that byte becomes, so a
// pattern matches the bytes it was sent as, and `?` takes such a byte as one
// character, as it does for a character in a UTF-8 name.

/** Compiles one pattern; a malformed class is taken literally, as shells do. */
export function compileGlob(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 2);
      if (close < 0) {
        re += '\\[';
        continue;
      }
      let body = pattern.slice(i + 1, close);
      if (body.startsWith('!')) body = `^${body.slice(1)}`;
      re += `[${body.replace(/\\/g, '\\\\')}]`;
      i = close;
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export class ExcludeList {
  private readonly byName: RegExp[] = [];
  private readonly byPath: RegExp[] = [];

  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      if (p === '') continue;
      const rel = p.replace(/^\/+/, '');
      if (rel.includes('/')) this.byPath.push(compileGlob(rel));
      else this.byName.push(compileGlob(rel));
    }
  }

  get empty(): boolean {
    return this.byName.length === 0 && this.byPath.length === 0;
  }

  /** `path` relative to the root ('a/b/c'), `name` its last component. */
  excludes(path: string, name: string): boolean {
    return this.byName.some((r) => r.test(name)) || this.byPath.some((r) => r.test(path));
  }
}
