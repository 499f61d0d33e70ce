// The run's task graph: dagre lays it out once per DAG shape; states only recolour it.
// Each node links to its task's log and shows its state as text, not colour alone.
//
// Small graphs are laid out on the page; above WORKER_ABOVE tasks the layout runs in a Web
// Worker so the page stays responsive meanwhile. A graph above MAX_GRAPH_TASKS, or whose
// layout is not done within LAYOUT_BUDGET_MS, is not drawn: the view says so and points to
// the grid and the job list.
import { html, useEffect, useLayoutEffect, useMemo, useRef, useState } from "../html.js";
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

const MIN_ZOOM = 0.05;
const MAX_ZOOM = 3;
const PAD = 12;
/** The box's height: the graph's own, within these bounds (the graph is fitted into it). */
const MIN_H = 140;
const MAX_H = 520;
/** A press that moves less than this is a click (opens the task), not a drag. */
const DRAG_PX = 4;
/** The most one wheel event zooms (a mouse notch with Ctrl is ~100 px; a pinch sends ~1–10). */
const WHEEL_STEP = 0.3;
/** How long "Ctrl + scroll to zoom" stays up after a plain wheel over the graph. */
const HINT_MS = 1500;

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

/** Below this zoom the ids cannot be read: the first view does not fit the graph below it. */
export const READABLE_ZOOM = 0.5;

/** The view that shows the whole graph, centred, at most at natural size. */
function fitView(shape, w, h) {
  const k = clamp(Math.min((w - 2 * PAD) / shape.width, (h - 2 * PAD) / shape.height, 1), MIN_ZOOM, MAX_ZOOM);
  return { k, x: (w - shape.width * k) / 2, y: (h - shape.height * k) / 2 };
}

/**
 * The first view: the whole graph if it fits at a readable zoom; else READABLE_ZOOM, from the
 * left edge (where the roots are: the graph runs left to right) and centred on the roots
 * (the tasks without upstreams), kept within the drawing. Fit shows the whole graph.
 */
function firstView(shape, w, h) {
  const fit = fitView(shape, w, h);
  if (fit.k >= READABLE_ZOOM) return fit;
  const k = READABLE_ZOOM;
  const fed = new Set(shape.edges.map((e) => e.key.slice(e.key.indexOf("->") + 2)));
  const roots = shape.nodes.filter((n) => !fed.has(n.id));
  const ys = (roots.length ? roots : shape.nodes).map((n) => n.y);
  const cy = (Math.min(...ys) + Math.max(...ys)) / 2;
  const x = shape.width * k <= w - 2 * PAD ? (w - shape.width * k) / 2 : PAD;
  const y = shape.height * k <= h - 2 * PAD ? (h - shape.height * k) / 2
    : clamp(h / 2 - cy * k, h - PAD - shape.height * k, PAD);
  return { k, x, y };
}

/**
 * Zoom and pan for the SVG: Ctrl/Cmd + wheel or a pinch zooms about the pointer, a drag pans,
 * the buttons zoom about the centre and fit. A plain wheel scrolls the page (with a hint),
 * and on a narrow screen a vertical swipe does too (`touch-action: pan-y`). The first view
 * (firstView) is set when the layout arrives and when the box first gets its size (after Fit,
 * the whole graph is fitted again on a resize). A drag never opens a node; a
 * click (or Enter) still does. Only a node reached by keyboard is brought into view: a mouse
 * press focuses it too, and moving the view under the pointer would lose the click.
 */
