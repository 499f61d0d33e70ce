// The DAGs: schedule, paused, the last runs as squares (state as text in the title and for
// screen readers), and Run. Two requests per refresh: the DAGs and the newest runs.
import { html, useEffect, useState } from "../html.js";
import { enc, get, post } from "../api.js";
import { glyph, schedule, stateClass, TERMINAL_RUN, when } from "../format.js";
import { ErrorBox, Loading, usePolling } from "./common.js";
import { TriggerDialog } from "./trigger.js";

const LAST_RUNS = 12;

export function RunSquares({ runs }) {
  if (!runs || runs.length === 0) return html`<span class="muted">no runs yet</span>`;
  return html`<ol class="squares" aria-label="Last runs, newest first">
    ${runs.map((r) => html`<li key=${r.runId}>
      <a href=${`/runs/${enc(r.runId)}`} class=${`square ${stateClass(r.state)}`} data-state=${r.state}
        title=${`${r.state} · ${r.runId} · ${when(r.createdAt)}`}>
        <span aria-hidden="true">${glyph(r.state)}</span>
        <span class="sr-only">${r.state}: run ${r.runId}</span>
      </a></li>`)}
  </ol>`;
}

export function PauseToggle({ dag, onChanged, onError }) {
  const [busy, setBusy] = useState(false);
  const flip = async () => {
    setBusy(true);
    try {
      await post(`/api/v1/dags/${enc(dag.dagId)}/${dag.paused ? "unpause" : "pause"}`);
      await onChanged();
    } catch (err) {
      onError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<label class="switch" title=${dag.paused ? "Paused: no scheduled runs" : "Active"}>
    <input type="checkbox" role="switch" checked=${!dag.paused} disabled=${busy} onChange=${flip}
      aria-label=${`${dag.dagId} active`} />
    <span class="track" aria-hidden="true"></span>
    <span>${dag.paused ? "paused" : "active"}</span>
  </label>`;
}

export function DagList() {
  const [dags, setDags] = useState(null);
  const [runsByDag, setRunsByDag] = useState({});
  const [error, setError] = useState(null);
  const [rowErrors, setRowErrors] = useState({});
  const [filter, setFilter] = useState("");
  const [running, setRunning] = useState(null);

  useEffect(() => { document.title = "DAGs · kiok"; }, []);

  const load = async () => {
    try {
      const [d, r] = await Promise.all([get("/api/v1/dags"), get("/api/v1/runs?limit=200")]);
      const grouped = {};
      for (const run of r.runs) {
        const list = (grouped[run.dagId] ||= []);
        if (list.length < LAST_RUNS) list.push(run);
      }
      setDags(d.dags.sort((a, b) => a.dagId.localeCompare(b.dagId)));
      setRunsByDag(grouped);
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  const busy = Object.values(runsByDag).some((list) => list.some((r) => !TERMINAL_RUN.has(r.state)));
  usePolling(load, busy ? 3000 : 15000, true, [busy]);

  const shown = (dags || []).filter((d) => !filter || d.dagId.includes(filter) || (d.name || "").includes(filter));
  return html`<main class="page">
    <div class="page-head">
      <h1>DAGs</h1>
      <input type="search" class="search" placeholder="Filter by id or name" aria-label="Filter DAGs"
        value=${filter} onInput=${(e) => setFilter(e.currentTarget.value)} />
    </div>
    <${ErrorBox} error=${error} label="Could not load the DAGs" />
    ${dags === null && !error ? html`<${Loading} />` : null}
    ${dags !== null && dags.length === 0 ? html`<div class="card empty">
      <p>No DAGs registered yet.</p>
      <p class="muted">Register one with <code>kiok dags register my_dag.yaml</code> or <code>POST /api/v1/dags</code>.</p>
    </div>` : null}
    ${dags !== null && dags.length > 0 ? html`<table class="grid-table dags">
      <thead><tr>
        <th scope="col">DAG</th><th scope="col">Schedule</th><th scope="col">State</th>
        <th scope="col">Last runs</th><th scope="col" class="actions"><span class="sr-only">Actions</span></th>
      </tr></thead>
      <tbody>
        ${shown.map((d) => html`<tr key=${d.dagId} data-dag=${d.dagId}>
          <td>
            <a class="strong mono" href=${`/dags/${enc(d.dagId)}`}>${d.dagId}</a>
            ${d.name && d.name !== d.dagId ? html`<div>${d.name}</div>` : null}
            ${d.description ? html`<div class="muted small">${d.description}</div>` : null}
            <div class="muted small">${d.tasks} task${d.tasks === 1 ? "" : "s"} · v${d.version}
              ${d.labels && d.labels.length ? html` · labels ${d.labels.join(", ")}` : null}</div>
            ${rowErrors[d.dagId] ? html`<${ErrorBox} error=${rowErrors[d.dagId]} />` : null}
          </td>
          <td class="mono small">${schedule(d.schedule, d.timezone)}</td>
          <td><${PauseToggle} dag=${d} onChanged=${load}
            onError=${(err) => setRowErrors({ ...rowErrors, [d.dagId]: err })} /></td>
          <td><${RunSquares} runs=${runsByDag[d.dagId]} /></td>
          <td class="actions"><button type="button" class="primary small-btn" onClick=${() => setRunning(d.dagId)}
            aria-label=${`Run ${d.dagId}`}>▶ Run</button></td>
        </tr>`)}
      </tbody>
    </table>` : null}
    ${running ? html`<${TriggerDialog} dagId=${running} onClose=${() => setRunning(null)} />` : null}
  </main>`;
}
