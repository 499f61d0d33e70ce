// A DAG's grid: tasks as rows (topological order), runs as columns (newest first), one cell
// per task and run, coloured by state AND showing the state's glyph (and text in its title and
// for screen readers). Click a cell for that task's log (if the user may read the run's logs). One request per refresh: while a run
// on the page is unfinished, only the unfinished runs are re-read (`runs=`), and every few
// refreshes (on the first page) the page itself, to pick up new runs. The page of runs is in
// the URL, so a reload or Back keeps it.
//
// Preact draws the frame (buttons, legend, the runs' header); the cells are drawn by
// GridBody (../gridbody.js): only the rows on screen, and on a refresh only the columns of
// the runs that changed. GridBody also owns the keyboard (one tab stop, arrows between cells).
import { html, useEffect, useLayoutEffect, useRef, useState } from "../html.js";
import { enc, get } from "../api.js";
import { glyph, onTimeZoneChange, stateClass, TERMINAL_RUN, when } from "../format.js";
import { CELL_W, GridBody, mergeGrid } from "../gridbody.js";
import { Crumbs, ErrorBox, Loading, usePolling } from "./common.js";
import { useCanOnRuns } from "../me.js";
import { navigate, useLocation } from "../router.js";
import { notThePage, pagedUrl, paging, remember, unchecked } from "../paging.js";

const PAGE = 25;
const POLL_MS = 2000;
const IDLE_MS = 15000;
/** While runs are going, every Nth refresh of the first page re-reads the page (new runs). */
const PAGE_EVERY = 5;
/** Tasks per page of rows (the API's `taskLimit`); a bigger DAG gets Previous/Next tasks. */
const TASK_PAGE = 1000;

function Legend({ codes }) {
  const states = Object.values(codes).filter(Boolean);
  return html`<ul class="legend" aria-label="Legend">
    ${states.map((s) => html`<li key=${s}><span class=${`gc ${stateClass(s)}`} aria-hidden="true">${glyph(s)}</span> ${s.toLowerCase()}</li>`)}
    <li><span class="gc gc-legend-none" aria-hidden="true">·</span> not in run</li>
    <li><span class="muted">² attempt</span></li>
    <li id="grid-keys" class="muted small">Keys: arrows, Home/End, Page Up/Down move between cells; Enter opens the task's log</li>
  </ul>`;
}

/** Room right of the last column for its cells' attempt numbers (they stick out 4px). */
const ATTEMPT_ROOM = 6;

/** The width of the task-name column: enough for the longest name, within bounds. */
function nameWidth(tasks) {
  const longest = tasks.reduce((n, t) => Math.max(n, t.length), 4);
  return Math.max(140, Math.min(280, Math.round(longest * 7.6) + 28));
}

function Cells({ data }) {
  const scroller = useRef(null);
  const host = useRef(null);
  const body = useRef(null);
  useLayoutEffect(() => {
    body.current = new GridBody(scroller.current, host.current);
    return () => body.current.destroy();
  }, []);
  // A cell links to its task's log only if the user may read that run's logs (asked for
  // every run on the page at once); checked on every render, which redraws only the columns
  // whose run or answer changed.
  const canOn = useCanOnRuns(data.runs.map((r) => r.runId));
  useLayoutEffect(() => { body.current.update(data, (runId) => canOn(runId, "logs:Read")); });
  const [, setZone] = useState(0);
  useEffect(() => onTimeZoneChange(() => setZone((z) => z + 1)), []);

  const width = nameWidth(data.tasks);
  return html`<div class="grid-scroll" ref=${scroller} role="group" aria-label="Runs by task" aria-describedby="grid-keys"
      style=${{ "--gname-w": `${width}px`, "--gcols": data.runs.length }}>
    <div class="grid-head">
      <span class="gname">Task <span class="muted small">(${data.totalTasks})</span></span>
      ${data.runs.map((run) => html`<span key=${run.runId} class="grun">
        <a href=${`/runs/${enc(run.runId)}`} tabindex="-1" class=${`square ${stateClass(run.state)}`} data-state=${run.state}
          title=${`${run.state} · ${run.runId} · ${run.scheduledAt ? `for ${when(run.scheduledAt)}` : when(run.createdAt)}`}
          aria-label=${`run ${run.runId}: ${run.state}`}>${glyph(run.state)}</a></span>`)}
    </div>
    <div class="grid-body" ref=${host} data-testid="grid" data-rows=${data.tasks.length}
      style=${{ width: `${width + data.runs.length * CELL_W + ATTEMPT_ROOM}px` }}></div>
  </div>`;
}