function useZoomPan(shape) {
  const [box, setBox] = useState(null);
  const [size, setSize] = useState(null);
  const [view, setView] = useState(null);
  const fitted = useRef(null);
  useLayoutEffect(() => {
    if (!box) return undefined;
    const measure = () => setSize({ w: box.clientWidth, h: box.clientHeight });
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(box);
    return () => observer.disconnect();
  }, [box]);
  // Fit on a new layout, and while the user has not moved the view yet (the box may still resize).
  useLayoutEffect(() => {
    if (!shape || !size || size.w === 0) return;
    if (fitted.current === null || fitted.current.shape !== shape || fitted.current.auto) {
      const fit = fitted.current !== null && fitted.current.shape === shape && fitted.current.fit;
      setView((fit ? fitView : firstView)(shape, size.w, size.h));
      fitted.current = { shape, auto: true, fit };
    }
  }, [shape, size && size.w, size && size.h]);
  const touched = () => { if (fitted.current) fitted.current.auto = false; };

  const zoomAt = (factor, px, py) => {
    touched();
    setView((v) => {
      if (!v) return v;
      const k = clamp(v.k * factor, MIN_ZOOM, MAX_ZOOM);
      const f = k / v.k;
      return { k, x: px - (px - v.x) * f, y: py - (py - v.y) * f };
    });
  };
  const local = (e) => {
    const r = box.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  };

  // Ctrl/Cmd + wheel (and a trackpad's pinch, which the browser sends as a wheel with
  // ctrlKey): zoom. A plain wheel is the page's: it scrolls, and the hint says how to zoom.
  const [hint, setHint] = useState(false);
  useEffect(() => {
    if (!box) return undefined;
    let timer = null;
    const onWheel = (e) => {
      if (!e.ctrlKey && !e.metaKey) {
        if (e.deltaY === 0) return;
        setHint(true);
        clearTimeout(timer);
        timer = setTimeout(() => setHint(false), HINT_MS);
        return;
      }
      e.preventDefault();
      const p = local(e);
      const step = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
      zoomAt(Math.exp(-clamp(step * 0.01, -WHEEL_STEP, WHEEL_STEP)), p.x, p.y);
    };
    box.addEventListener("wheel", onWheel, { passive: false });
    return () => {
      clearTimeout(timer);
      box.removeEventListener("wheel", onWheel);
    };
  }, [box]);

  // Drag to pan (mouse, pen, one finger); two fingers pinch.
  const pointers = useRef(new Map());
  const drag = useRef(null);
  const onPointerDown = (e) => {
    if (e.button !== 0 && e.pointerType === "mouse") return;
    pointers.current.set(e.pointerId, local(e));
    drag.current = { start: local(e), moved: pointers.current.size > 1 };
  };
  const onPointerMove = (e) => {
    if (!pointers.current.has(e.pointerId) || !drag.current) return;
    const p = local(e);
    const before = pointers.current.get(e.pointerId);
    if (pointers.current.size === 2) {
      const [a, b] = [...pointers.current.values()];
      const other = a === before ? b : a;
      const d0 = Math.hypot(before.x - other.x, before.y - other.y);
      const d1 = Math.hypot(p.x - other.x, p.y - other.y);
      if (d0 > 0) zoomAt(d1 / d0, (p.x + other.x) / 2, (p.y + other.y) / 2);
      drag.current.moved = true;
    } else {
      if (!drag.current.moved && Math.hypot(p.x - drag.current.start.x, p.y - drag.current.start.y) < DRAG_PX) return;
      if (!drag.current.moved) {
        drag.current.moved = true;
        box.setPointerCapture(e.pointerId);
        box.classList.add("dragging");
      }
      touched();
      setView((v) => v && { ...v, x: v.x + p.x - before.x, y: v.y + p.y - before.y });
    }
    pointers.current.set(e.pointerId, p);
  };
  const onPointerUp = (e) => {
    pointers.current.delete(e.pointerId);
    box.classList.remove("dragging");
    // A mouse drag ends with a click (swallowed below, in this same task); a touch pan or
    // pinch, or a press the browser took over (pointercancel), with none: forget the drag
    // once that click had its chance.
    const ended = drag.current;
    if (ended && pointers.current.size === 0) {
      setTimeout(() => { if (drag.current === ended) drag.current = null; }, 0);
    }
  };
  // A drag ends with a click on whatever is under the pointer: not a node's link then. A
  // keyboard click (Enter: `detail` 0) is never a drag's.
  const onClickCapture = (e) => {
    if (drag.current && drag.current.moved && e.detail !== 0) {
      e.preventDefault();
      e.stopPropagation();
    }
    drag.current = null;
  };
  // A node reached by keyboard is brought into view (not one pressed with the mouse, which
  // focuses it on mousedown: the click would land elsewhere).
  const onFocusIn = (e) => {
    if (!focusVisible(e.target)) return;
    const id = e.target.getAttribute && e.target.getAttribute("data-task");
    const n = id && shape.nodes.find((m) => m.id === id);
    if (!n || !view || !size) return;
    const sx = view.x + n.x * view.k;
    const sy = view.y + n.y * view.k;
    if (sx < 0 || sy < 0 || sx > size.w || sy > size.h) {
      touched();
      setView({ ...view, x: size.w / 2 - n.x * view.k, y: size.h / 2 - n.y * view.k });
      // The browser scrolls the page to where the node was before it is moved: undo that,
      // then show the box, with the node now in its middle (drawn by the next frame).
      const [px, py] = [window.scrollX, window.scrollY];
      requestAnimationFrame(() => {
        window.scrollTo(px, py);
        box.scrollIntoView({ block: "nearest", inline: "nearest" });
      });
    }
  };
  const controls = {
    zoomIn: () => size && zoomAt(1.25, size.w / 2, size.h / 2),
    zoomOut: () => size && zoomAt(0.8, size.w / 2, size.h / 2),
    fit: () => { if (size) { setView(fitView(shape, size.w, size.h)); fitted.current = { shape, auto: true, fit: true }; } },
  };
  const handlers = { onPointerDown, onPointerMove, onPointerUp, onPointerCancel: onPointerUp, onClickCapture, onFocusCapture: onFocusIn };
  return { setBox, view, controls, handlers, hint };
}

