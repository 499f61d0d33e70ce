// A task's log (or the run's, task "__run__"): an offset tail, one request per poll. Live
// follows the end only while you are scrolled to the bottom; Paused stops polling. The log is
// text: each fetched chunk becomes a text node, never markup.
import { html, useEffect, useLayoutEffect, useRef, useState } from "../html.js";
import { ApiError, enc, get } from "../api.js";
import { Crumbs, ErrorBox, StateBadge, usePolling } from "./common.js";
import { TERMINAL_TASK } from "../format.js";

const CHUNK = 256 * 1024;
const POLL_MS = 1000;
const RUN_LOG = "__run__";

function atBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 8;
}

export function LogView({ runId, taskId }) {
  const [chunks, setChunks] = useState([]);
  const [offset, setOffset] = useState(0);
  const [complete, setComplete] = useState(false);
  const [live, setLive] = useState(true);
  const [error, setError] = useState(null);
  const [task, setTask] = useState(null);
  const box = useRef(null);
  const follow = useRef(true);
  const position = useRef(0);

  const label = taskId === RUN_LOG ? "Run log" : taskId;
  useEffect(() => { document.title = `${label} · ${runId} · kiok`; }, [runId, taskId]);

  // The task's state for the header: read once now and once when the log completes.
  const readTask = () => get(`/api/v1/runs/${enc(runId)}`).then((run) => {
    setTask(taskId === RUN_LOG ? { state: run.state, dagId: run.dagId } : { ...run.tasks[taskId], dagId: run.dagId });
  }).catch(() => {});
  useEffect(() => { readTask(); }, [runId, taskId]);
  useEffect(() => { if (complete) readTask(); }, [complete]);

  usePolling(async () => {
    // Catch up in CHUNK-sized reads; once at the end, wait POLL_MS before asking again.
    for (;;) {
      let body;
      try {
        body = await get(`/api/v1/runs/${enc(runId)}/tasks/${enc(taskId)}/log?offset=${position.current}&limit=${CHUNK}`);
      } catch (err) {
        setError(err);
        return !(err instanceof ApiError && (err.status === 404 || err.status === 403));
      }
      setError(null);
      const el = box.current;
      follow.current = el === null || atBottom(el);
      if (body.data) setChunks((list) => [...list, body.data]);
      position.current = body.nextOffset;
      setOffset(body.nextOffset);
      if (body.complete) {
        setComplete(true);
        return false;
      }
      if (body.nextOffset - body.offset < CHUNK) return true;
    }
  }, POLL_MS, live && !complete, [runId, taskId]);

  useLayoutEffect(() => {
    const el = box.current;
    if (el && live && follow.current) el.scrollTop = el.scrollHeight;
  }, [chunks]);

  const status = complete ? "complete" : live ? "live" : "paused";
  return html`<main class="page log-page">
    <${Crumbs} items=${[
      ["DAGs", "/"],
      ...(task ? [[task.dagId, `/dags/${enc(task.dagId)}`]] : []),
      [runId, `/runs/${enc(runId)}`],
      [label],
    ]} />
    <div class="page-head">
      <h1><span class="mono">${label}</span></h1>
      ${task && task.state ? html`<${StateBadge} state=${task.state} />` : null}
      ${task && task.attempt ? html`<span class="muted">attempt ${task.attempt}</span>` : null}
      <div class="spacer"></div>
      <span class=${`log-status ${status}`} data-testid="log-status" aria-live="polite">
        ${complete ? "Complete" : live ? "Live" : "Paused"} · ${offset.toLocaleString("en")} bytes</span>
      <div class="segmented" role="group" aria-label="Log updates">
        <button type="button" aria-pressed=${live && !complete} disabled=${complete} onClick=${() => setLive(true)}>Live</button>
        <button type="button" aria-pressed=${!live && !complete} disabled=${complete} onClick=${() => setLive(false)}>Paused</button>
      </div>
    </div>
    <${ErrorBox} error=${error} label="Log" />
    ${task && !task.startedAt && taskId !== RUN_LOG && !TERMINAL_TASK.has(task.state) && task.waiting
      ? html`<p class="muted">Not started yet: ${task.waiting}</p>` : null}
    <pre class="log" ref=${box} tabindex="0" aria-label="Log output"
      onScroll=${(e) => { follow.current = atBottom(e.currentTarget); }}>${chunks.map((c, i) => html`<span key=${i}>${c}</span>`)}${chunks.length === 0 ? html`<span class="muted">${complete ? "(empty log)" : "(no output yet)"}</span>` : null}</pre>
  </main>`;
}
