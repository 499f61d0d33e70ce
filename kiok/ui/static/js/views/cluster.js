// The cluster: masters (role, ready, leader and term), workers (labels, slots, draining, last
// heartbeat, task isolation) with Revoke, maintenance mode with Enter/Leave, and, while the
// cluster is not ready, why (`/readyz`, which needs no login). Refreshes every 5 s with two
// requests (`/api/v1/cluster`, `/api/v1/admin/maintenance`). Enter/Leave maintenance is
// offered only with `admin:Maintenance`, Revoke only with `cluster:RevokeWorker` (from
// `/me`); should the API still refuse (e.g. `/me` could not be read), the refusal is shown at
// the action, which is then disabled. A worker's Revoke asks in a row of its own under the
// worker's, so the table's columns do not move and the question wraps within the page.
import { html, useEffect, useState } from "../html.js";
import { ApiError, enc, get, post, request } from "../api.js";
import { when } from "../format.js";
import { refreshMaintenance } from "../maintenance.js";
import { useCan } from "../me.js";
import { ErrorBox, InlineConfirm, Loading, StatusNotice, useConfirm, usePolling } from "./common.js";

const EVERY_MS = 5000;

/** "3s ago", "2m ago", "1h ago" (or the time for older ones). */
export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return when(iso);
}

async function readiness() {
  try {
    const response = await fetch("/readyz", { headers: { Accept: "application/json" }, cache: "no-store" });
    const body = await response.json();
    return response.ok ? null : body.reason || body.status || "not ready";
  } catch (err) {
    return `cannot reach the master: ${err.message}`;
  }
}

function YesNo({ value, yes = "yes", no = "no", bad = false }) {
  const cls = value ? (bad ? "flag warn" : "flag ok") : bad ? "flag" : "flag warn";
  return html`<span class=${cls}><span aria-hidden="true">${value ? "✓" : "✕"}</span> ${value ? yes : no}</span>`;
}

/** An action that asks to confirm, then runs `action` and `onDone`; a refusal (e.g. 403) is
 * kept to be shown next to it, and once the API has said 403 the action stays disabled (the
 * policies will not change here). */
function useConfirmedAction(action, onDone) {
  const asking = useConfirm();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [refused, setRefused] = useState(false);
  const go = async () => {
    setBusy(true);
    setError(null);
    try {
      await action();
      asking.done();
      await onDone();
    } catch (err) {
      setError(err);
      if (err instanceof ApiError && err.status === 403) setRefused(true);
    } finally {
      setBusy(false);
    }
  };
  const dismiss = () => { setError(null); asking.dismiss(); };
  return { asking, busy, error, refused, go, dismiss };
}

/** The button that opens the confirm (disabled after a 403, saying why); with `expands` it
 * stays while the confirm is open elsewhere (a row's), and closes it again. */
function AskButton({ state, label, danger, name, expands = false }) {
  return html`<button type="button" class=${danger ? "danger small-btn" : "small-btn"} disabled=${state.refused}
    ref=${state.asking.trigger} aria-label=${name} aria-expanded=${expands ? state.asking.asking : undefined}
    title=${state.refused ? "Your policies do not allow this" : undefined}
    onClick=${state.asking.asking ? state.dismiss : state.asking.ask}>${label}</button>`;
}

/** The confirm itself, and the refusal under it (both wrap within their box). */
function Asking({ state, label, question, confirm, danger }) {
  const forbidden = state.error instanceof ApiError && state.error.status === 403;
  return html`<${InlineConfirm} label=${`Confirm: ${label}`} onDismiss=${state.dismiss}>
      <span>${question}</span>
      <button type="button" class=${danger ? "danger" : "primary"} disabled=${state.busy} onClick=${state.go}>${state.busy ? "…" : confirm}</button>
      <button type="button" onClick=${state.dismiss}>Cancel</button>
    <//>
    <${ErrorBox} error=${state.error} label=${forbidden ? "Not allowed" : "Failed"} />`;
}

