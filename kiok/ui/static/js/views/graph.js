// The run's task graph: dagre lays it out once per DAG shape; states only recolour it.
// Each node links to its task's log and shows its state as text, not colour alone.
import { html, useMemo } from "../html.js";
import dagre from "../../vendor/dagre.esm.js";
import { enc } from "../api.js";
import { glyph, stateClass } from "../format.js";

/** Beyond this many tasks the layout would take seconds: the job list has it all. */
export const MAX_GRAPH_TASKS = 400;
const NODE_H = 44;
const CHAR_W = 7.4;

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
  const nodes = g.nodes().map((id) => ({ id, ...g.node(id) }));
  const edges = g.edges().map((e) => ({ key: `${e.v}->${e.w}`, points: g.edge(e).points }));
  return { nodes, edges, width: g.graph().width, height: g.graph().height };
}

function clip(text, width) {
  const max = Math.floor((width - 34) / CHAR_W);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function Graph({ runId, tasks, states }) {
  const shape = useMemo(() => (tasks.length <= MAX_GRAPH_TASKS ? layout(tasks) : null), [tasks]);
  if (shape === null) {
    return html`<p class="muted">${tasks.length} tasks: too many to draw here; the job list below has every one.</p>`;
  }
  return html`<div class="graph-wrap">
    <svg class="graph" role="img" aria-label="Task graph" width=${shape.width} height=${shape.height}
      viewBox=${`0 0 ${shape.width} ${shape.height}`}>
      <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
        <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" /></marker></defs>
      ${shape.edges.map((e) => html`<path key=${e.key} class="edge" marker-end="url(#arrow)"
        d=${e.points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ")} />`)}
      ${shape.nodes.map((n) => {
        const state = (states[n.id] || {}).state || "PENDING";
        const x = n.x - n.width / 2;
        const y = n.y - n.height / 2;
        return html`<a key=${n.id} href=${`/runs/${enc(runId)}/tasks/${enc(n.id)}`} class=${`node ${stateClass(state)}`}
          data-task=${n.id} data-state=${state}>
          <title>${n.id}: ${state}</title>
          <rect x=${x} y=${y} width=${n.width} height=${n.height} rx="7" />
          <rect x=${x} y=${y} width="6" height=${n.height} rx="3" class="node-bar" />
          <text x=${x + 14} y=${y + 18} class="node-id">${clip(n.id, n.width)}</text>
          <text x=${x + 14} y=${y + 34} class="node-state">${glyph(state)} ${state}</text>
        </a>`;
      })}
    </svg>
  </div>`;
}
