// The graph's layout with dagre: pure (no DOM), so the page and the layout worker share it.
import dagre from "../vendor/dagre.esm.js";

export const NODE_H = 44;
export const CHAR_W = 7.4;

/** Node boxes and edge polylines, left to right, for [{id, requires}]. */
export function layout(tasks) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 48, marginx: 8, marginy: 8 });
  g.setDefaultEdgeLabel(() => ({}));
  const ids = new Set(tasks.map((t) => t.id));
  for (const t of tasks) {
    g.setNode(t.id, { width: Math.min(260, Math.max(120, t.id.length * CHAR_W + 40)), height: NODE_H });
  }
  for (const t of tasks) {
    for (const up of t.requires || []) if (ids.has(up)) g.setEdge(up, t.id);
  }
  dagre.layout(g);
  const nodes = g.nodes().map((id) => {
    const n = g.node(id);
    return { id, x: n.x, y: n.y, width: n.width, height: n.height };
  });
  const edges = g.edges().map((e) => ({ key: `${e.v}->${e.w}`, points: g.edge(e).points.map((p) => ({ x: p.x, y: p.y })) }));
  return { nodes, edges, width: g.graph().width, height: g.graph().height };
}
