// A DAG's grid: tasks as rows (topological order), runs as columns (newest first), one cell
// per task and run, coloured by state AND showing the state's glyph (and text in its title and
// for screen readers). Click a cell for that task's log. One request per refresh: while a run
// on the page is unfinished, only the unfinished runs are re-read (`runs=`), and every few
// refreshes (on the first page) the page itself, to pick up new runs.
import { html, useEffect, useMemo, useState } from "../html.js";
import { enc, get } from "../api.js";
import { duration, glyph, stateClass, TERMINAL_RUN, when } from "../format.js";
import { Crumbs, ErrorBox, Loading, usePolling } from "./common.js";

const PAGE = 25;
const POLL_MS = 2000;
const IDLE_MS = 15000;
/** While runs are going, every Nth refresh of the first page re-reads the page (new runs). */
const PAGE_EVERY = 5;

function ms(n) {
  if (n === null || n === undefined) return null;
  return duration(new Date(0).toISOString(), new Date(n).toISOString());
}

function cellTitle(taskId, run, state, i, attempts, workers) {
  const parts = [`${taskId} · ${state}`];
  const attempt = attempts.get(i);
  if (attempt) parts.push(`attempt ${attempt}`);
  const took = ms(run.durationsMs[i]);
  if (took) parts.push(took);
  const w = run.workerIndex[i];
  if (w !== null && w !== undefined && workers[w]) parts.push(`on ${workers[w]}`);
  parts.push(`run ${run.runId}`);
  return parts.join(" · ");
}

function Cell({ dagTask, run, code, i, codes, attempts, workers }) {
  if (code === "-" || !codes[code]) {
    return html`<td class="gc-none" title=${`${dagTask}: not in run ${run.runId}`}><span aria-hidden="true">·</span>
      <span class="sr-only">not in this run</span></td>`;
  }
  const state = codes[code];
  const attempt = attempts.get(i);
  return html`<td><a class=${`gc ${stateClass(state)}`} data-state=${state}
    href=${`/runs/${enc(run.runId)}/tasks/${enc(dagTask)}`}
    title=${cellTitle(dagTask, run, state, i, attempts, workers)}><span aria-hidden="true">${glyph(state)}</span
    >${attempt ? html`<sup aria-hidden="true">${attempt}</sup>` : null}<span class="sr-only">${state}</span></a></td>`;
}

function Legend({ codes }) {
  const states = Object.values(codes).filter(Boolean);
  return html`<ul class="legend" aria-label="Legend">
    ${states.map((s) => html`<li key=${s}><span class=${`gc ${stateClass(s)}`} aria-hidden="true">${glyph(s)}</span> ${s.toLowerCase()}</li>`)}
    <li><span class="gc gc-legend-none" aria-hidden="true">·</span> not in run</li>
    <li><span class="muted">² attempt</span></li>
  </ul>`;
}

export function GridView({ dagId }) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  // Cursors of the pages before this one: [] on the first page.
  const [back, setBack] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [tick, setTick] = useState(0);

  useEffect(() => { document.title = `Grid · ${dagId} · kiok`; }, [dagId]);

  const base = `/api/v1/dags/${enc(dagId)}/grid`;
  // `?limit=N` in the page's URL shows N runs per page (1-100) instead of PAGE.
  const asked = Number(new URLSearchParams(location.search).get("limit"));
  const pageSize = Number.isInteger(asked) && asked >= 1 ? Math.min(100, asked) : PAGE;
  const pageUrl = `${base}?limit=${pageSize}${cursor ? `&cursor=${enc(cursor)}` : ""}`;
  const unfinished = data ? data.runs.filter((r) => !TERMINAL_RUN.has(r.state)).map((r) => r.runId) : [];
  const firstPage = cursor === null;

  const load = async () => {
    try {
      const wholePage = data === null || unfinished.length === 0 || (firstPage && tick % PAGE_EVERY === 0);
      if (wholePage) {
        setData(await get(pageUrl));
      } else {
        const fresh = await get(`${base}?runs=${unfinished.map(enc).join(",")}`);
        setData((old) => merge(old, fresh));
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

  const codes = data ? data.codes : {};
  const rows = useMemo(() => {
    if (!data) return [];
    return data.runs.map((r) => ({ run: r, attempts: new Map(r.attempts.map(([i, a]) => [i, a])) }));
  }, [data]);

  const older = () => { setBack([...back, cursor]); setCursor(data.nextCursor); setData(null); };
  const newer = () => { setCursor(back[back.length - 1]); setBack(back.slice(0, -1)); setData(null); };

  return html`<main class="page wide-page">
    <${Crumbs} items=${[["DAGs", "/dags"], [dagId, `/dags/${enc(dagId)}`], ["Grid"]]} />
    <div class="page-head">
      <h1><span class="mono">${dagId}</span> <span class="muted">grid</span></h1>
      <div class="spacer"></div>
      <button type="button" onClick=${newer} disabled=${firstPage}>← Newer runs</button>
      <button type="button" onClick=${older} disabled=${!data || !data.nextCursor}>Older runs →</button>
    </div>
    <${ErrorBox} error=${error} label="Could not load the grid" />
    ${data === null && !error ? html`<${Loading} />` : null}
    ${data && data.runs.length === 0 ? html`<p class="muted">No runs ${firstPage ? "yet" : "on this page"}.</p>` : null}
    ${data && data.runs.length > 0 ? html`
      <${Legend} codes=${codes} />
      ${data.totalTasks > data.tasks.length ? html`<p class="muted small">Showing tasks ${data.taskOffset + 1}–${data.taskOffset + data.tasks.length} of ${data.totalTasks}.</p>` : null}
      <div class="grid-scroll" tabindex="0" aria-label="Runs by task">
        <table class="gridview" data-testid="grid">
          <thead><tr>
            <th scope="col" class="gtask">Task <span class="muted small">(${data.totalTasks})</span></th>
            ${rows.map(({ run }) => html`<th scope="col" key=${run.runId} class="grun">
              <a href=${`/runs/${enc(run.runId)}`} class=${`square ${stateClass(run.state)}`} data-state=${run.state}
                title=${`${run.state} · ${run.runId} · ${when(run.createdAt)}`}><span aria-hidden="true">${glyph(run.state)}</span>
                <span class="sr-only">run ${run.runId}: ${run.state}</span></a></th>`)}
          </tr></thead>
          <tbody>${data.tasks.map((taskId, i) => html`<tr key=${taskId} data-task=${taskId}>
            <th scope="row" class="gtask mono" title=${taskId}>${taskId}</th>
            ${rows.map(({ run, attempts }) => html`<${Cell} key=${run.runId} dagTask=${taskId} run=${run}
              code=${run.cells[i]} i=${i} codes=${codes} attempts=${attempts} workers=${data.workers} />`)}
          </tr>`)}</tbody>
        </table>
      </div>` : null}
  </main>`;
}

/** The page with the re-read runs put in place (their worker indexes re-based). */
function merge(old, fresh) {
  if (!old) return old;
  const workers = [...old.workers];
  const byId = new Map();
  for (const r of fresh.runs) {
    const workerIndex = r.workerIndex.map((w) => {
      if (w === null) return null;
      const name = fresh.workers[w];
      let at = workers.indexOf(name);
      if (at < 0) { workers.push(name); at = workers.length - 1; }
      return at;
    });
    byId.set(r.runId, { ...r, workerIndex });
  }
  if (fresh.tasks.join("\n") !== old.tasks.join("\n")) return old; // the DAG changed: next page load fixes it
  return { ...old, workers, runs: old.runs.map((r) => byId.get(r.runId) || r) };
}