/** A button that asks to confirm in its place, then runs `action`; a refusal is shown next to it. */
function ConfirmAction({ label, question, confirm, danger = false, action, onDone, testid }) {
  const state = useConfirmedAction(action, onDone);
  return html`<div class="action" data-testid=${testid}>
    ${state.asking.asking
      ? html`<${Asking} state=${state} label=${label} question=${question} confirm=${confirm} danger=${danger} />`
      : html`<${AskButton} state=${state} label=${label} danger=${danger} />`}
  </div>`;
}

function Maintenance({ mode, error, onChanged, allowed }) {
  if (error) return html`<${ErrorBox} error=${error} label="Maintenance mode" />`;
  if (!mode) return null;
  const on = mode.enabled;
  return html`<section class=${`card maint ${on ? "on" : ""}`} aria-labelledby="maint-title" data-testid="maintenance">
    <div>
      <h2 id="maint-title">Maintenance mode: <span data-testid="maintenance-state">${on ? "on" : "off"}</span></h2>
      <p class="muted small">${on
        ? `On since ${when(mode.since)}${mode.by ? ` (by ${mode.by})` : ""}. No run starts; running runs go on.`
        : mode.since ? `Last on ${when(mode.since)} – ${when(mode.until)}${mode.by ? ` (by ${mode.by})` : ""}.`
        : "Never switched on."}</p>
    </div>
    ${allowed ? html`<${ConfirmAction}
      testid="maintenance-action"
      label=${on ? "Leave maintenance" : "Enter maintenance"}
      question=${on ? "Let runs start again?" : "Stop new runs from starting (running runs go on)?"}
      confirm=${on ? "Yes, leave" : "Yes, enter"}
      danger=${!on}
      action=${() => post("/api/v1/admin/maintenance", { enabled: !on })}
      onDone=${async () => { await onChanged(); await refreshMaintenance(); }} />` : null}
  </section>`;
}

function Slots({ w }) {
  const busy = Math.max(0, w.slots - w.free);
  return html`<div class="slots" title=${`${busy} busy, ${w.free} free of ${w.slots}`}>
    <progress max=${w.slots || 1} value=${busy} aria-label=${`${w.id}: ${busy} of ${w.slots} slots busy`}></progress>
    <span class="small">${busy} busy / ${w.free} free</span>
  </div>`;
}

const WORKER_COLUMNS = 7;

/** One worker's row; with `revoke`, its Revoke, whose confirm (and refusal) opens in a row of
 * its own under the worker's: the columns stay put and the question wraps within the page. */
function WorkerRow({ w, now, revoke, onDone }) {
  const state = useConfirmedAction(() => request("DELETE", `/api/v1/admin/workers/${enc(w.id)}`), onDone);
  const asking = revoke && state.asking.asking;
  return html`<tr data-worker=${w.id} class=${asking ? "asking" : undefined}>
      <td><div class="mono strong">${w.id}</div><div class="mono small muted">${w.address}</div></td>
      <td>${w.labels.length ? w.labels.map((l) => html`<span class="chip" key=${l}>${l}</span>`) : html`<span class="muted">none</span>`}</td>
      <td><${Slots} w=${w} /></td>
      <td><${YesNo} value=${w.draining} yes="draining" no="no" bad=${true} /></td>
      <td><${YesNo} value=${w.connected} yes="connected" no="disconnected" /></td>
      <td class="small" title=${when(w.lastHeartbeat)}>${ago(w.lastHeartbeat, now)}</td>
      <td class="small"><span class="mono">${w.taskIsolation || "unknown"}</span></td>
      ${revoke ? html`<td class="actions" data-testid="revoke">
        <${AskButton} state=${state} label="Revoke" danger=${true} name=${`Revoke ${w.id}`} expands=${true} /></td>` : null}
    </tr>
    ${asking ? html`<tr class="confirm-row" data-confirm-for=${w.id}><td colspan=${WORKER_COLUMNS + 1}>
      <div class="confirm-box" data-testid="revoke-confirm"><${Asking} state=${state} label=${`Revoke ${w.id}`}
        question=${`Revoke ${w.id}? It is disconnected at once and needs a new join token to come back.`}
        confirm="Yes, revoke" danger=${true} /></div></td></tr>` : null}`;
}