export function GridView({ dagId }) {
  // What was read, and for which page: a page turned by Back (no click here) is not shown
  // the last page's runs while its own load.
  const [loaded, setLoaded] = useState({ page: null, data: null });
  const [error, setError] = useState(null);
  const [taskOffset, setTaskOffset] = useState(0);
  const [tick, setTick] = useState(0);

  useEffect(() => { document.title = `Grid · ${dagId} · kiok`; }, [dagId]);

  const base = `/api/v1/dags/${enc(dagId)}/grid`;
  // The page of runs is in the URL (../paging.js): `?limit=N` runs a page (1-100) instead
  // of PAGE, `?page=` the cursors that led to it.
  const { trail, limit, bad } = paging(useLocation(), 100);
  const cursor = trail.length ? trail[trail.length - 1] : null;
  const list = `grid:${dagId}`;
  const tasksPart = `&taskOffset=${taskOffset}&taskLimit=${TASK_PAGE}`;
  const pageUrl = `${base}?limit=${limit || PAGE}${cursor ? `&cursor=${cursor}` : ""}${tasksPart}`;
  const page = `${limit}:${cursor}:${taskOffset}`;
  const data = loaded.page === page ? loaded.data : null;
  const setData = (merge) => setLoaded((old) => ({ page, data: merge(old.page === page ? old.data : null) }));
  const unfinished = data ? data.runs.filter((r) => !TERMINAL_RUN.has(r.state)).map((r) => r.runId) : [];
  const firstPage = cursor === null;
  const turn = (next, how) => {
    navigate(pagedUrl(`/dags/${enc(dagId)}/grid`, "", limit, next), how);
  };

  const load = async () => {
    if (bad) {
      turn([], { replace: true }); // a malformed `?page=` is the first page
      if (trail.length) return;
    }
    try {
      const wholePage = data === null || unfinished.length === 0 || (firstPage && tick % PAGE_EVERY === 0);
      if (wholePage) {
        const suspect = unchecked(list, trail);
        const [fresh, newest] = await Promise.all([get(pageUrl), suspect ? get(`${base}?limit=1&taskLimit=1`) : null]);
        if (suspect) {
          if (notThePage(fresh.runs, fresh.nextCursor, newest.runs[0], (a, b) => a.runId === b.runId)) {
            turn([], { replace: true });
            return;
          }
          remember(list, trail, null);
        }
        remember(list, [], fresh.nextCursor);
        setData((old) => mergeGrid(old, fresh, false));
      } else {
        const fresh = await get(`${base}?runs=${unfinished.map(enc).join(",")}${tasksPart}`);
        setData((old) => mergeGrid(old, fresh, true));
      }
      setTick((t) => t + 1);
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  // Stop polling an older page once its runs have ended; the first page keeps looking for new runs.
  const active = data === null || unfinished.length > 0 || firstPage;
  usePolling(load, unfinished.length > 0 ? POLL_MS : IDLE_MS, active, [pageUrl, unfinished.length > 0]);

  const older = () => turn([...trail, data.nextCursor]);
  const newer = () => turn(trail.slice(0, -1));
  const moveTasks = (by) => setTaskOffset(Math.max(0, taskOffset + by));

  return html`<main class="page wide-page">
    <${Crumbs} items=${[["DAGs", "/dags"], [dagId, `/dags/${enc(dagId)}`], ["Grid"]]} />
    <div class="page-head">
      <h1><span class="mono">${dagId}</span> <span class="muted">grid</span>${trail.length
        ? html` <span class="muted small" data-testid="grid-page">(page ${trail.length + 1})</span>` : null}</h1>
      <div class="spacer"></div>
      <button type="button" onClick=${newer} disabled=${firstPage}>← Newer runs</button>
      <button type="button" onClick=${older} disabled=${!data || !data.nextCursor}>Older runs →</button>
    </div>
    <${ErrorBox} error=${error} label="Could not load the grid" />
    ${data === null && !error ? html`<${Loading} />` : null}
    ${data && data.runs.length === 0 ? html`<p class="muted">No runs ${firstPage ? "yet" : "on this page"}.</p>` : null}
    ${data && data.runs.length > 0 ? html`
      <${Legend} codes=${data.codes} />
      ${data.totalTasks > data.tasks.length || taskOffset > 0 ? html`<p class="muted small grid-tasks">
        Showing tasks ${data.taskOffset + 1}–${data.taskOffset + data.tasks.length} of ${data.totalTasks}.
        <button type="button" class="small" onClick=${() => moveTasks(-TASK_PAGE)} disabled=${taskOffset === 0}>Previous tasks</button>
        <button type="button" class="small" onClick=${() => moveTasks(TASK_PAGE)}
          disabled=${data.taskOffset + data.tasks.length >= data.totalTasks}>Next tasks</button></p>` : null}
      <${Cells} data=${data} />` : null}
  </main>`;
}
