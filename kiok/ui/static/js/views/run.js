// One run: header (with why it waits), the Graph / Timeline / Source tabs, the job list,
// Cancel and Re-run. Polls the run (one request, only what changed after the first) while it
// is not finished; the DAG (source) and the version the run ran (graph, skip reasons) are
// read once.
import { html, useEffect, useMemo, useRef, useState } from "../html.js";
import { ApiError, enc, get, post } from "../api.js";
import { duration, exitText, runDuration, TERMINAL_RUN, when } from "../format.js";
import { navigate, useLocation } from "../router.js";
import { Crumbs, ErrorBox, Loading, StateBadge, usePolling } from "./common.js";
import { useCan } from "../me.js";
import { Graph } from "./graph.js";
import { Timeline } from "./timeline.js";
import { Source } from "./source.js";
import { runSpec, skipReason } from "../skipped.js";

const TABS = [["graph", "Graph"], ["timeline", "Timeline"], ["source", "Source"]];
const RERUNNABLE = new Set(["FAILED", "CANCELLED", "SKIPPED"]);

/**
 * Re-run a finished run in place (POST /runs/{id}/rerun): only its failed tasks (and what
 * they hold up), or a chosen task and everything downstream of it. Successful upstream
 * results are kept.
 */
function RerunButton({ runId, from, label, onDone, small }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const rerun = async () => {
    setBusy(true);
    setError(null);
    try {
      onDone(await post(`/api/v1/runs/${enc(runId)}/rerun`, { from, onlyFailed: from === null }));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<span class="rerun">
    <button type="button" class=${small ? "small" : undefined} disabled=${busy} onClick=${rerun}
      aria-label=${from ? `Re-run from ${from}` : undefined}>${busy ? "Starting…" : label}</button>
    <${ErrorBox} error=${error} label="Not re-run" />
  </span>`;
}

const RUN_LOG = "__run__";

function CancelButton({ runId, onDone }) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const cancel = async () => {
    setBusy(true);
    setError(null);
    try {
      onDone(await post(`/api/v1/runs/${enc(runId)}/cancel`));
      setAsking(false);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  if (!asking) {
    return html`<button type="button" class="danger" onClick=${() => setAsking(true)}>Cancel run</button>`;
  }
  return html`<div class="confirm" role="group" aria-label="Confirm cancel">
    <span>Cancel this run? Running tasks are stopped.</span>
    <button type="button" class="danger" disabled=${busy} onClick=${cancel}>${busy ? "Cancelling…" : "Yes, cancel"}</button>
    <button type="button" onClick=${() => setAsking(false)}>Keep running</button>
    <${ErrorBox} error=${error} label="Not cancelled" />
  </div>`;
}

export function RunView({ runId }) {
  const [run, setRun] = useState(null);
  const [dag, setDag] = useState(null);
  const [filter, setFilter] = useState("");
  const where = useLocation();
  const tab = new URLSearchParams(where.split("?")[1] || "").get("tab") || "graph";
  const [error, setError] = useState(null);
  const [now, setNow] = useState(Date.now());
  const can = useCan();

  useEffect(() => { document.title = `${runId} · kiok`; }, [runId]);

  const finished = run !== null && TERMINAL_RUN.has(run.state);
  // After the first read, ask only for what changed since the version held (?since=):
  // the answer's tasks are patched over the held ones, unless it says it is the whole run.
  const held = useRef(null);
  usePolling(async () => {
    try {
      const last = held.current && held.current.runId === runId ? held.current : null;
      const answer = await get(`/api/v1/runs/${enc(runId)}${last ? `?since=${last.version}` : ""}`);
      const r = !last || answer.full !== false ? answer
        : { ...answer, full: true, tasks: { ...last.tasks, ...answer.tasks } };
      held.current = r;
      setRun(r);
      setNow(Date.now());
      setError(null);
      return !TERMINAL_RUN.has(r.state);
    } catch (err) {
      setError(err);
      // Unknown, or not the user's to read: asking again would only repeat the answer.
      return !(err instanceof ApiError && (err.status === 404 || err.status === 403));
    }
  }, 1500, !finished, [runId]);

  const dagId = run && run.dagId;
  const dagVersion = run ? run.dagVersion : undefined;
  useEffect(() => {
    if (!dagId) return;
    get(`/api/v1/dags/${enc(dagId)}`).then(setDag).catch(() => setDag({ missing: true }));
  }, [dagId]);
  // The DAG as the run ran it (its version): the graph's edges and why a task was skipped.
  const [ran, setRan] = useState(null); // { spec } | { spec: null } (not known)
  useEffect(() => {
    if (!dagId) return;
    runSpec({ dagId, dagVersion }).then((spec) => setRan({ spec }));
  }, [dagId, dagVersion]);
  const current = dag && !dag.missing ? dag : null;
  // The run's version, else the DAG as registered now when it is that same version.
  const exact = ran === null ? null : ran.spec
    || (current && dagVersion != null && current.version === dagVersion ? current.spec : null);
  // The graph: the run's version; if that is not kept, the DAG as registered now (said so).
  const graphSpec = exact || (ran !== null && current ? current.spec : null);
  const graphLoading = ran === null || (!exact && dag === null);
  // The re-run answers with the run, unfinished again: polling resumes until it ends.
  const afterRerun = setRun;

  // The graph follows the run's own tasks; edges come from the DAG version the run ran.
  const tasks = useMemo(() => {
    if (!run) return [];
    const requires = {};
    for (const t of (graphSpec && graphSpec.tasks) || []) requires[t.id] = t.requires || [];
    return Object.keys(run.tasks).map((id) => ({ id, requires: requires[id] || [] }));
  }, [run && Object.keys(run.tasks).join("\n"), graphSpec]);

  if (run === null) {
    return html`<main class="page"><${ErrorBox} error=${error} label="Could not load the run" />
      ${error ? null : html`<${Loading} />`}</main>`;
  }
  const entries = Object.entries(run.tasks);
  // Re-run is offered only on a finished run, and only if the user's policies allow it.
  const rerunnable = finished && can("runs:Rerun");
  const counts = {};
  for (const [, t] of entries) counts[t.state] = (counts[t.state] || 0) + 1;
  const args = Object.entries(run.args || {});
  const needle = filter.trim().toLowerCase();
  const shown = needle ? entries.filter(([id, t]) => id.toLowerCase().includes(needle) || t.state.toLowerCase() === needle) : entries;

  return html`<main class="page">
    <${Crumbs} items=${[["DAGs", "/dags"], [run.dagId, `/dags/${enc(run.dagId)}`], [run.runId]]} />
    <div class="page-head">
      <h1><span class="mono">${run.runId}</span></h1>
      <span data-testid="run-state"><${StateBadge} state=${run.state} /></span>
      <div class="spacer"></div>
      <a class="button" href=${`/runs/${enc(runId)}/tasks/${RUN_LOG}`}>Run log</a>
      ${finished || !can("runs:Cancel") ? null : html`<${CancelButton} runId=${runId} onDone=${setRun} />`}
      ${rerunnable && entries.some(([, t]) => RERUNNABLE.has(t.state))
        ? html`<${RerunButton} runId=${runId} from=${null} label="Re-run failed" onDone=${afterRerun} />` : null}
    </div>
    <${ErrorBox} error=${error} label="Refresh failed" />
    <dl class="facts card">
      <div><dt>Trigger</dt><dd>${typeof run.trigger === "string" ? run.trigger : JSON.stringify(run.trigger)}${
        run.triggeredBy ? html` by <span class="run-by">${run.triggeredBy}</span>` : null}</dd></div>
      <div><dt>Created</dt><dd>${when(run.createdAt)}</dd></div>
      <div><dt>Started</dt><dd>${when(run.startedAt)}</dd></div>
      <div><dt>Ended</dt><dd>${when(run.endedAt)}</dd></div>
      ${run.lastRerun ? html`<div><dt>Re-run</dt><dd data-testid="run-rerun">${run.reruns > 1 ? `#${run.reruns} ` : ""}by ${run.lastRerun.by || "?"}, ${when(run.lastRerun.requestedAt)}</dd></div>` : null}
      <div><dt>${run.lastRerun ? "Duration (last re-run)" : "Duration"}</dt><dd data-testid="run-duration">${runDuration(run, now)}</dd></div>
      <div><dt>Tasks</dt><dd>${Object.entries(counts).map(([s, n]) => `${n} ${s.toLowerCase()}`).join(", ") || "none"}</dd></div>
      ${args.length ? html`<div class="wide"><dt>Args</dt><dd class="mono">${args.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join("  ")}</dd></div>` : null}
      ${run.waiting ? html`<div class="wide waiting"><dt>Why it waits</dt><dd data-testid="run-waiting">${run.waiting}</dd></div>` : null}
      ${run.cancelRequested && !finished ? html`<div class="wide"><dt>Cancel</dt><dd>requested; stopping the running tasks</dd></div>` : null}
    </dl>
    <div class="tabs" role="tablist" aria-label="Run views">
      ${TABS.map(([key, name]) => html`<button type="button" role="tab" key=${key} aria-selected=${tab === key}
        onClick=${() => navigate(`/runs/${enc(runId)}${key === "graph" ? "" : `?tab=${key}`}`, { replace: true })}>${name}</button>`)}
    </div>
    <section role="tabpanel" aria-label=${TABS.find(([k]) => k === tab)?.[1] || "Graph"} class="tab-panel">
      ${tab === "timeline" ? html`<${Timeline} run=${run} now=${now} specTasks=${ran === null ? undefined : exact && exact.tasks} />`
        : tab === "source" ? (dag === null ? html`<${Loading} />` : dag.missing
          ? html`<p class="muted">The DAG is no longer registered.</p>` : html`<${Source} dag=${dag} />`)
        : graphLoading ? html`<${Loading} />`
        : !graphSpec ? html`<p class="muted">The DAG is no longer registered: no graph, the job list has every task.</p>`
        : html`${exact ? null : html`<p class="muted small" data-testid="graph-version-note">${dagVersion == null
            ? "The run does not say which version of the DAG it ran"
            : `Version ${dagVersion} of the DAG, which this run ran, is no longer kept`}: the edges are those of the DAG as registered now (version ${current.version}).</p>`}
          <${Graph} runId=${runId} dagId=${run.dagId} tasks=${tasks} states=${run.tasks} />`}
    </section>
    <section aria-labelledby="jobs-title">
      <div class="section-head"><h2 id="jobs-title">Jobs</h2>
        <label class="sr-only" for="job-filter">Filter tasks</label>
        <input id="job-filter" type="search" placeholder="Filter by task or state" value=${filter}
          onInput=${(e) => setFilter(e.currentTarget.value)} /></div>
      <table class="grid-table jobs">
        <thead><tr>
          <th scope="col">Task</th><th scope="col">State</th><th scope="col" class="num">Attempt</th>
          <th scope="col">Worker</th><th scope="col">Started</th><th scope="col" class="num">Duration</th>
          <th scope="col" class="num">Exit</th><th scope="col">Error or why it waits</th>
          ${rerunnable ? html`<th scope="col"><span class="sr-only">Actions</span></th>` : null}
        </tr></thead>
        <tbody>${shown.map(([id, t]) => html`<tr key=${id} data-task=${id}>
          <td><a class="mono" href=${`/runs/${enc(runId)}/tasks/${enc(id)}`}>${id}</a></td>
          <td><${StateBadge} state=${t.state} /></td>
          <td class="num">${t.attempt || "—"}</td>
          <td class="mono small">${t.worker || "—"}</td>
          <td class="small when">${when(t.startedAt)}</td>
          <td class="num">${duration(t.startedAt, t.endedAt, now)}</td>
          <td class=${t.exitCode < 0 ? "num small" : "num"} data-testid="task-exit">${exitText(t.exitCode)}</td>
          <td class="small">${t.error ? html`<span class="err-text">${t.error}</span>`
            : t.waiting ? html`<span class="waiting-text" data-testid="task-waiting">${t.waiting}</span>`
            : t.state === "SKIPPED" ? html`<span class="muted" data-testid="task-skipped">${ran === null ? "skipped" : skipReason(id, run.tasks, exact && exact.tasks)}</span>`
            : t.state === "CANCELLED" && !t.startedAt ? html`<span class="muted" data-testid="task-cancelled">cancelled before it started</span>` : ""}</td>
          ${rerunnable ? html`<td><${RerunButton} runId=${runId} from=${id} label="Re-run from here" onDone=${afterRerun} small /></td>` : null}
        </tr>`)}</tbody>
      </table>
    </section>
  </main>`;
}