function focusVisible(el) {
  try {
    return el.matches(":focus-visible");
  } catch {
    return true; // no :focus-visible: bring it into view as before
  }
}

export function Graph({ runId, dagId, tasks, states, links = true }) {
  const result = useLayout(tasks);
  const shape = result.status === "ready" ? result.shape : null;
  const height = shape ? clamp(Math.ceil(shape.height) + 2 * PAD, MIN_H, MAX_H) : MIN_H;
  const { setBox, view, controls, handlers, hint } = useZoomPan(shape);
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
  const zoom = view ? view.k : 1;
  return html`<div class="graph-wrap" data-testid="graph" data-layout=${result.how} data-zoom=${zoom.toFixed(3)}>
    <div class="graph-tools" role="group" aria-label="Graph view">
      <button type="button" class="small" onClick=${controls.zoomIn} aria-label="Zoom in" title="Zoom in (or Ctrl + scroll)">+</button>
      <button type="button" class="small" onClick=${controls.zoomOut} aria-label="Zoom out" title="Zoom out">−</button>
      <button type="button" class="small" onClick=${controls.fit} title="Show the whole graph">Fit</button>
      <span class="muted small" aria-live="polite">${Math.round(zoom * 100)} %</span>
    </div>
    ${hint ? html`<div class="graph-hint" data-testid="graph-hint" role="status">Ctrl + scroll to zoom</div>` : null}
    <div class="graph-box" ref=${setBox} style=${{ height: `${height}px` }} ...${handlers}>
      <svg class="graph" role="img" aria-label="Task graph" width="100%" height="100%">
        <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" /></marker></defs>
        <g class="graph-view" transform=${view ? `translate(${view.x.toFixed(1)},${view.y.toFixed(1)}) scale(${view.k.toFixed(4)})` : undefined}
          visibility=${view ? undefined : "hidden"}>
        ${shape.edges.map((e) => html`<path key=${e.key} class="edge" marker-end="url(#arrow)"
          d=${e.points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ")} />`)}
        ${shape.nodes.map((n) => {
          const state = (states[n.id] || {}).state || "PENDING";
          const x = n.x - n.width / 2;
          const y = n.y - n.height / 2;
          const body = html`<title>${n.id}: ${state}</title>
            <rect x=${x} y=${y} width=${n.width} height=${n.height} rx="7" />
            <rect x=${x} y=${y} width="6" height=${n.height} rx="3" class="node-bar" />
            <text x=${x + 14} y=${y + 18} class="node-id">${clip(n.id, n.width)}</text>
            <text x=${x + 14} y=${y + 34} class="node-state">${glyph(state)} ${state}</text>`;
          // Without links (logs the user may not read), a node is a picture, not a door to a 403.
          return links ? html`<a key=${n.id} href=${`/runs/${enc(runId)}/tasks/${enc(n.id)}`} class=${`node ${stateClass(state)}`}
            data-task=${n.id} data-state=${state} draggable="false">${body}</a>`
            : html`<g key=${n.id} class=${`node ${stateClass(state)}`} data-task=${n.id} data-state=${state}>${body}</g>`;
        })}
        </g>
      </svg>
    </div>
  </div>`;
}
