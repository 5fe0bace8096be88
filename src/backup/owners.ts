// uid → user name and gid → group name for pax `uname`/`gname`, read once from
// /etc/passwd and /etc/group (Node has no getpwuid). A name that cannot be
// found is left empty: tar then restores by number, as it does itself.

import { readFileSync } from 'node:fs';

function table(path: string): Map<number, string> {
  const m = new Map<number, string>();
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return m;
  }
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':');
    if (name && id !== undefined && /^\d+$/.test(id) && !m.has(Number(id))) m.set(Number(id), name);
  }
  return m;
}

export class OwnerNames {
  private readonly users = table('/etc/passwd');
  private readonly groups = table('/etc/group');

  user(uid: number): string {
    return this.users.get(uid) ?? '';
  }

  group(gid: number): string {
    return this.groups.get(gid) ?? '';
  }
}