export function ClusterView() {
  const [cluster, setCluster] = useState(null);
  const [mode, setMode] = useState(null);
  const [modeError, setModeError] = useState(null);
  const [error, setError] = useState(null);
  const [notReady, setNotReady] = useState(null);
  const [now, setNow] = useState(Date.now());
  // What a revoke did: its row goes, and the focus with it, so the page says it and the
  // keyboard goes on from there (StatusNotice takes the focus when it was lost).
  const [notice, setNotice] = useState(null);
  const can = useCan();

  useEffect(() => { document.title = "Cluster · kiok"; }, []);

  const load = async () => {
    const [c, m] = await Promise.allSettled([get("/api/v1/cluster"), get("/api/v1/admin/maintenance")]);
    setNow(Date.now());
    if (c.status === "fulfilled") {
      setCluster(c.value);
      setError(null);
      setNotReady(null);
    } else {
      setError(c.reason);
      if (c.reason instanceof ApiError && c.reason.status === 503) setNotReady(await readiness());
    }
    if (m.status === "fulfilled") {
      setMode(m.value);
      setModeError(null);
    } else {
      setModeError(m.reason);
    }
  };
  usePolling(load, EVERY_MS, true, []);

  // Both reads need cluster:Read: a user without it is told once, not twice.
  const refused = (err) => err instanceof ApiError && err.status === 403;
  const sameRefusal = refused(error) && refused(modeError);
  const revoke = can("cluster:RevokeWorker");
  const workers = cluster ? [...cluster.workers].sort((a, b) => a.id.localeCompare(b.id)) : [];
  return html`<main class="page">
    <div class="page-head">
      <h1>Cluster</h1>
      ${cluster ? html`<span class="muted" data-testid="leader">leader <strong class="mono">${cluster.leader || "none"}</strong>, term ${cluster.term}</span>` : null}
    </div>
    ${notReady ? html`<div class="error" role="alert" data-testid="not-ready"><strong>Cluster not ready:</strong> ${notReady}</div>`
      : html`<${ErrorBox} error=${error} label="Could not load the cluster" />`}
    <${Maintenance} mode=${mode} error=${sameRefusal ? null : modeError} onChanged=${load}
      allowed=${can("admin:Maintenance")} />
    ${cluster === null && !error ? html`<${Loading} />` : null}
    ${cluster ? html`
      <h2>Masters</h2>
      <div class="table-scroll"><table class="grid-table" data-testid="masters">
        <thead><tr><th scope="col">Master</th><th scope="col">Role</th><th scope="col">Address</th><th scope="col">Ready</th></tr></thead>
        <tbody>${cluster.masters.map((m) => html`<tr key=${m.id} data-master=${m.id}>
          <td><span class="mono strong">${m.id}</span></td>
          <td><span class=${`role ${m.role}`}>${m.role === "leader" ? "★ leader" : m.role === "unreachable" ? "✕ unreachable" : m.role}</span></td>
          <td class="small"><span class="mono">${m.address || "—"}</span></td>
          <td><${YesNo} value=${m.ready} yes="ready" no="not ready" /></td>
        </tr>`)}</tbody>
      </table></div>
      <h2>Workers <span class="muted small">(${workers.length})</span></h2>
      <${StatusNotice} message=${notice} testid="cluster-notice" />
      ${workers.length === 0 ? html`<p class="muted">No worker connected.</p>` : html`
      <div class="table-scroll"><table class="grid-table workers" data-testid="workers">
        <thead><tr>
          <th scope="col">Worker</th><th scope="col">Labels</th><th scope="col">Slots</th><th scope="col">Draining</th>
          <th scope="col">Connected</th><th scope="col">Last heartbeat</th><th scope="col">Task isolation</th>
          ${revoke ? html`<th scope="col" class="actions"><span class="sr-only">Actions</span></th>` : null}
        </tr></thead>
        <tbody>${workers.map((w) => html`<${WorkerRow} key=${w.id} w=${w} now=${now} revoke=${revoke}
          onDone=${async () => { setNotice(`Worker ${w.id} revoked: it needs a new join token to come back.`); await load(); }} />`)}</tbody>
      </table></div>`}` : null}
  </main>`;
}
