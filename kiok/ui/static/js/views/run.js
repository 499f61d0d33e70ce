// One run: header, graph, job list, Cancel. Polls the run (one request) while it is not
// finished; the DAG's shape for the graph is read once.
import { html, useEffect, useMemo, useState } from "../html.js";
import { ApiError, enc, get, post } from "../api.js";
import { duration, TERMINAL_RUN, when } from "../format.js";
import { Crumbs, ErrorBox, Loading, StateBadge, usePolling } from "./common.js";
import { Graph } from "./graph.js";

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
  const [spec, setSpec] = useState(null);
  const [error, setError] = useState(null);
  const [now, setNow] = useState(Date.now());

  useEffect(() => { document.title = `${runId} · kiok`; }, [runId]);

  const finished = run !== null && TERMINAL_RUN.has(run.state);
  usePolling(async () => {
    try {
      const r = await get(`/api/v1/runs/${enc(runId)}`);
      setRun(r);
      setNow(Date.now());
      setError(null);
      return !TERMINAL_RUN.has(r.state);
    } catch (err) {
      setError(err);
      return !(err instanceof ApiError && err.status === 404);
    }
  }, 1500, !finished, [runId]);

  const dagId = run && run.dagId;
  useEffect(() => {
    if (!dagId) return;
    get(`/api/v1/dags/${enc(dagId)}`).then((d) => setSpec(d.spec)).catch(() => setSpec({ missing: true }));
  }, [dagId]);

  // The graph follows the run's own tasks; edges come from the DAG as registered now.
  const tasks = useMemo(() => {
    if (!run) return [];
    const requires = {};
    for (const t of (spec && spec.tasks) || []) requires[t.id] = t.requires || [];
    return Object.keys(run.tasks).map((id) => ({ id, requires: requires[id] || [] }));
  }, [run && Object.keys(run.tasks).join("\n"), spec]);

  if (run === null) {
    return html`<main class="page"><${ErrorBox} error=${error} label="Could not load the run" />
      ${error ? null : html`<${Loading} />`}</main>`;
  }
  const entries = Object.entries(run.tasks);
  const counts = {};
  for (const [, t] of entries) counts[t.state] = (counts[t.state] || 0) + 1;
  const args = Object.entries(run.args || {});

  return html`<main class="page">
    <${Crumbs} items=${[["DAGs", "/"], [run.dagId, `/dags/${enc(run.dagId)}`], [run.runId]]} />
    <div class="page-head">
      <h1><span class="mono">${run.runId}</span></h1>
      <span data-testid="run-state"><${StateBadge} state=${run.state} /></span>
      <div class="spacer"></div>
      <a class="button" href=${`/runs/${enc(runId)}/tasks/${RUN_LOG}`}>Run log</a>
      ${finished ? null : html`<${CancelButton} runId=${runId} onDone=${setRun} />`}
    </div>
    <${ErrorBox} error=${error} label="Refresh failed" />
    <dl class="facts card">
      <div><dt>Trigger</dt><dd>${typeof run.trigger === "string" ? run.trigger : JSON.stringify(run.trigger)}</dd></div>
      <div><dt>Created</dt><dd>${when(run.createdAt)}</dd></div>
      <div><dt>Started</dt><dd>${when(run.startedAt)}</dd></div>
      <div><dt>Ended</dt><dd>${when(run.endedAt)}</dd></div>
      <div><dt>Duration</dt><dd>${duration(run.startedAt, run.endedAt, now)}</dd></div>
      <div><dt>Tasks</dt><dd>${Object.entries(counts).map(([s, n]) => `${n} ${s.toLowerCase()}`).join(", ") || "none"}</dd></div>
      ${args.length ? html`<div class="wide"><dt>Args</dt><dd class="mono">${args.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join("  ")}</dd></div>` : null}
      ${run.waiting ? html`<div class="wide"><dt>Waiting</dt><dd>${run.waiting}</dd></div>` : null}
      ${run.cancelRequested && !finished ? html`<div class="wide"><dt>Cancel</dt><dd>requested; stopping the running tasks</dd></div>` : null}
    </dl>
    <section aria-labelledby="graph-title">
      <h2 id="graph-title">Graph</h2>
      ${spec && spec.missing ? html`<p class="muted">The DAG is no longer registered: no graph, the job list has every task.</p>`
        : spec ? html`<${Graph} runId=${runId} tasks=${tasks} states=${run.tasks} />` : html`<${Loading} />`}
    </section>
    <section aria-labelledby="jobs-title">
      <h2 id="jobs-title">Jobs</h2>
      <table class="grid-table jobs">
        <thead><tr>
          <th scope="col">Task</th><th scope="col">State</th><th scope="col" class="num">Attempt</th>
          <th scope="col">Worker</th><th scope="col">Started</th><th scope="col" class="num">Duration</th>
          <th scope="col" class="num">Exit</th><th scope="col">Error or why it waits</th>
        </tr></thead>
        <tbody>${entries.map(([id, t]) => html`<tr key=${id} data-task=${id}>
          <td><a class="mono" href=${`/runs/${enc(runId)}/tasks/${enc(id)}`}>${id}</a></td>
          <td><${StateBadge} state=${t.state} /></td>
          <td class="num">${t.attempt || "—"}</td>
          <td class="mono small">${t.worker || "—"}</td>
          <td class="small">${when(t.startedAt)}</td>
          <td class="num">${duration(t.startedAt, t.endedAt, now)}</td>
          <td class="num">${t.exitCode ?? "—"}</td>
          <td class="small">${t.error ? html`<span class="err-text">${t.error}</span>` : t.waiting ? html`<span class="muted">${t.waiting}</span>` : ""}</td>
        </tr>`)}</tbody>
      </table>
    </section>
  </main>`;
}
