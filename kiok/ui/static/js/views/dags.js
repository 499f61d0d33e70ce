// The DAGs: origin, schedule in words with the next fire time, paused, the last runs as
// squares (state as text in the title and for screen readers), search and filters (kept in
// the URL), Run and Register (offered only if allowed; Run disabled while the DAG is paused). One request per refresh
// (`GET /api/v1/dags?lastRuns=12`), and one `/me?dag=…` for the DAGs not asked about before:
// Run and the pause switch are disabled, saying why, on a DAG the user's policies keep them
// from (and Run is not offered at all to a user who may trigger no DAG).
import { html, useEffect, useState } from "../html.js";
import { enc, get, post } from "../api.js";
import { glyph, stateClass, TERMINAL_RUN, when } from "../format.js";
import { cronWords } from "../cron.js";
import { useCan, useCanOnDags } from "../me.js";
import { ErrorBox, Loading, useFocusBack, usePolling } from "./common.js";
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

/** Why a DAG action is disabled: the user's policies, on this DAG. */
export const NO_PAUSE = "Your policies do not allow pausing or unpausing this DAG (dags:Pause)";
export const NO_TRIGGER = "Your policies do not allow running this DAG (dags:Trigger)";

/** ▶ Run of one DAG: for a user who may trigger some DAG, disabled (saying why) on one she may
 * not trigger and on a paused one; nothing until the answer for this DAG is in. */
export function RunButton({ dag, canOn, onRun, inList = false, describedBy }) {
  if (!canOn.known(dag.dagId)) return null;
  const allowed = canOn(dag.dagId, "dags:Trigger");
  const why = !allowed ? NO_TRIGGER : dag.paused ? "The DAG is paused: unpause it first" : undefined;
  return html`<button type="button" class=${inList ? "primary small-btn" : "primary"} onClick=${onRun}
    aria-label=${inList ? `Run ${dag.dagId}` : undefined} disabled=${!allowed || dag.paused} title=${why}
    data-testid="run-dag" data-allowed=${String(allowed)}
    aria-describedby=${allowed && dag.paused ? describedBy : undefined}>▶ Run</button>`;
}

export function PauseToggle({ dag, onChanged, onError, disabled = false }) {
  const [busy, setBusy] = useState(false);
  const input = useFocusBack(busy); // Space again toggles it back, Tab goes on from it
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
  const title = disabled ? NO_PAUSE : dag.paused ? "Paused: no scheduled runs" : "Active";
  return html`<label class="switch" title=${title}>
    <input type="checkbox" role="switch" ref=${input} checked=${!dag.paused} disabled=${busy || disabled} onChange=${flip}
      aria-label=${`${dag.dagId} active`} />
    <span class="track" aria-hidden="true"></span>
    <span>${dag.paused ? "paused" : "active"}</span>
  </label>`;
}

/** The last run's state of a DAG (its filter value), or "NONE" without runs. */
const lastState = (d) => (d.lastRuns && d.lastRuns.length ? d.lastRuns[0].state : "NONE");

