// The grid's body, drawn by hand rather than by Preact, because it is the one view whose size
// is the product of two large numbers (500 tasks × 50 runs is 25,000 cells). Two rules keep it
// fluid:
//
// - Only the rows on screen, plus a margin, are in the page. Every row is ROW_H pixels tall
//   and absolutely positioned at index × ROW_H inside a spacer as tall as all the rows, so
//   the scroll bar is the real one and scrolling just moves rows in and out (their elements
//   are reused).
// - A refresh redraws only the columns whose run object changed: the view keeps the object
//   of a run that did not change (see `mergeGrid`), so a poll while one run is going touches
//   one column of the rows on screen, not the whole grid.
//
// Each cell is one <a> (its glyph as text, its state in `data-state`, `title` and
// `aria-label`, the attempt above 1 in `data-attempt`), so hover and click behave as links
// do everywhere (middle-click opens a tab) and screen readers read the state.
import { enc } from "./api.js";
import { duration, glyph, stateClass } from "./format.js";

export const ROW_H = 22;
export const CELL_W = 24;
/** Rows drawn above and below the visible ones. */
const OVERSCAN = 12;

function ms(n) {
  if (n === null || n === undefined) return null;
  return duration(new Date(0).toISOString(), new Date(n).toISOString());
}

/** The rows to draw for a scroll position: [first, last), widened by OVERSCAN. */
export function rowWindow(scrollTop, viewHeight, bodyTop, rows) {
  const top = Math.max(0, scrollTop - bodyTop);
  const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
  const last = Math.min(rows, Math.ceil((top + viewHeight) / ROW_H) + OVERSCAN);
  return { first, last: Math.max(first, last) };
}

/** A cell's tooltip: task, state, attempt, duration, worker, run. */
function cellTitle(taskId, run, state, i, workers) {
  const parts = [`${taskId} · ${state}`];
  const attempt = run.attemptAt.get(i);
  if (attempt) parts.push(`attempt ${attempt}`);
  const took = ms(run.durationsMs[i]);
  if (took) parts.push(took);
  const w = run.workerIndex[i];
  if (w !== null && w !== undefined && workers[w]) parts.push(`on ${workers[w]}`);
  parts.push(`run ${run.runId}`);
  return parts.join(" · ");
}

function setAttr(el, name, value) {
  if (value === null) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== value) {
    el.setAttribute(name, value);
  }
}

/** Draw cell `i` of `run` into the element `a` (only what differs is written). */
function drawCell(a, grid, run, i) {
  const taskId = grid.tasks[i];
  const state = grid.codes[run.cells[i]] || null;
  if (state === null) {
    if (a.className !== "gc gc-none") a.className = "gc gc-none";
    setAttr(a, "href", null);
    setAttr(a, "data-state", null);
    setAttr(a, "data-attempt", null);
    setAttr(a, "title", `${taskId}: not in run ${run.runId}`);
    setAttr(a, "aria-label", `${taskId}: not in run ${run.runId}`);
    if (a.textContent !== "·") a.textContent = "·";
    return;
  }
  const cls = `gc ${stateClass(state)}`;
  if (a.className !== cls) a.className = cls;
  setAttr(a, "href", `/runs/${enc(run.runId)}/tasks/${enc(taskId)}`);
  setAttr(a, "data-state", state);
  const attempt = run.attemptAt.get(i);
  setAttr(a, "data-attempt", attempt ? String(attempt) : null);
  setAttr(a, "title", cellTitle(taskId, run, state, i, grid.workers));
  setAttr(a, "aria-label", `${taskId}, run ${run.runId}: ${state}${attempt ? `, attempt ${attempt}` : ""}`);
  const g = glyph(state);
  if (a.textContent !== g) a.textContent = g;
}

