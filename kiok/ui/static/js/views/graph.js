// The run's task graph: dagre lays it out once per DAG shape; states only recolour it.
// Each node links to its task's log and shows its state as text, not colour alone.
//
// Small graphs are laid out on the page; above WORKER_ABOVE tasks the layout runs in a Web
// Worker so the page stays responsive meanwhile. A graph above MAX_GRAPH_TASKS, or whose
// layout is not done within LAYOUT_BUDGET_MS, is not drawn: the view says so and points to
// the grid and the job list.
import { html, useEffect, useMemo, useState } from "../html.js";
import { enc } from "../api.js";
import { glyph, stateClass } from "../format.js";
import { CHAR_W, layout } from "../graphlayout.js";

export const WORKER_ABOVE = 150;
export const MAX_GRAPH_TASKS = 1000;
const LAYOUT_BUDGET_MS = 2000;

function clip(text, width) {
  const max = Math.floor((width - 34) / CHAR_W);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** {status: "laying-out" | "ready" | "too-large" | "failed", shape, how} for the tasks. */
function useLayout(tasks) {
  const small = tasks.length <= WORKER_ABOVE;
  const inline = useMemo(() => (small ? layout(tasks) : null), [tasks, small]);
  const [result, setResult] = useState({ status: "laying-out" });
  useEffect(() => {
    if (small) return undefined;
    if (tasks.length > MAX_GRAPH_TASKS) {
      setResult({ status: "too-large", why: `${tasks.length} tasks` });
      return undefined;
    }
    setResult({ status: "laying-out" });
    const worker = new Worker(new URL("../workers/layout.js", import.meta.url), { type: "module" });
    const timer = setTimeout(() => {
      worker.terminate();
      setResult({ status: "too-large", why: `${tasks.length} tasks take more than ${LAYOUT_BUDGET_MS / 1000} s to lay out` });
    }, LAYOUT_BUDGET_MS);
    worker.onmessage = (event) => {
      clearTimeout(timer);
      worker.terminate();
      setResult(event.data.ok ? { status: "ready", shape: event.data.shape, how: "worker" }
        : { status: "failed", why: event.data.error });
    };
    worker.onerror = (event) => {
      clearTimeout(timer);
      worker.terminate();
      setResult({ status: "failed", why: event.message || "the layout worker failed" });
    };
    worker.postMessage({ tasks });
    return () => {
      clearTimeout(timer);
      worker.terminate();
    };
  }, [tasks, small]);
  return small ? { status: "ready", shape: inline, how: "page" } : result;
}

export function Graph({ runId, dagId, tasks, states }) {
  const result = useLayout(tasks);
  if (result.status === "laying-out") {
    return html`<p class="muted" data-testid="graph-state" data-status="laying-out" aria-live="polite">Laying out ${tasks.length} tasks…</p>`;
  }
  if (result.status !== "ready") {
    return html`<div class="card too-large" data-testid="graph-state" data-status=${result.status} role="status">
      <strong>${result.status === "too-large" ? "Too large to draw here" : "The graph could not be laid out"}</strong>
      <span class="muted"> (${result.why}).</span>
      Use the <a href=${`/dags/${enc(dagId)}/grid`}>grid</a> or the job list below, which has a filter and every task.
    </div>`;
  }
  const shape = result.shape;
  return html`<div class="graph-wrap" data-testid="graph" data-layout=${result.how}>
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
