// One DAG: what it is, and its runs (newest first), with Run and pause. The version is shown
// with when it was registered (from the DAG's versions: pausing does not make a new one). A
// paused DAG's Run is disabled (unpause it first); an unknown DAG, or one the user may not
// read, shows its error alone. Run and pause are offered as the user's policies allow on this
// DAG (`/me?dag=`): disabled, saying why, where they do not. The runs come 50 a page (Older / Newer, the API's nextCursor);
// the page is in the URL (`?page=`: the cursors that led to it, the current one last; `?limit=`
// another page size), so a reload or Back keeps it.
import { html, useEffect, useState } from "../html.js";
import { ApiError, enc, get } from "../api.js";
import { duration, runDuration, TERMINAL_RUN, when } from "../format.js";
import { navigate, useLocation } from "../router.js";
import { notThePage, pagedUrl, paging, remember, unchecked } from "../paging.js";
import { cronWords } from "../cron.js";
import { useCan, useCanOnDags } from "../me.js";
import { Crumbs, ErrorBox, Loading, StateBadge, usePolling } from "./common.js";
import { PauseToggle, RunButton } from "./dags.js";
import { TriggerDialog } from "./trigger.js";

const PAGE = 50;

/** A run's Duration cell: of a re-run run, from its first start to its end (the re-run's
 * included), marked "re-run", the last re-run's own duration in its tooltip. */
function RunDuration({ r }) {
  if (!r.lastRerun) return html`<td class="num">${runDuration(r)}</td>`;
  const tip = `re-run${r.reruns > 1 ? ` ${r.reruns} times` : ""}${r.lastRerun.by ? ` by ${r.lastRerun.by}` : ""}, `
    + `${when(r.lastRerun.requestedAt)}; first start to end ${duration(r.startedAt, r.endedAt)}, the last re-run ${runDuration(r)}`;
  return html`<td class="num nowrap" title=${tip} data-testid="run-duration">
    <span class="chip small" data-testid="rerun-mark">↻ re-run</span>${duration(r.startedAt, r.endedAt)}</td>`;
}

/** The DAG itself is not to be shown: unknown (404) or not the user's to read (403). */
const shutOut = (err) => err instanceof ApiError && (err.status === 404 || err.status === 403);

export function DagPage({ dagId }) {
  const [dag, setDag] = useState(null);
  const [runs, setRuns] = useState(null);
  const [error, setError] = useState(null);
  const [running, setRunning] = useState(false);
  const [versionAt, setVersionAt] = useState(null); // {version, at, by} of the DAG's version
  const [nextCursor, setNextCursor] = useState(null);
  const can = useCan();
  const canOn = useCanOnDags([dagId]);
  const where = useLocation();
  const { trail, limit, bad } = paging(where, 500);
  const cursor = trail.length ? trail[trail.length - 1] : null;
  const list = `runs:${dagId}`;
  const turn = (next, how) => {
    setRuns(null);
    navigate(pagedUrl(`/dags/${enc(dagId)}`, "", limit, next), how);
  };

  useEffect(() => { document.title = `${dagId} · kiok`; }, [dagId]);

  // A page from a URL whose cursors this session was not given is checked (../paging.js);
  // such a page, or a malformed `?page=`, is the first page (the URL says so).
  const firstPage = () => turn([], { replace: true });
  const load = async () => {
    if (bad) {
      firstPage();
      if (trail.length) return true; // the first page's load follows (the cursor changed)
    }
    const suspect = unchecked(list, trail);
    const [d, r, newest] = await Promise.allSettled([
      get(`/api/v1/dags/${enc(dagId)}`),
      get(`/api/v1/runs?dag=${enc(dagId)}&limit=${limit || PAGE}${cursor ? `&cursor=${cursor}` : ""}`),
      suspect ? get(`/api/v1/runs?dag=${enc(dagId)}&limit=1`) : Promise.resolve(null),
    ]);
    if (suspect && r.status === "fulfilled" && newest.status === "fulfilled") {
      if (notThePage(r.value.runs, r.value.nextCursor, newest.value.runs[0], (a, b) => a.runId === b.runId)) {
        firstPage();
        return true;
      }
      remember(list, trail, null);
    }
    if (r.status === "fulfilled") remember(list, [], r.value.nextCursor);
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
    if (r.status === "fulfilled") {
      setRuns(r.value.runs);
      setNextCursor(r.value.nextCursor);
    }
    setError(r.status === "rejected" ? r.reason : null);
    return true;
  };
  const busy = (runs || []).some((r) => !TERMINAL_RUN.has(r.state));
  usePolling(load, busy ? 3000 : 15000, true, [busy, cursor, limit]);

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
      ${dag ? html`<${PauseToggle} dag=${dag} onChanged=${load} onError=${setError} disabled=${!canOn(dagId, "dags:Pause")} />` : null}
      ${canOn(dagId, "dags:Trigger") && paused ? html`<span class="muted small" id="run-paused-note" data-testid="run-paused-note">Paused: unpause it to run</span>` : null}
      ${can("dags:Trigger") && dag ? html`<${RunButton} dag=${dag} canOn=${canOn} onRun=${() => setRunning(true)}
        describedBy="run-paused-note" />` : null}
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
    <h2>Runs${trail.length ? html` <span class="muted small" data-testid="runs-page">(page ${trail.length + 1})</span>` : null}</h2>
    ${runs === null && !error ? html`<${Loading} />` : null}
    ${runs !== null && runs.length === 0 ? html`<p class="muted">${trail.length ? "No older runs." : "No runs yet."}</p>` : null}
    ${runs !== null && runs.length > 0 ? html`<div class="table-scroll"><table class="grid-table">
      <thead><tr><th scope="col">Run</th><th scope="col">State</th><th scope="col">Trigger</th>
        <th scope="col">Created</th><th scope="col" class="num">Duration</th></tr></thead>
      <tbody>${runs.map((r) => html`<tr key=${r.runId}>
        <td><a class="mono" href=${`/runs/${enc(r.runId)}`}>${r.runId}</a></td>
        <td><${StateBadge} state=${r.state} /></td>
        <td>${r.trigger}${r.scheduledAt ? html`<span class="small muted when" data-testid="run-for"> for ${when(r.scheduledAt)}</span>` : null}</td>
        <td class="small when">${when(r.createdAt)}</td>
        <${RunDuration} r=${r} />
      </tr>`)}</tbody>
    </table></div>` : null}
    ${runs !== null && (trail.length || nextCursor) ? html`<div class="row pager" data-testid="runs-pager">
      <button type="button" disabled=${!trail.length} onClick=${() => turn(trail.slice(0, -1))}>← Newer runs</button>
      <button type="button" disabled=${!nextCursor} onClick=${() => turn([...trail, nextCursor])}>Older runs →</button>
    </div>` : null}
    ${running ? html`<${TriggerDialog} dagId=${dagId} onClose=${() => setRunning(false)} />` : null}
  </main>`;
}
