// One run: header (with why it waits), the Graph / Timeline / Source tabs, the job list,
// Cancel and Re-run. Cancel, Re-run and the log links (Run log, the task names in the job list
// and the graph) are offered only as the user's policies allow on this run (`/me?run=`): a
// user who may read the run but not its logs sees the task names as plain text (a task's page
// is its log). Polls the run (one request, only what changed after the first) while it
// is not finished; the DAG (source) and the version the run ran (graph, skip reasons) are
// read once.
import { html, useEffect, useMemo, useRef, useState } from "../html.js";
import { ApiError, enc, get, post } from "../api.js";
import { duration, elapsed, exitText, runDuration, TERMINAL_RUN, when } from "../format.js";
import { navigate, useLocation } from "../router.js";
import { Crumbs, ErrorBox, focusLost, InlineConfirm, Loading, StateBadge, StatusNotice, useConfirm, usePolling } from "./common.js";
import { useCanOnRun } from "../me.js";
import { Graph } from "./graph.js";
import { Timeline } from "./timeline.js";
import { Source } from "./source.js";
import { rerunBlocker, runSpec, skipReason } from "../skipped.js";

const TABS = [["graph", "Graph"], ["timeline", "Timeline"], ["source", "Source"]];

/**
 * What "Re-run failed" (`onlyFailed`) takes again: every task that did not succeed
 * (kiok.core.rerun.rerun_selection), and what depends on them. Its label names the worst of
 * their states, so a run with only cancelled or skipped tasks is not called failed.
 */
export function rerunLabel(tasks) {
  const states = new Set(Object.values(tasks).map((t) => t.state).filter((s) => s !== "SUCCESS"));
  if (states.size === 0) return null;
  return states.has("FAILED") ? "Re-run failed" : states.has("CANCELLED") ? "Re-run cancelled" : "Re-run skipped";
}

function notSucceeded(tasks) {
  const counts = {};
  for (const t of Object.values(tasks)) if (t.state !== "SUCCESS") counts[t.state] = (counts[t.state] || 0) + 1;
  const n = Object.values(counts).reduce((a, b) => a + b, 0);
  const parts = Object.entries(counts).map(([state, k]) => `${k} ${state.toLowerCase()}`).join(", ");
  return `${n === 1 ? "the task" : `the ${n} tasks`} that did not succeed (${parts})`;
}

/**
 * Re-run a finished run in place (POST /runs/{id}/rerun): only its failed tasks (and what
 * they hold up), or a chosen task and everything downstream of it. Successful upstream
 * results are kept. Asks to confirm first, inline, as Cancel does.
 */
