// Finds the cycles of a module import graph (test/unit/architecture.test.ts
// runs it on src/). Kept apart from the test so the finder itself is tested
// on a small graph whose cycles are known.

/**
 * One path per back edge met in a depth-first walk, each written from the
 * module it starts at back to that module (`a -> b -> a`). Every graph with
 * a cycle yields at least one; an acyclic graph yields none. Edges to nodes
 * outside the graph (packages, files not scanned) are ignored.
 */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>, name = (n: string) => n): string[] {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const cycles: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    path.push(f);
    for (const d of graph.get(f) ?? []) {
      if (!graph.has(d)) continue;
      if (state.get(d) === 'open') cycles.push([...path.slice(path.indexOf(d)), d].map(name).join(' -> '));
      else if (!state.has(d)) visit(d);
    }
    path.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return cycles;
}
