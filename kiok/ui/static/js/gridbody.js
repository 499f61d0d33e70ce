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
// Each cell is one <a> (its glyph as text, its state in `data-state` and `aria-label`, its
// details in a `title` written on hover, the attempt above 1 in `data-attempt`), so hover and
// click behave as links do everywhere (middle-click opens a tab) and screen readers read the
// state. A cell of a run whose logs the user may not read (logs:Read, asked per run) is not a
// link: no href, its tooltip says why; it is still a cell the keyboard moves to.
//
// The keyboard: the grid is one tab stop (a roving tabindex: the active cell has tabindex 0,
// every other cell and run link -1). Arrows move between cells (up from the first row to the
// runs' links in the header), Home/End to the row's first/last cell, Ctrl+Home/End to the
// grid's corners, PageUp/PageDown by a screenful; the rows scroll in as needed. Enter is the
// link's own: it opens the task's log. While the active cell's row is scrolled out of the
// page the scroller itself is the tab stop, and focusing it focuses a cell on screen.
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

export const NO_LOGS = "no log: your policies do not allow reading this run's logs (logs:Read)";

/** A cell's tooltip: task, state, attempt, duration, worker, run. */
function cellTitle(taskId, run, state, i) {
  const parts = [`${taskId} · ${state}`];
  const attempt = run.attemptAt.get(i);
  if (attempt) parts.push(`attempt ${attempt}`);
  const took = ms(run.durationsMs[i]);
  if (took) parts.push(took);
  const w = run.workerIndex[i];
  if (w !== null && w !== undefined && run.workers[w]) parts.push(`on ${run.workers[w]}`);
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

/** Draw cell `i` of `run` into the element `a` (only what differs is written); `link`:
 *  whether it links to the task's log. */
function drawCell(a, grid, run, i, link) {
  const taskId = grid.tasks[i];
  const state = grid.codes[run.cells[i]] || null;
  if (state === null) {
    if (a.className !== "gc gc-none") a.className = "gc gc-none";
    setAttr(a, "href", null);
    setAttr(a, "data-state", null);
    setAttr(a, "data-attempt", null);
    setAttr(a, "title", null);
    setAttr(a, "aria-label", `${taskId}: not in run ${run.runId}`);
    if (a.textContent !== "·") a.textContent = "·";
    return;
  }
  const cls = link ? `gc ${stateClass(state)}` : `gc gc-nolink ${stateClass(state)}`;
  if (a.className !== cls) a.className = cls;
  setAttr(a, "href", link ? `/runs/${enc(run.runId)}/tasks/${enc(taskId)}` : null);
  setAttr(a, "data-state", state);
  const attempt = run.attemptAt.get(i);
  setAttr(a, "data-attempt", attempt ? String(attempt) : null);
  setAttr(a, "title", null); // set on hover (see GridBody.hovered): not on the first render's path
  setAttr(a, "aria-label", `${taskId}, run ${run.runId}: ${state}${attempt ? `, attempt ${attempt}` : ""}${link ? "" : ", no log"}`);
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
    /** Per column: whether its cells link to the tasks' logs. */
    this.linked = [];
    this.rows = new Map(); // task index -> { el, name, cells[] }
    this.pool = [];
    this.window = { first: 0, last: 0 };
    this.frame = 0;
    /** The active cell: row -1 is the header's run links. */
    this.active = { row: 0, col: 0 };
    this.stop = null; // the element with tabindex 0
    this.onScroll = () => {
      if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.scrolled(); });
    };
    this.onKey = (event) => this.key(event);
    this.onHover = (event) => this.hovered(event);
    this.onFocus = (event) => this.focused(event);
    scroller.addEventListener("scroll", this.onScroll, { passive: true });
    scroller.addEventListener("keydown", this.onKey);
    scroller.addEventListener("focusin", this.onFocus);
    host.addEventListener("pointerover", this.onHover);
    addEventListener("resize", this.onScroll);
  }

  destroy() {
    this.scroller.removeEventListener("scroll", this.onScroll);
    this.scroller.removeEventListener("keydown", this.onKey);
    this.scroller.removeEventListener("focusin", this.onFocus);
    this.host.removeEventListener("pointerover", this.onHover);
    removeEventListener("resize", this.onScroll);
    if (this.frame) cancelAnimationFrame(this.frame);
    this.host.replaceChildren();
  }

  /** Show `grid` (tasks, runs, codes); `links(runId)`: whether the cells of that run link
   *  to the tasks' logs. Columns whose run object (and link) is the one shown before are
   *  left alone; the others are redrawn in the rows on screen. */
  update(grid, links = () => true) {
    const tasksChanged = !this.grid || this.grid.tasks !== grid.tasks;
    const columnsChanged = this.runs.length !== grid.runs.length;
    const before = this.runs;
    const linkedBefore = this.linked;
    this.grid = grid;
    this.runs = grid.runs;
    this.linked = grid.runs.map((r) => Boolean(links(r.runId)));
    if (tasksChanged || columnsChanged) {
      const hadFocus = this.host.contains(document.activeElement);
      this.space.style.height = `${grid.tasks.length * ROW_H}px`;
      for (const i of [...this.rows.keys()]) this.release(i);
      this.window = { first: 0, last: 0 };
      this.active = {
        row: Math.min(this.active.row, grid.tasks.length - 1),
        col: Math.max(0, Math.min(this.active.col, grid.runs.length - 1)),
      };
      this.scrolled();
      if (hadFocus) this.moveTo(this.active.row, this.active.col);
      return;
    }
    const dirty = [];
    for (let j = 0; j < grid.runs.length; j++) {
      if (grid.runs[j] !== before[j] || this.linked[j] !== linkedBefore[j]) dirty.push(j);
    }
    if (dirty.length === 0) return;
    for (const [i, row] of this.rows) {
      for (const j of dirty) drawCell(row.cells[j], grid, grid.runs[j], i, this.linked[j]);
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
    this.setStop();
  }

  /** A cell's tooltip, written when the pointer reaches it (2,500 titles built on every
   *  first render cost more than the rest of a cell). */
  hovered(event) {
    const at = event.target.classList.contains("gc") ? this.locate(event.target) : null;
    if (!at || at.row < 0) return;
    const run = this.grid.runs[at.col];
    const taskId = this.grid.tasks[at.row];
    const state = this.grid.codes[run.cells[at.row]] || null;
    event.target.title = state === null ? `${taskId}: not in run ${run.runId}`
      : this.linked[at.col] ? cellTitle(taskId, run, state, at.row) : `${cellTitle(taskId, run, state, at.row)} · ${NO_LOGS}`;
  }

  // --- the keyboard ------------------------------------------------------------------------

  /** The element of cell (row, col): a drawn cell, a run link of the header, or null. */
  cellAt(row, col) {
    if (row < 0) return this.scroller.querySelectorAll(".grid-head .grun a")[col] || null;
    const drawn = this.rows.get(row);
    return drawn ? drawn.cells[col] : null;
  }

  /** Give tabindex 0 to the active cell, or to the scroller while that cell is not drawn. */
  setStop() {
    const el = this.cellAt(this.active.row, this.active.col) || this.scroller;
    if (el === this.stop) return;
    if (this.stop) this.stop.tabIndex = -1;
    el.tabIndex = 0;
    this.stop = el;
  }

  /** Make (row, col) the active cell, scroll it into view (under the sticky header and
   *  right of the sticky task names), draw its row and focus it. */
  moveTo(row, col) {
    if (!this.grid || this.grid.runs.length === 0) return;
    row = Math.max(-1, Math.min(row, this.grid.tasks.length - 1));
    col = Math.max(0, Math.min(col, this.grid.runs.length - 1));
    this.active = { row, col };
    const s = this.scroller;
    if (row >= 0) {
      const head = s.querySelector(".grid-head");
      const top = this.host.offsetTop + row * ROW_H;
      const above = head ? head.offsetHeight : 0;
      if (top - above < s.scrollTop) s.scrollTop = top - above;
      else if (top + ROW_H > s.scrollTop + s.clientHeight) s.scrollTop = top + ROW_H - s.clientHeight;
    }
    const names = s.querySelector(".grid-head .gname");
    const nameW = names ? names.offsetWidth : 0;
    const left = nameW + col * CELL_W;
    if (left < s.scrollLeft + nameW) s.scrollLeft = left - nameW;
    else if (left + CELL_W > s.scrollLeft + s.clientWidth) s.scrollLeft = left + CELL_W - s.clientWidth;
    this.scrolled();
    this.setStop();
    const el = this.cellAt(row, col);
    if (el) el.focus({ preventScroll: true });
  }

  /** Focus came into the grid: a click or Tab onto a cell makes it the active one; Tab onto
   *  the scroller (the active row scrolled away) moves on to a cell on screen. */
  focused(event) {
    const t = event.target;
    if (t === this.scroller) {
      if (!this.grid) return;
      const s = this.scroller;
      const first = Math.ceil(s.scrollTop / ROW_H);
      const last = Math.floor((s.scrollTop + s.clientHeight - this.host.offsetTop) / ROW_H) - 1;
      const row = Math.max(first, Math.min(this.active.row, last, this.grid.tasks.length - 1));
      this.moveTo(row, this.active.col);
      return;
    }
    const at = this.locate(t);
    if (at) { this.active = at; this.setStop(); }
  }

  /** The (row, col) of a cell or header run link, or null. */
  locate(el) {
    const row = el.parentElement && el.parentElement.classList.contains("grow") ? el.parentElement : null;
    if (row) {
      for (const [i, r] of this.rows) if (r.el === row) return { row: i, col: r.cells.indexOf(el) };
      return null;
    }
    const links = [...this.scroller.querySelectorAll(".grid-head .grun a")];
    const col = links.indexOf(el);
    return col >= 0 ? { row: -1, col } : null;
  }

  key(event) {
    if (event.altKey || event.metaKey || !this.grid) return;
    const at = this.locate(event.target);
    if (!at) return;
    const page = Math.max(1, Math.floor(this.scroller.clientHeight / ROW_H) - 2);
    const lastRow = this.grid.tasks.length - 1;
    const lastCol = this.grid.runs.length - 1;
    const moves = {
      ArrowLeft: [at.row, at.col - 1],
      ArrowRight: [at.row, at.col + 1],
      ArrowUp: [at.row - 1, at.col],
      ArrowDown: [at.row + 1, at.col],
      PageUp: [Math.max(0, at.row - page), at.col],
      PageDown: [Math.min(lastRow, at.row + page), at.col],
      Home: event.ctrlKey ? [0, 0] : [at.row, 0],
      End: event.ctrlKey ? [lastRow, lastCol] : [at.row, lastCol],
    };
    const to = moves[event.key];
    if (!to) return;
    event.preventDefault();
    this.moveTo(to[0], to[1]);
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
    for (let j = 0; j < grid.runs.length; j++) drawCell(row.cells[j], grid, grid.runs[j], i, this.linked[j]);
    if (this.stop && row.cells.includes(this.stop)) { this.stop.tabIndex = -1; this.stop = null; }
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
      a.tabIndex = -1;
      el.appendChild(a);
      cells.push(a);
    }
    return { el, name, cells };
  }
}

/** The grid as the body draws it: each run with its attempts as a Map. A run that did not
 *  change since `old` keeps its old object (so its column is not redrawn). `partial`: `fresh`
 *  holds only some of the page's runs. */
export function mergeGrid(old, fresh, partial) {
  if (!old || !sameTasks(old.tasks, fresh.tasks)) {
    if (partial) return old; // the DAG changed: the next whole-page read fixes it
    return { ...fresh, runs: fresh.runs.map((r) => withAttempts(r)) };
  }
  const oldById = new Map(old.runs.map((r) => [r.runId, r]));
  const taken = fresh.runs.map((r) => {
    const was = oldById.get(r.runId);
    return was && same(was, r) ? was : withAttempts(r);
  });
  if (partial) {
    const byId = new Map(taken.map((r) => [r.runId, r]));
    return { ...old, runs: old.runs.map((r) => byId.get(r.runId) || r) };
  }
  return { ...fresh, tasks: old.tasks, runs: taken };
}

function sameTasks(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
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