export class GridBody {
  /** `scroller`: the element that scrolls; `host`: an empty element this class owns. */
  constructor(scroller, host) {
    this.scroller = scroller;
    this.host = host;
    this.space = document.createElement("div");
    this.space.className = "grid-space";
    host.appendChild(this.space);
    this.grid = null;
    this.runs = [];
    this.rows = new Map(); // task index -> { el, name, cells[] }
    this.pool = [];
    this.window = { first: 0, last: 0 };
    this.frame = 0;
    this.onScroll = () => {
      if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.scrolled(); });
    };
    scroller.addEventListener("scroll", this.onScroll, { passive: true });
    addEventListener("resize", this.onScroll);
  }

  destroy() {
    this.scroller.removeEventListener("scroll", this.onScroll);
    removeEventListener("resize", this.onScroll);
    if (this.frame) cancelAnimationFrame(this.frame);
    this.host.replaceChildren();
  }

  /** Show `grid` (tasks, runs, codes, workers). Columns whose run object is the one shown
   *  before are left alone; the others are redrawn in the rows on screen. */
  update(grid) {
    const tasksChanged = !this.grid || this.grid.tasks !== grid.tasks;
    const columnsChanged = this.runs.length !== grid.runs.length;
    const before = this.runs;
    this.grid = grid;
    this.runs = grid.runs;
    if (tasksChanged || columnsChanged) {
      this.space.style.height = `${grid.tasks.length * ROW_H}px`;
      for (const i of [...this.rows.keys()]) this.release(i);
      this.window = { first: 0, last: 0 };
      this.scrolled();
      return;
    }
    const dirty = [];
    for (let j = 0; j < grid.runs.length; j++) if (grid.runs[j] !== before[j]) dirty.push(j);
    if (dirty.length === 0) return;
    for (const [i, row] of this.rows) {
      for (const j of dirty) drawCell(row.cells[j], grid, grid.runs[j], i);
    }
  }

  /** Bring the rows on screen (plus the margin) into the page, and drop the others. */
  scrolled() {
    if (!this.grid) return;
    const bodyTop = this.host.offsetTop;
    const w = rowWindow(this.scroller.scrollTop, this.scroller.clientHeight, bodyTop, this.grid.tasks.length);
    if (w.first === this.window.first && w.last === this.window.last) return;
    for (const i of [...this.rows.keys()]) if (i < w.first || i >= w.last) this.release(i);
    for (let i = w.first; i < w.last; i++) if (!this.rows.has(i)) this.draw(i);
    this.window = w;
  }

  release(i) {
    const row = this.rows.get(i);
    this.rows.delete(i);
    row.el.remove();
    if (row.cells.length === this.runs.length) this.pool.push(row);
  }

  draw(i) {
    const grid = this.grid;
    let row = this.pool.pop();
    if (!row || row.cells.length !== grid.runs.length) row = this.make(grid.runs.length);
    const taskId = grid.tasks[i];
    row.el.style.top = `${i * ROW_H}px`;
    row.el.dataset.task = taskId;
    row.name.textContent = taskId;
    row.name.title = taskId;
    for (let j = 0; j < grid.runs.length; j++) drawCell(row.cells[j], grid, grid.runs[j], i);
    this.rows.set(i, row);
    this.space.appendChild(row.el);
  }

  make(columns) {
    const el = document.createElement("div");
    el.className = "grow";
    const name = document.createElement("span");
    name.className = "gname mono";
    el.appendChild(name);
    const cells = [];
    for (let j = 0; j < columns; j++) {
      const a = document.createElement("a");
      el.appendChild(a);
      cells.push(a);
    }
    return { el, name, cells };
  }
}

/** The grid as the body draws it: each run with its attempts as a Map. A run that did not
 *  change since `old` keeps its old object (so its column is not redrawn), and worker indexes
 *  are re-based onto one list. `partial`: `fresh` holds only some of the page's runs. */
export function mergeGrid(old, fresh, partial) {
  if (!old || fresh.tasks.join("\n") !== old.tasks.join("\n")) {
    if (partial) return old; // the DAG changed: the next whole-page read fixes it
    return { ...fresh, runs: fresh.runs.map((r) => withAttempts(r)) };
  }
  const workers = [...old.workers];
  const oldById = new Map(old.runs.map((r) => [r.runId, r]));
  const taken = fresh.runs.map((r) => {
    const was = oldById.get(r.runId);
    if (was && same(was, r)) return was;
    const workerIndex = r.workerIndex.map((w) => {
      if (w === null) return null;
      const name = fresh.workers[w];
      let at = workers.indexOf(name);
      if (at < 0) { workers.push(name); at = workers.length - 1; }
      return at;
    });
    return withAttempts({ ...r, workerIndex });
  });
  if (partial) {
    const byId = new Map(taken.map((r) => [r.runId, r]));
    return { ...old, workers, runs: old.runs.map((r) => byId.get(r.runId) || r) };
  }
  return { ...fresh, tasks: old.tasks, workers, runs: taken };
}

/** A finished run whose state, end and cells are unchanged is the same (a re-run changes its
 *  end); an unfinished one always counts as changed (its durations grow). */
function same(was, now) {
  return was.state === now.state && was.endedAt === now.endedAt && now.endedAt !== null
    && was.cells === now.cells;
}

function withAttempts(r) {
  return { ...r, attemptAt: new Map(r.attempts.map(([i, a]) => [i, a])) };
}
