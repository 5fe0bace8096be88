// Which state allows which request, for the services whose state lives on a
// worker thread (data, tape, mover). Each service declares one StateTable;
// the dispatcher checks it on the main thread before the handler runs, and
// the worker checks the very same table again when it executes the request,
// because its state may have moved on in between (a backup that halts by
// itself). Neither side has a rule of its own.
//
// The worker's state is a handful of Int32 words in a SharedArrayBuffer: the
// worker stores each transition with Atomics.store, the main thread reads
// them with Atomics.load. No message carries state.

import type { MessageDef, NdmpError, NdmpVersion } from '../wire/index.js';
import { refusalIn } from './session.js';
import type { Handler, Session, StateRule } from './session.js';

/** One request's precondition: the states that allow it; any other is refused with `error`. */
export type RequestRule = Pick<StateRule, 'allow' | 'allowV3' | 'error'>;

export interface StateTable {
  /** How messages name the state: "data state", "mover state", "tape state". */
  readonly subject: string;
  /** The words' layout: how many Int32 words the worker publishes, and their values at start. */
  readonly initial: readonly number[];
  /** The name of the state the words hold (the names `allow` lists). */
  readonly stateName: (words: Int32Array) => string;
  /** Every state name, for documentation and for tests that walk the table. */
  readonly states: readonly string[];
  /** Why a state refuses requests, when the name alone does not say it ("no tape is open"). */
  readonly explain?: (state: string, def: MessageDef) => string | undefined;
  /** Request code → its rule. A request not listed is allowed in every state. */
  readonly rules: ReadonlyMap<number, { readonly def: MessageDef; readonly rule: RequestRule }>;
}

/** Builds a table's rule map from [message, rule] pairs (one rule per message). */
export function rulesOf(
  pairs: ReadonlyArray<readonly [MessageDef, RequestRule]>,
): ReadonlyMap<number, { readonly def: MessageDef; readonly rule: RequestRule }> {
  const m = new Map<number, { def: MessageDef; rule: RequestRule }>();
  for (const [def, rule] of pairs) {
    if (m.has(def.code)) throw new Error(`two state rules for ${def.name}`);
    m.set(def.code, { def, rule });
  }
  return m;
}

/** Shared words laid out for `table`, holding its initial state. */
export function newStateWords(table: StateTable): Int32Array {
  const words = new Int32Array(new SharedArrayBuffer(4 * table.initial.length));
  table.initial.forEach((v, i) => Atomics.store(words, i, v));
  return words;
}

/**
 * Why `table` refuses the request `code` in the state `words` hold, or null
 * when it allows it. Pure: the main thread and the worker call it alike.
 */
export function refusal(
  table: StateTable,
  code: number,
  words: Int32Array,
  version: NdmpVersion,
): NdmpError | null {
  const entry = table.rules.get(code);
  if (!entry) return null;
  const text = (state: string) => refusalText(table, entry.def, state);
  return refusalIn({ ...entry.rule, text }, table.stateName(words), version, entry.def);
}

/** "MOVER_CONTINUE is not allowed in mover state ACTIVE", plus why when the table says. */
export function refusalText(table: StateTable, def: MessageDef, state: string): string {
  const why = table.explain?.(state, def);
  return `${def.name.replace(/^NDMP_/, '')} is not allowed in ${table.subject} ${state}${why ? `: ${why}` : ''}`;
}

/** Throws the table's refusal of `def` in the current state; the worker calls it as a request begins. */
export function admit(table: StateTable, def: MessageDef, words: Int32Array, version: NdmpVersion): void {
  const refused = refusal(table, def.code, words, version);
  if (refused) throw refused;
}

/**
 * The dispatch table's view of `table`'s rule for `def`: the state comes from
 * the session's shared words (`words`), read as the request arrives.
 */
export function stateRule(
  table: StateTable,
  def: MessageDef,
  words: (s: Session) => Int32Array,
): StateRule | undefined {
  const entry = table.rules.get(def.code);
  if (!entry) return undefined;
  return {
    ...entry.rule,
    state: (s) => table.stateName(words(s)),
    text: (state) => refusalText(table, entry.def, state),
  };
}

/**
 * `handlers` with the rules of `table` attached, the state read from the
 * session's words. Every rule must meet its handler: a rule for a request
 * the group does not serve is a mistake in the table.
 */
export function withStateRules(
  table: StateTable,
  words: (s: Session) => Int32Array,
  handlers: readonly Handler[],
): readonly Handler[] {
  const served = new Set(handlers.map((h) => h.def.code));
  for (const { def } of table.rules.values()) {
    if (!served.has(def.code))
      throw new Error(`${table.subject} rule for ${def.name}, which has no handler here`);
  }
  return handlers.map((h) => {
    const when = stateRule(table, h.def, words);
    if (!when) return h;
    if (h.when)
      throw new Error(`${h.def.name} has a state rule of its own and one in the ${table.subject} table`);
    return { ...h, when };
  });
}
