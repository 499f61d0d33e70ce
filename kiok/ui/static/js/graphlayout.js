// The graph's layout with dagre: pure (no DOM), so the page and the layout worker share it.
import dagre from "../vendor/dagre.esm.js";

export const NODE_H = 44;
export const CHAR_W = 7.4;

/** Where the segment from the centre of `node` towards `p` leaves the node's box. */
function boxExit(node, p) {
  const dx = p.x - node.x;
  const dy = p.y - node.y;
  if (dx === 0 && dy === 0) return { x: node.x, y: node.y };
  const w = node.width / 2;
  const h = node.height / 2;
  const t = Math.abs(dy) * w > Math.abs(dx) * h ? h / Math.abs(dy) : w / Math.abs(dx);
  return { x: node.x + dx * t, y: node.y + dy * t };
}

/**
 * Siblings (same rank, same upstreams, same downstreams: a fan-out's leaves) in the order the
 * DAG declares them, top to bottom. dagre orders them by its own heuristics (often reversed);
 * siblings are interchangeable, so they swap places, and their edges swap with them.
 */
function declaredOrder(tasks, nodes, edges) {
  const index = new Map(tasks.map((t, i) => [t.id, i]));
  const ups = new Map(tasks.map((t) => [t.id, []]));
  const downs = new Map(tasks.map((t) => [t.id, []]));
  for (const e of edges) {
    downs.get(e.v).push(e.w);
    ups.get(e.w).push(e.v);
  }
  const groups = new Map();
  for (const n of nodes) {
    const key = `${Math.round(n.x)}|${[...ups.get(n.id)].sort().join(",")}|${[...downs.get(n.id)].sort().join(",")}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(n);
  }
  const moved = new Map(); // id -> the id whose place (and edges) it takes
  for (const group of groups.values()) {
    if (group.length < 2) continue;
    const places = [...group].sort((a, b) => a.y - b.y);
    const wanted = [...group].sort((a, b) => index.get(a.id) - index.get(b.id));
    wanted.forEach((n, i) => { if (n.id !== places[i].id) moved.set(n.id, places[i]); });
  }
  if (moved.size === 0) return;
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const points = new Map(edges.map((e) => [`${e.v}->${e.w}`, e.points]));
  const place = new Map([...moved].map(([id, target]) => [id, { id: target.id, y: target.y }]));
  for (const [id, target] of place) byId.get(id).y = target.y;
  for (const e of edges) {
    const v = place.has(e.v) ? place.get(e.v).id : e.v;
    const w = place.has(e.w) ? place.get(e.w).id : e.w;
    if (v === e.v && w === e.w) continue;
    const pts = points.get(`${v}->${w}`).map((p) => ({ ...p }));
    // Same path; its ends clipped to this pair's boxes (the widths differ with the ids).
    if (pts.length >= 2) {
      pts[0] = boxExit(byId.get(e.v), pts[1]);
      pts[pts.length - 1] = boxExit(byId.get(e.w), pts[pts.length - 2]);
    }
    e.points = pts;
  }
}

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
  const edges = g.edges().map((e) => ({ v: e.v, w: e.w, points: g.edge(e).points.map((p) => ({ x: p.x, y: p.y })) }));
  declaredOrder(tasks, nodes, edges);
  return {
    nodes,
    edges: edges.map((e) => ({ key: `${e.v}->${e.w}`, points: e.points })),
    width: g.graph().width,
    height: g.graph().height,
  };
}