export function DagList() {
  const [dags, setDags] = useState(null);
  const [error, setError] = useState(null);
  const [rowErrors, setRowErrors] = useState({});
  const initial = new URLSearchParams(location.search);
  const [filter, setFilter] = useState(initial.get("q") || "");
  const [stateFilter, setStateFilter] = useState(initial.get("state") || "");
  const [labelFilter, setLabelFilter] = useState(initial.get("label") || "");
  const [running, setRunning] = useState(null);
  const can = useCan();
  const canOn = useCanOnDags((dags || []).map((d) => d.dagId));

  useEffect(() => { document.title = "DAGs · kiok"; }, []);
  useEffect(() => {
    // The filters are part of the URL, so a filtered list can be shared.
    const q = new URLSearchParams();
    if (filter) q.set("q", filter);
    if (stateFilter) q.set("state", stateFilter);
    if (labelFilter) q.set("label", labelFilter);
    const to = `/dags${q.toString() ? `?${q}` : ""}`;
    if (location.pathname === "/dags" && to !== location.pathname + location.search) history.replaceState(null, "", to);
  }, [filter, stateFilter, labelFilter]);

  const load = async () => {
    try {
      const d = await get(`/api/v1/dags?lastRuns=${LAST_RUNS}`);
      setDags(d.dags.sort((a, b) => a.dagId.localeCompare(b.dagId)));
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  const busy = (dags || []).some((d) => (d.lastRuns || []).some((r) => !TERMINAL_RUN.has(r.state)));
  usePolling(load, busy ? 3000 : 15000, true, [busy]);

  const labels = [...new Set((dags || []).flatMap((d) => d.labels || []))].sort();
  const needle = filter.toLowerCase();
  const shown = (dags || []).filter((d) =>
    (!needle || d.dagId.toLowerCase().includes(needle) || (d.name || "").toLowerCase().includes(needle) ||
      (d.description || "").toLowerCase().includes(needle)) &&
    (!stateFilter || (stateFilter === "PAUSED" ? d.paused : lastState(d) === stateFilter)) &&
    (!labelFilter || (d.labels || []).includes(labelFilter)));
  return html`<main class="page">
    <div class="page-head">
      <h1>DAGs</h1>
      <div class="spacer"></div>
      ${can("dags:Register") ? html`<a class="button primary-link" href="/dags/register">+ Register DAG</a>` : null}
    </div>
    <div class="filters" role="search">
      <input type="search" class="search" placeholder="Search id, name, description" aria-label="Filter DAGs"
        value=${filter} onInput=${(e) => setFilter(e.currentTarget.value)} />
      <label class="inline">Last run
        <select aria-label="Filter by last run state" value=${stateFilter} onChange=${(e) => setStateFilter(e.currentTarget.value)}>
          <option value="">any</option>
          ${["SUCCESS", "FAILED", "RUNNING", "PENDING", "CANCELLED"].map((s) => html`<option value=${s}>${s.toLowerCase()}</option>`)}
          <option value="NONE">no runs</option>
          <option value="PAUSED">paused DAGs</option>
        </select>
      </label>
      <label class="inline">Label
        <select aria-label="Filter by label" value=${labelFilter} onChange=${(e) => setLabelFilter(e.currentTarget.value)}>
          <option value="">any</option>
          ${labels.map((l) => html`<option value=${l}>${l}</option>`)}
        </select>
      </label>
      ${dags ? html`<span class="muted small" data-testid="dag-count">${shown.length} of ${dags.length}</span>` : null}
    </div>
    <${ErrorBox} error=${error} label="Could not load the DAGs" />
    ${dags === null && !error ? html`<${Loading} />` : null}
    ${dags !== null && dags.length === 0 ? html`<div class="card empty">
      <p>No DAGs registered yet.</p>
      <p class="muted">${can("dags:Register") ? html`<a href="/dags/register">Register one here</a>, or ` : null}use${" "}
        <code>kiok dags register my_dag.yaml</code> or <code>POST /api/v1/dags</code>.</p>
    </div>` : null}
    ${dags !== null && dags.length > 0 ? html`<div class="table-scroll"><table class="grid-table dags">
      <thead><tr>
        <th scope="col">DAG</th><th scope="col">Origin</th><th scope="col">Schedule</th><th scope="col">State</th>
        <th scope="col">Last runs</th><th scope="col" class="actions"><span class="sr-only">Actions</span></th>
      </tr></thead>
      <tbody>
        ${shown.map((d) => html`<tr key=${d.dagId} data-dag=${d.dagId}>
          <td>
            <a class="strong mono" href=${`/dags/${enc(d.dagId)}`}>${d.dagId}</a>
            ${d.name && d.name !== d.dagId ? html`<div>${d.name}</div>` : null}
            ${d.description ? html`<div class="muted small">${d.description}</div>` : null}
            <div class="muted small">${d.tasks} task${d.tasks === 1 ? "" : "s"} · v${d.version}
              ${d.labels && d.labels.length ? html` · ${d.labels.map((l) => html`<span class="chip" key=${l}>${l}</span>`)}` : null}</div>
            ${rowErrors[d.dagId] ? html`<${ErrorBox} error=${rowErrors[d.dagId]} />` : null}
          </td>
          <td class="small">${d.origin || "manual"}</td>
          <td class="small" data-testid="schedule">
            <div title=${d.schedule || ""}>${cronWords(d.schedule, d.timezone)}</div>
            ${d.schedule ? html`<div class="muted">${d.nextFireAt ? html`next <span class="when">${when(d.nextFireAt)}</span>` : d.paused ? "paused: no next run" : ""}</div>` : null}
          </td>
          <td><${PauseToggle} dag=${d} onChanged=${load} disabled=${!canOn(d.dagId, "dags:Pause")}
            onError=${(err) => setRowErrors({ ...rowErrors, [d.dagId]: err })} /></td>
          <td><${RunSquares} runs=${d.lastRuns} /></td>
          <td class="actions">${can("dags:Trigger") ? html`<${RunButton} dag=${d} canOn=${canOn} inList
              onRun=${() => setRunning(d.dagId)} />
            ${d.paused && canOn(d.dagId, "dags:Trigger") ? html`<div class="muted small" data-testid="run-paused-note">unpause to run</div>` : null}` : null}</td>
        </tr>`)}
      </tbody>
    </table></div>` : null}
    ${dags !== null && dags.length > 0 && shown.length === 0 ? html`<p class="muted">No DAG matches the filters.</p>` : null}
    ${running ? html`<${TriggerDialog} dagId=${running} onClose=${() => setRunning(null)} />` : null}
  </main>`;
}