function RerunButton({ runId, from, label, question, onDone, small, buttonRef }) {
  const confirm = useConfirm();
  const keep = (el) => {
    confirm.trigger.current = el;
    if (buttonRef) buttonRef.current = el;
  };
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const rerun = async () => {
    setBusy(true);
    setError(null);
    try {
      onDone(await post(`/api/v1/runs/${enc(runId)}/rerun`, { from, onlyFailed: from === null }));
      confirm.done();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const size = small ? "small" : undefined;
  return html`<span class="rerun">
    ${confirm.asking ? html`<${InlineConfirm} label=${from ? `Confirm re-run from ${from}` : "Confirm re-run"}
        onDismiss=${() => { setError(null); confirm.dismiss(); }}>
      <span>${question}</span>
      <button type="button" class=${small ? "primary small" : "primary"} disabled=${busy} onClick=${rerun}>${busy ? "Starting…" : "Yes, re-run"}</button>
      <button type="button" class=${size} onClick=${() => { setError(null); confirm.dismiss(); }}>Keep as is</button>
    <//>` : html`<button type="button" class=${size} ref=${keep} onClick=${confirm.ask}
      aria-label=${from ? `Re-run from ${from}` : undefined}>${label}</button>`}
    <${ErrorBox} error=${error} label="Not re-run" />
  </span>`;
}

/** Why a task waits, as the server says it, except a retry's time: that is shown as every
 * other time on the page (UTC or local, the header's switch), with how long until it. */
export function taskWaiting(t, now = Date.now()) {
  if (t.state !== "RETRYING" || !t.retryAt) return t.waiting;
  const at = new Date(t.retryAt).getTime();
  if (Number.isNaN(at)) return t.waiting;
  const left = at - now;
  return html`retry (attempt ${(t.attempt || 0) + 1}) at <span class="nowrap">${when(t.retryAt)}</span> (${
    left > 0 ? `in ${elapsed(left)}` : "due"})`;
}

const RUN_LOG = "__run__";
const NO_LOGS = "Your policies do not allow reading this run's logs (logs:Read)";

function CancelButton({ runId, onDone }) {
  const confirm = useConfirm();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const cancel = async () => {
    setBusy(true);
    setError(null);
    try {
      onDone(await post(`/api/v1/runs/${enc(runId)}/cancel`));
      confirm.done();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  if (!confirm.asking) {
    return html`<button type="button" class="danger" ref=${confirm.trigger} onClick=${confirm.ask}>Cancel run</button>`;
  }
  return html`<${InlineConfirm} label="Confirm cancel" onDismiss=${() => { setError(null); confirm.dismiss(); }}>
    <span>Cancel this run? Running tasks are stopped.</span>
    <button type="button" class="danger" disabled=${busy} onClick=${cancel}>${busy ? "Cancelling…" : "Yes, cancel"}</button>
    <button type="button" onClick=${() => { setError(null); confirm.dismiss(); }}>Keep running</button>
    <${ErrorBox} error=${error} label="Not cancelled" />
  <//>`;
}

/** One task's row of the job list. "Re-run from here" is offered unless that re-run would
 * skip the task at once: a from-task re-run takes the task and its downstreams, never its
 * upstreams, so one that did not succeed (and does not meet the task's trigger rule) would
 * stop it again. Its confirm opens in a row of its own under the task's, so the table's
 * columns do not move. */
function JobRow({ runId, id, t, tasks, now, logs, rerunnable, ran, exact, cols, onDone }) {
  const confirm = useConfirm();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const specTasks = ran === null ? undefined : exact && exact.tasks;
  const blocker = rerunnable ? rerunBlocker(id, tasks, specTasks) : null;
  const dismiss = () => { setError(null); confirm.dismiss(); };
  const rerun = async () => {
    setBusy(true);
    setError(null);
    try {
      onDone(await post(`/api/v1/runs/${enc(runId)}/rerun`, { from: id, onlyFailed: false }));
      confirm.done();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<tr data-task=${id} class=${confirm.asking ? "asking" : undefined}>
      <td>${logs ? html`<a class="mono" href=${`/runs/${enc(runId)}/tasks/${enc(id)}`}>${id}</a>`
        : html`<span class="mono" data-testid="task-name" title=${NO_LOGS}>${id}</span>`}</td>
      <td><${StateBadge} state=${t.state} /></td>
      <td class="num">${t.attempt || "—"}</td>
      <td class="small">${t.worker ? html`<span class="mono" data-testid="task-worker">${t.worker}</span>` : "—"}</td>
      <td class="small when">${when(t.startedAt)}</td>
      <td class="num">${duration(t.startedAt, t.endedAt, now)}</td>
      <td class=${t.exitCode < 0 ? "num small" : "num"} data-testid="task-exit">${exitText(t.exitCode)}</td>
      <td class="small why">${t.error ? html`<span class="err-text">${t.error}</span>${t.waiting
          ? html`<br /><span class="waiting-text" data-testid="task-waiting">${taskWaiting(t, now)}</span>` : null}`
        : t.waiting ? html`<span class="waiting-text" data-testid="task-waiting">${taskWaiting(t, now)}</span>`
        : t.state === "SKIPPED" ? html`<span class="muted" data-testid="task-skipped">${ran === null ? "skipped" : skipReason(id, tasks, specTasks)}</span>`
        : t.state === "CANCELLED" && !t.startedAt ? html`<span class="muted" data-testid="task-cancelled">cancelled before it started</span>` : ""}</td>
      ${!rerunnable ? null : html`<td class="actions">${blocker
        ? html`<span class="muted small" data-testid="no-rerun"
            title=${`Re-running from ${id} would skip it at once: ${blocker.reason}. Re-run from that upstream, or re-run the failed tasks.`}>
            blocked: ${blocker.short}</span>`
        : html`<button type="button" class="small" ref=${confirm.trigger} aria-expanded=${confirm.asking}
            onClick=${confirm.asking ? dismiss : confirm.ask} aria-label=${`Re-run from ${id}`}>Re-run from here</button>`}</td>`}
    </tr>
    ${confirm.asking ? html`<tr class="confirm-row" data-confirm-for=${id}><td colspan=${cols}>
      <${InlineConfirm} label=${`Confirm re-run from ${id}`} onDismiss=${dismiss}>
        <span>${`Re-run ${id} and everything downstream of it?`}</span>
        <button type="button" class="primary small" disabled=${busy} onClick=${rerun}>${busy ? "Starting…" : "Yes, re-run"}</button>
        <button type="button" class="small" onClick=${dismiss}>Keep as is</button>
        <${ErrorBox} error=${error} label="Not re-run" />
      <//></td></tr>` : null}`;
}

export function RunView({ runId }) {
  const [run, setRun] = useState(null);
  const [dag, setDag] = useState(null);
  const [filter, setFilter] = useState("");
  const where = useLocation();
  const tab = new URLSearchParams(where.split("?")[1] || "").get("tab") || "graph";
  const [error, setError] = useState(null);
  const [now, setNow] = useState(Date.now());
  // What the user may do on the run: asked once the run has loaded (an unknown run, or one
  // the user may not read, is not asked about).
  const [loaded, setLoaded] = useState(null); // the runId read successfully
  const can = useCanOnRun(loaded === runId ? runId : null);

  useEffect(() => { document.title = `${runId} · kiok`; }, [runId]);

  const finished = run !== null && TERMINAL_RUN.has(run.state);
  // After the first read, ask only for what changed since the version held (?since=):
  // the answer's fields and tasks are patched over the held ones (it leaves out the args,
  // which never change), unless it says it is the whole run.
  const held = useRef(null);
  usePolling(async () => {
    try {
      const last = held.current && held.current.runId === runId ? held.current : null;
      const answer = await get(`/api/v1/runs/${enc(runId)}${last ? `?since=${last.version}` : ""}`);
      const r = !last || answer.full !== false ? answer
        : { ...last, ...answer, full: true, tasks: { ...last.tasks, ...answer.tasks } };
      held.current = r;
      setRun(r);
      setLoaded(runId);
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
  // The re-run answers with the run, unfinished again: polling resumes until it ends. The
  // re-run buttons go (the run is not finished): the notice takes the focus. Cancel answers
  // with the run, its cancel requested: Cancel run goes, and the notice takes the focus too.
  // Such a notice ({text, untilEnd}) says what is under way: it goes once the run has ended
  // (the run's state says how), and if it had the focus, the focus goes to the re-run button
  // back in the header (else to the run's heading).
  const [notice, setNotice] = useState(null);
  const afterRerun = (r) => {
    setRun(r);
    setNotice({ text: `Re-run ${r.reruns > 1 ? `#${r.reruns} ` : ""}started.`, untilEnd: true });
  };
  const afterCancel = (r) => {
    setRun(r);
    setNotice(TERMINAL_RUN.has(r.state) ? { text: "Run cancelled.", untilEnd: false }
      : { text: "Cancel requested: the running tasks are being stopped.", untilEnd: true });
  };
  const headerRerun = useRef(null);
  const heading = useRef(null);
  const refocus = useRef(false);
  const runEnded = run !== null && TERMINAL_RUN.has(run.state);
  useEffect(() => {
    if (!runEnded || !notice || !notice.untilEnd) return;
    const el = document.activeElement;
    refocus.current = Boolean(el && el.dataset && el.dataset.testid === "run-notice");
    setNotice(null);
  }, [runEnded, notice]);
  useEffect(() => {
    if (notice !== null || !refocus.current) return;
    refocus.current = false;
    if (!focusLost()) return;
    const to = headerRerun.current && headerRerun.current.isConnected ? headerRerun.current : heading.current;
    if (to) to.focus();
  }, [notice]);

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
  // A task's page is its log: linked only if the logs may be read.
  const logs = can("logs:Read");
  const counts = {};
  for (const [, t] of entries) counts[t.state] = (counts[t.state] || 0) + 1;
  const args = Object.entries(run.args || {});
  const needle = filter.trim().toLowerCase();
  const shown = needle ? entries.filter(([id, t]) => id.toLowerCase().includes(needle) || t.state.toLowerCase() === needle) : entries;

  return html`<main class="page">
    <${Crumbs} items=${[["DAGs", "/dags"], [run.dagId, `/dags/${enc(run.dagId)}`], [run.runId]]} />
    <div class="page-head">
      <h1 tabindex="-1" ref=${heading}><span class="mono">${run.runId}</span></h1>
      <span data-testid="run-state"><${StateBadge} state=${run.state} /></span>
      <div class="spacer"></div>
      ${logs ? html`<a class="button" href=${`/runs/${enc(runId)}/tasks/${RUN_LOG}`}>Run log</a>` : null}
      ${finished || run.cancelRequested || !can("runs:Cancel") ? null : html`<${CancelButton} runId=${runId} onDone=${afterCancel} />`}
      ${rerunnable && rerunLabel(run.tasks)
        ? html`<${RerunButton} runId=${runId} from=${null} label=${rerunLabel(run.tasks)} onDone=${afterRerun} buttonRef=${headerRerun}
            question=${`Re-run ${notSucceeded(run.tasks)}, and what depends on them?`} />` : null}
    </div>
    <${ErrorBox} error=${error} label="Refresh failed" />
    <${StatusNotice} message=${notice && notice.text} testid="run-notice" />
    <dl class="facts card">
      <div><dt>Trigger</dt><dd>${typeof run.trigger === "string" ? run.trigger : JSON.stringify(run.trigger)}${
        run.triggeredBy ? html` by <span class="run-by">${run.triggeredBy}</span>` : null}</dd></div>
      ${run.interval ? html`<div class="span2"><dt>Interval</dt><dd data-testid="run-interval">${when(run.interval.start)} – ${when(run.interval.end)}</dd></div>`
        : run.scheduledAt ? html`<div><dt>Scheduled for</dt><dd data-testid="run-scheduled">${when(run.scheduledAt)}</dd></div>` : null}
      <div><dt>Created</dt><dd>${when(run.createdAt)}</dd></div>
      <div><dt>Started</dt><dd>${when(run.startedAt)}</dd></div>
      <div><dt>Ended</dt><dd>${when(run.endedAt)}</dd></div>
      ${run.lastRerun ? html`<div><dt>Re-run</dt><dd data-testid="run-rerun">${run.reruns > 1 ? `#${run.reruns} ` : ""}by ${run.lastRerun.by || "?"}, ${when(run.lastRerun.requestedAt)}</dd></div>` : null}
      <div><dt>${run.lastRerun ? "Duration (last re-run)" : "Duration"}</dt><dd data-testid="run-duration">${runDuration(run, now)}</dd></div>
      <div class=${Object.keys(counts).length > 1 ? "span2" : undefined}><dt>Tasks</dt><dd data-testid="run-task-counts">${Object.entries(counts).map(([s, n]) => `${n} ${s.toLowerCase()}`).join(", ") || "none"}</dd></div>
      ${args.length ? html`<div class="wide"><dt>Args</dt><dd class="mono">${args.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join("  ")}</dd></div>` : null}
      ${run.waiting ? html`<div class="wide waiting"><dt>Why it waits</dt><dd data-testid="run-waiting">${run.waiting}</dd></div>` : null}
      ${run.cancelRequested && !finished ? html`<div class="wide"><dt>Cancel</dt><dd>requested; stopping the running tasks</dd></div>` : null}
    </dl>
    <div class="tabs" role="tablist" aria-label="Run views">
      ${TABS.map(([key, name]) => html`<button type="button" role="tab" key=${key} aria-selected=${tab === key}
        onClick=${() => navigate(`/runs/${enc(runId)}${key === "graph" ? "" : `?tab=${key}`}`, { replace: true })}>${name}</button>`)}
    </div>
    <section role="tabpanel" aria-label=${TABS.find(([k]) => k === tab)?.[1] || "Graph"} class="tab-panel">
      ${tab === "timeline" ? html`<${Timeline} run=${run} now=${now} specTasks=${ran === null ? undefined : exact && exact.tasks} links=${logs} />`
        : tab === "source" ? (dag === null ? html`<${Loading} />` : dag.missing
          ? html`<p class="muted">The DAG is no longer registered.</p>` : html`<${Source} dag=${dag} />`)
        : graphLoading ? html`<${Loading} />`
        : !graphSpec ? html`<p class="muted">The DAG is no longer registered: no graph, the job list has every task.</p>`
        : html`${exact ? null : html`<p class="muted small" data-testid="graph-version-note">${dagVersion == null
            ? "The run does not say which version of the DAG it ran"
            : `Version ${dagVersion} of the DAG, which this run ran, is no longer kept`}: the edges are those of the DAG as registered now (version ${current.version}).</p>`}
          <${Graph} runId=${runId} dagId=${run.dagId} tasks=${tasks} states=${run.tasks} links=${logs} />`}
    </section>
    <section aria-labelledby="jobs-title">
      <div class="section-head"><h2 id="jobs-title">Jobs</h2>
        <label class="sr-only" for="job-filter">Filter tasks</label>
        <input id="job-filter" type="search" placeholder="Filter by task or state" value=${filter}
          onInput=${(e) => setFilter(e.currentTarget.value)} /></div>
      <div class="table-scroll"><table class="grid-table jobs">
        <thead><tr>
          <th scope="col">Task</th><th scope="col">State</th><th scope="col" class="num">Attempt</th>
          <th scope="col">Worker</th><th scope="col">Started</th><th scope="col" class="num">Duration</th>
          <th scope="col" class="num">Exit</th><th scope="col" class="why">Error or why it waits</th>
          ${rerunnable ? html`<th scope="col"><span class="sr-only">Actions</span></th>` : null}
        </tr></thead>
        <tbody>${shown.map(([id, t]) => html`<${JobRow} key=${id} runId=${runId} id=${id} t=${t} tasks=${run.tasks}
          now=${now} logs=${logs} rerunnable=${rerunnable} ran=${ran} exact=${exact} cols=${rerunnable ? 9 : 8}
          onDone=${afterRerun} />`)}</tbody>
      </table></div>
    </section>
  </main>`;
}
