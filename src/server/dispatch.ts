// The one dispatch table: message code -> handler, with its pre-auth admission
// and state rule. Handlers never re-check what the table states.

import { configHandlers } from '../services/config.js';
import { connectHandlers } from '../services/connect.js';
import type { Handler } from '../services/session.js';
import { dataHandlers } from '../services/data/handlers.js';
import { scsiHandlers } from '../services/scsi/handlers.js';
import { moverHandlers, tapeHandlers } from '../services/tape/handlers.js';

export type DispatchTable = ReadonlyMap<number, Handler>;

export function buildDispatchTable(groups: ReadonlyArray<readonly Handler[]>): DispatchTable {
  const table = new Map<number, Handler>();
  for (const group of groups) {
    for (const h of group) {
      if (h.def.kind === 'post')
        throw new Error(`${h.def.name} is a post: the server sends it, never handles it`);
      if (table.has(h.def.code)) throw new Error(`two handlers for ${h.def.name}`);
      table.set(h.def.code, h);
    }
  }
  return table;
}

/** The services this server runs today. Later services add their groups here. */
export function defaultDispatchTable(): DispatchTable {
  return buildDispatchTable([
    connectHandlers,
    configHandlers,
    scsiHandlers,
    tapeHandlers,
    moverHandlers,
    dataHandlers,
  ]);
}
