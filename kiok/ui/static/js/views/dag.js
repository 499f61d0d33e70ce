// One DAG: what it is, and its runs (newest first), with Run and pause. The version is shown
// with when it was registered (from the DAG's versions: pausing does not make a new one). A
// paused DAG's Run is disabled (unpause it first); an unknown DAG, or one the user may not
// read, shows its error alone.
import { html, useEffect, useState } from "../html.js";
import { ApiError, enc, get } from "../api.js";
import { runDuration, TERMINAL_RUN, when } from "../format.js";
import { cronWords } from "../cron.js";
import { useCan } from "../me.js";
import { Crumbs, ErrorBox, Loading, StateBadge, usePolling } from "./common.js";
import { PauseToggle } from "./dags.js";
import { TriggerDialog } from "./trigger.js";

/** The DAG itself is not to be shown: unknown (404) or not the user's to read (403). */
const shutOut = (err) => err instanceof ApiError && (err.status === 404 || err.status === 403);

export function DagPage({ dagId }) {
  const [dag, setDag] = useState(null);
  const [runs, setRuns] = useState(null);
  const [error, setError] = useState(null);
  const [running, setRunning] = useState(false);
  const [versionAt, setVersionAt] = useState(null); // {version, at, by} of the DAG's version
  const can = useCan();

  useEffect(() => { document.title = `${dagId} · kiok`; }, [dagId]);

  const load = async () => {
    const [d, r] = await Promise.allSettled([
      get(`/api/v1/dags/${enc(dagId)}`),
      get(`/api/v1/runs?dag=${enc(dagId)}&limit=50`),
    ]);
    if (d.status === "rejected") {
      setError(d.reason);
      if (shutOut(d.reason)) {
        setDag(null);
        setRuns(null);
        return false; // no such DAG, or not the user's to read: stop asking
      }
      return true;
    }
    setDag(d.value);
    if (r.status === "fulfilled") setRuns(r.value.runs);
    setError(r.status === "rejected" ? r.reason : null);
    return true;
  };
  const busy = (runs || []).some((r) => !TERMINAL_RUN.has(r.state));
  usePolling(load, busy ? 3000 : 15000, true, [busy]);

  // When the shown version was registered: the DAG's registeredAt is its first version's, and
  // updatedAt moves with a pause too, so ask the versions (read again only for a new version).
  const version = dag ? dag.version : null;
  useEffect(() => {
    if (version === null) return undefined;
    let gone = false;
    get(`/api/v1/dags/${enc(dagId)}/versions`).then((body) => {
      const v = body.versions.find((x) => x.version === version);
      if (!gone) setVersionAt(v ? { version, at: v.registeredAt, by: v.by } : null);
    }).catch(() => { if (!gone) setVersionAt(null); });
    return () => { gone = true; };
  }, [dagId, version]);
  const registered = versionAt && versionAt.version === version ? versionAt.at
    : dag && dag.version === 1 ? dag.registeredAt : null;

  if (shutOut(error) && dag === null) {
    return html`<main class="page">
      <${Crumbs} items=${[["DAGs", "/dags"], [dagId]]} />
      <div class="page-head"><h1><span class="mono">${dagId}</span></h1></div>
      <${ErrorBox} error=${error} label=${error.status === 404 ? "No such DAG" : "Not allowed"} />
    </main>`;
  }
  const paused = dag !== null && dag.paused;

  return html`<main class="page">
    <${Crumbs} items=${[["DAGs", "/dags"], [dagId]]} />
    <div class="page-head">
      <h1><span class="mono">${dagId}</span></h1>
      <div class="spacer"></div>
      <a class="button" href=${`/dags/${enc(dagId)}/grid`}>▦ Grid</a>
      ${dag ? html`<${PauseToggle} dag=${dag} onChanged=${load} onError=${setError} disabled=${!can("dags:Pause")} />` : null}
      ${can("dags:Trigger") && paused ? html`<span class="muted small" id="run-paused-note" data-testid="run-paused-note">Paused: unpause it to run</span>` : null}
      ${can("dags:Trigger") ? html`<button type="button" class="primary" onClick=${() => setRunning(true)} disabled=${!dag || paused}
        title=${paused ? "The DAG is paused: unpause it first" : undefined}
        aria-describedby=${paused ? "run-paused-note" : undefined}>▶ Run</button>` : null}
    </div>
    <${ErrorBox} error=${error} />
    ${dag ? html`<dl class="facts card">
      <div><dt>Name</dt><dd>${dag.name}</dd></div>
      <div><dt>Schedule</dt><dd title=${dag.schedule || ""}>${cronWords(dag.schedule, dag.timezone)}</dd></div>
      <div><dt>Tasks</dt><dd>${dag.tasks}</dd></div>
      <div><dt>${registered ? "Version, registered" : "Version"}</dt><dd data-testid="dag-version" title=${versionAt
        && versionAt.version === version && versionAt.by ? `registered by ${versionAt.by}` : undefined}>v${dag.version}${
        registered ? `, ${when(registered)}` : ""}</dd></div>
      ${dag.description ? html`<div class="wide"><dt>Description</dt><dd>${dag.description}</dd></div>` : null}
    </dl>` : null}
    <h2>Runs</h2>
    ${runs === null && !error ? html`<${Loading} />` : null}
    ${runs !== null && runs.length === 0 ? html`<p class="muted">No runs yet.</p>` : null}
    ${runs !== null && runs.length > 0 ? html`<table class="grid-table">
      <thead><tr><th scope="col">Run</th><th scope="col">State</th><th scope="col">Trigger</th>
        <th scope="col">Created</th><th scope="col" class="num">Duration</th></tr></thead>
      <tbody>${runs.map((r) => html`<tr key=${r.runId}>
        <td><a class="mono" href=${`/runs/${enc(r.runId)}`}>${r.runId}</a></td>
        <td><${StateBadge} state=${r.state} /></td>
        <td>${r.trigger}</td>
        <td class="small when">${when(r.createdAt)}</td>
        <td class="num" title=${r.lastRerun ? "the last re-run's" : null}>${runDuration(r)}</td>
      </tr>`)}</tbody>
    </table>` : null}
    ${running ? html`<${TriggerDialog} dagId=${dagId} onClose=${() => setRunning(false)} />` : null}
  </main>`;
}
