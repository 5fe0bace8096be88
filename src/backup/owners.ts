// uid → user name and gid → group name for pax `uname`/`gname`, read once from
// /etc/passwd and /etc/group (Node has no getpwuid). A name that cannot be
// found is left empty: tar then restores by number, as it does itself. The
// other way (userId, groupId) for ACLs named by user and group names
// (acl.ts).

import { readFileSync } from 'node:fs';

function table(path: string): { byId: Map<number, string>; byName: Map<string, number> } {
  const byId = new Map<number, string>();
  const byName = new Map<string, number>();
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return { byId, byName };
  }
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':');
    if (!name || id === undefined || !/^\d+$/.test(id)) continue;
    // The first line for an id or a name wins, as getpwuid/getpwnam take it.
    if (!byId.has(Number(id))) byId.set(Number(id), name);
    if (!byName.has(name)) byName.set(name, Number(id));
  }
  return { byId, byName };
}

export class OwnerNames {
  private readonly userTable = table('/etc/passwd');
  private readonly groupTable = table('/etc/group');
  private readonly users = this.userTable.byId;
  private readonly groups = this.groupTable.byId;

  userId(name: string): number | undefined {
    return this.userTable.byName.get(name);
  }

  groupId(name: string): number | undefined {
    return this.groupTable.byName.get(name);
  }

  user(uid: number): string {
    return this.users.get(uid) ?? '';
  }

  group(gid: number): string {
    return this.groups.get(gid) ?? '';
  }
}
