// A task's log (or the run's, task "__run__"): an offset tail, one request per poll. Live
// follows the end only while you are scrolled to the bottom (scrolled up, the status says it
// is not following and "Jump to end" goes back); Paused stops polling.
//
// Large logs stay responsive: the log is fetched by byte range (CHUNK per request) into a
// LogBuffer of lines, and only the lines on screen (plus a margin) are in the DOM, each drawn
// from its text and colour state. Output is never markup: ANSI colours become classes, URLs
// become links, everything else is a text node.
import { Fragment, html, useEffect, useLayoutEffect, useRef, useState } from "../html.js";
import { ApiError, enc, get } from "../api.js";
import { Crumbs, ErrorBox, StateBadge, usePolling } from "./common.js";
import { TERMINAL_TASK, when } from "../format.js";
import { parseLine, PLAIN, splitUrls, styleClasses, styleColours } from "../ansi.js";
import { LogBuffer, MAX_MATCHES } from "../logbuffer.js";
import { runSpec, skipReason } from "../skipped.js";

const CHUNK = 1024 * 1024;
const DOWNLOAD_CHUNK = 4 * 1024 * 1024;
const POLL_MS = 1000;
const RUN_LOG = "__run__";
/** Every line is this tall (no wrapping), so line i sits at i * LINE_H. */
const LINE_H = 18;
const OVERSCAN = 20;
/** Browsers cap an element's height (~33 M px in Chromium): beyond this the scroll is scaled. */
const MAX_PX = 8_000_000;
/** A line longer than this is cut on screen (search and download still have all of it). */
const MAX_SHOWN = 10_000;

function atBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 8;
}

/** What `taskShown` (in LogView) holds while the task's header is being read. */
const READING = Symbol("reading");

/** Which lines are on screen for a scroll position, and where the first one is drawn. */
export function windowFor(scrollTop, viewHeight, lines) {
  const visible = Math.ceil(viewHeight / LINE_H) + 1;
  const total = lines * LINE_H;
  if (total <= MAX_PX) {
    const first = Math.max(0, Math.floor(scrollTop / LINE_H) - OVERSCAN);
    return { height: total, first, last: Math.min(lines, first + visible + 2 * OVERSCAN), top: first * LINE_H };
  }
  // Scaled: the scroll fraction picks the first line; the window is drawn where you look.
  const fraction = Math.min(1, scrollTop / Math.max(1, MAX_PX - viewHeight));
  const first = Math.round(fraction * Math.max(0, lines - visible + 1));
  return { height: MAX_PX, first, last: Math.min(lines, first + visible), top: scrollTop };
}

/** One line's pieces: colour segments, split at URLs and at search matches. */
function Line({ text, start, marks, current }) {
  const shown = text.length > MAX_SHOWN ? text.slice(0, MAX_SHOWN) : text;
  // kiok's own lines ("[kiok] ...", which no line of a task shows as: kiok/worker/logship.py)
  // start plain whatever colour the task left open: a task cannot hide or restyle them; nor
  // the "[task] " kiok writes before a task's line that would read as its own.
  const plain = shown.startsWith("[kiok]") || shown.startsWith("[task] ");
  const { segments } = parseLine(shown, plain ? PLAIN : start);
  const out = [];
  let pos = 0;
  for (const seg of segments) {
    const cls = styleClasses(seg.style);
    const colours = styleColours(seg.style);
    for (const piece of splitUrls(seg.text)) {
      // Cut the piece at match boundaries so matches can be highlighted.
      const cuts = [];
      let at = 0;
      for (const m of marks) {
        const s = Math.max(m.start - pos, at);
        const e = Math.min(m.end - pos, piece.text.length);
        if (s >= e) continue;
        if (s > at) cuts.push({ text: piece.text.slice(at, s), mark: null });
        cuts.push({ text: piece.text.slice(s, e), mark: m });
        at = e;
      }
      if (at < piece.text.length) cuts.push({ text: piece.text.slice(at), mark: null });
      const inner = cuts.map((c) => (c.mark
        ? html`<mark class=${c.mark.index === current ? "current" : undefined}>${c.text}</mark>`
        : c.text));
      const body = piece.url
        ? html`<a href=${piece.url} target="_blank" rel="noopener noreferrer">${inner}</a>`
        : inner;
      out.push(cls || colours.color || colours.backgroundColor
        ? html`<span class=${cls || undefined} style=${colours}>${body}</span>`
        : body);
      pos += piece.text.length;
    }
  }
  if (shown !== text) out.push(html`<span class="muted"> … (${(text.length - MAX_SHOWN).toLocaleString("en")} more characters)</span>`);
  return html`<${Fragment}>${out}<//>`; // through html.js's `h`, like every text shown
}

function LogLines({ buffer, version, box, onScroll, current, empty, plainLines = false }) {
  const [view, setView] = useState({ top: 0, height: 600 });
  const measure = () => {
    const el = box.current;
    if (el) setView({ top: el.scrollTop, height: el.clientHeight });
  };
  useLayoutEffect(measure, [version]);
  useEffect(() => {
    addEventListener("resize", measure);
    return () => removeEventListener("resize", measure);
  }, []);
  const lines = buffer.lineCount;
  const w = windowFor(view.top, view.height, lines);
  const rows = [];
  for (let i = w.first; i < w.last; i++) {
    const marks = buffer.matchesOn(i).map((k) => ({ ...buffer.matches[k], index: k }));
    // kiok's own lines are drawn apart (a tinted row with a stripe): no output of a task can
    // look so, not even one that only looks like "[kiok]" (a Cyrillic "і").
    const own = buffer.lines[i].startsWith("[kiok]");
    rows.push(html`<span class=${own ? "ln kiok" : "ln"} key=${i} data-line=${i + 1}><${Line} text=${buffer.lines[i]}
      start=${plainLines ? PLAIN : buffer.starts[i]} marks=${marks} current=${current} /></span>`);
  }
  return html`<pre class="log" ref=${box} tabindex="0" role="log" aria-label="Log output" data-testid="log"
    onScroll=${(e) => { onScroll(e); measure(); }}><span class="log-space" style=${{ height: `${Math.max(w.height, LINE_H)}px` }}><span
      class="log-window" style=${{ transform: `translateY(${w.top}px)` }}>${lines === 0
        ? html`<span class="ln muted">${empty}</span>` : rows}</span></span></pre>`;
}

/** Scroll so that line `i` is in the middle of the box. */
function scrollToLine(el, i, lines) {
  const total = lines * LINE_H;
  if (total <= MAX_PX) el.scrollTop = Math.max(0, i * LINE_H - el.clientHeight / 2);
  else el.scrollTop = (i / Math.max(1, lines)) * (MAX_PX - el.clientHeight);
}

async function downloadRaw(runId, taskId) {
  // The API's bytes from offset 0 to the end, in the largest pages it gives.
  const parts = [];
  let offset = 0;
  for (;;) {
    const body = await get(`/api/v1/runs/${enc(runId)}/tasks/${enc(taskId)}/log?offset=${offset}&limit=${DOWNLOAD_CHUNK}`);
    if (body.data) parts.push(body.data);
    if (body.nextOffset === offset || body.complete) break;
    offset = body.nextOffset;
  }
  const url = URL.createObjectURL(new Blob(parts, { type: "text/plain;charset=utf-8" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = `${runId}.${taskId === RUN_LOG ? "run" : taskId}.log`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function SearchBar({ buffer, version, current, setCurrent, box, onSearch }) {
  const [query, setQuery] = useState("");
  const count = buffer.query ? buffer.matches.length : 0;
  // Counted from the buffer as it is now (``fresh``: a search just made, from its first
  // match): Enter right after typing searched, then found no match in the last render's count.
  const go = (delta, fresh = false) => {
    const n = buffer.query ? buffer.matches.length : 0;
    if (n === 0) return;
    const at = fresh ? null : current;
    const next = at === null ? (delta > 0 ? 0 : n - 1) : (at + delta + n) % n;
    setCurrent(next);
    scrollToLine(box.current, buffer.matches[next].line, buffer.lineCount);
  };
  useEffect(() => {
    const timer = setTimeout(() => onSearch(query), 150);
    return () => clearTimeout(timer);
  }, [query]);
  return html`<div class="log-search" role="search">
    <label class="sr-only" for="log-q">Search the log</label>
    <input id="log-q" type="search" placeholder="Search the log" value=${query}
      onInput=${(e) => setQuery(e.currentTarget.value)}
      onKeyDown=${(e) => {
        if (e.key !== "Enter") return;
        e.preventDefault();
        const fresh = buffer.query !== query.toLowerCase();
        if (fresh) onSearch(query);
        go(e.shiftKey ? -1 : 1, fresh);
      }} />
    <span class="muted small" data-testid="log-matches" aria-live="polite" data-version=${version}>${buffer.query
      ? `${count && current !== null ? `${current + 1} of ` : ""}${count >= MAX_MATCHES ? `${MAX_MATCHES}+` : count} match${count === 1 ? "" : "es"}`
      : ""}</span>
    <button type="button" disabled=${!count} onClick=${() => go(-1)} aria-label="Previous match">↑</button>
    <button type="button" disabled=${!count} onClick=${() => go(1)} aria-label="Next match">↓</button>
  </div>`;
}

export function LogView({ runId, taskId }) {
  const buffer = useRef(null);
  if (buffer.current === null) buffer.current = new LogBuffer();
  const [version, setVersion] = useState(0);
  const [offset, setOffset] = useState(0);
  const [complete, setComplete] = useState(false);
  const [live, setLive] = useState(true);
  const [error, setError] = useState(null);
  const [task, setTask] = useState(null);
  const [current, setCurrent] = useState(null);
  const [downloading, setDownloading] = useState(null);
  const box = useRef(null);
  // The current match brought into view sideways too, once its line is drawn (a frame or two
  // after the box scrolled to it): one far right in a long line stayed out of view (found
  // by the UI review).
  useEffect(() => {
    if (current === null) return undefined;
    let tries = 0;
    let frame = 0;
    const look = () => {
      const el = box.current && box.current.querySelector("mark.current");
      if (!el) {
        if (++tries < 10) frame = requestAnimationFrame(look);
        return;
      }
      const at = el.getBoundingClientRect();
      const view = box.current.getBoundingClientRect();
      if (at.left < view.left || at.right > view.right) box.current.scrollLeft += at.left - view.left - view.width / 2;
    };
    frame = requestAnimationFrame(look);
    return () => cancelAnimationFrame(frame);
  }, [current]);
  const follow = useRef(true);
  // The same, for the header: whether the view follows the end (kept in sync on scroll).
  const [following, setFollowing] = useState(true);
  const position = useRef(0);

  const label = taskId === RUN_LOG ? "Run log" : taskId;
  useEffect(() => { document.title = `${label} · ${runId} · kiok`; }, [runId, taskId]);

  // The task's state for the header: read now, when its output first comes (it started),
  // when the log completes, and again after a read that failed (the poll asks for it).
  // The task as last shown; READING while a read is out, null after one that failed.
  const taskShown = useRef(READING);
  const show = (t) => { taskShown.current = t; setTask(t); };
  const readTask = () => get(`/api/v1/runs/${enc(runId)}`).then(async (run) => {
    if (taskId === RUN_LOG) {
      show({ state: run.state, dagId: run.dagId, startedAt: run.startedAt, endedAt: run.endedAt });
      return;
    }
    const t = run.tasks[taskId];
    if (!t) {
      show({ dagId: run.dagId, missing: true });
      return;
    }
    // A skipped task has no output: say why it was skipped (from the DAG version it ran).
    let skipped = null;
    if (t.state === "SKIPPED") {
      const spec = await runSpec(run);
      skipped = skipReason(taskId, run.tasks, spec && spec.tasks);
    }
    show({ ...t, dagId: run.dagId, skipped });
  }).catch(() => { taskShown.current = null; });
  useEffect(() => { readTask(); }, [runId, taskId]);
  useEffect(() => { if (complete) readTask(); }, [complete]);

  usePolling(async () => {
    // Catch up in CHUNK-sized reads (the page redraws between them); once at the end, wait
    // POLL_MS before asking again.
    for (;;) {
      let body;
      try {
        body = await get(`/api/v1/runs/${enc(runId)}/tasks/${enc(taskId)}/log?offset=${position.current}&limit=${CHUNK}`);
      } catch (err) {
        setError(err);
        return !(err instanceof ApiError && (err.status === 404 || err.status === 403));
      }
      // Whether the view follows is the user's to change, by scrolling (onScroll): measured
      // here, an error box shown above the log (which made it shorter) read as scrolled up.
      setError(null);
      const shown = taskShown.current;
      if (shown === null || (shown !== READING && body.data && taskId !== RUN_LOG && !shown.startedAt)) {
        taskShown.current = READING;
        readTask();
      }
      if (body.data) {
        buffer.current.append(body.data);
        setVersion((v) => v + 1);
      }
      position.current = body.nextOffset;
      setOffset(body.nextOffset);
      if (body.complete) {
        setComplete(true);
        return false;
      }
      if (body.nextOffset - body.offset < CHUNK) return true;
      await new Promise((resolve) => setTimeout(resolve, 0)); // let the page draw and respond
    }
  }, POLL_MS, live && !complete, [runId, taskId]);

  useLayoutEffect(() => {
    const el = box.current;
    if (el && live && follow.current && current === null) el.scrollTop = el.scrollHeight;
  }, [version]);
  // The box made shorter (the window, an error shown above it) keeps its end in view while
  // it follows, as new lines do.
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const observer = new ResizeObserver(() => {
      if (live && follow.current && current === null) el.scrollTop = el.scrollHeight;
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, [box.current, live, current]);

  const onSearch = (query) => {
    if (query.toLowerCase() === buffer.current.query) return;
    buffer.current.search(query);
    setCurrent(null);
    setVersion((v) => v + 1);
  };
  const download = () => {
    setDownloading("Preparing…");
    downloadRaw(runId, taskId).then(() => setDownloading(null)).catch((err) => setDownloading(null) || setError(err));
  };

  const lines = buffer.current.lineCount;
  // At a search match the view stays there (the effect above moves it only without one).
  const held = live && !complete && (!following || current !== null) && lines > 0;
  const status = complete ? "complete" : held ? "held" : live ? "live" : "paused";
  const jumpToEnd = () => {
    const el = box.current;
    if (!el) return;
    setCurrent(null);
    el.scrollTop = el.scrollHeight;
    follow.current = true;
    setFollowing(true);
  };
  // No such task (or no access to it), and nothing read: the error alone, no empty log.
  const gone = lines === 0 && ((error instanceof ApiError && (error.status === 404 || error.status === 403))
    || (task && task.missing));
  // A skipped task never ran: its reason stands for the (empty) log.
  const skippedEmpty = lines === 0 && complete && task && task.skipped;
  return html`<main class="page log-page">
    <${Crumbs} items=${[
      ["DAGs", "/dags"],
      ...(task ? [[task.dagId, `/dags/${enc(task.dagId)}`]] : []),
      [runId, `/runs/${enc(runId)}`],
      [label],
    ]} />
    <div class="page-head">
      <h1><span class="mono">${label}</span></h1>
      ${task && task.state ? html`<${StateBadge} state=${task.state} />` : null}
      ${task && task.attempt ? html`<span class="muted">attempt ${task.attempt}</span>` : null}
      ${task && task.startedAt ? html`<span class="muted small" data-testid="log-times">started ${when(task.startedAt)}${
        task.endedAt ? `, ended ${when(task.endedAt)}` : ""}</span>` : null}
      <div class="spacer"></div>
      ${gone ? null : html`<span class=${`log-status ${status}`} data-testid="log-status" aria-live="polite">
        ${complete ? "Complete" : held ? `Live, not following (${current !== null ? "at a search match" : "scrolled up"})` : live ? "Live" : "Paused"} · ${offset.toLocaleString("en")} bytes · ${lines.toLocaleString("en")} lines</span>
      <div class="segmented" role="group" aria-label="Log updates">
        <button type="button" aria-pressed=${live && !complete} disabled=${complete} onClick=${() => setLive(true)}>Live</button>
        <button type="button" aria-pressed=${!live && !complete} disabled=${complete} onClick=${() => setLive(false)}>Paused</button>
      </div>
      ${held ? html`<button type="button" onClick=${jumpToEnd} title="Scroll to the last line and follow it again">↓ Jump to end</button>` : null}
      <button type="button" onClick=${download} disabled=${downloading !== null}>${downloading || "Download raw"}</button>`}
    </div>
    <${ErrorBox} error=${error} label="Log" />
    ${task && !task.startedAt && taskId !== RUN_LOG && !TERMINAL_TASK.has(task.state) && task.waiting
      ? html`<p class="muted">Not started yet: ${task.waiting}</p>` : null}
    ${task && task.missing && !error ? html`<p class="error" role="alert"><strong>Log:</strong> run ${runId} has no task '${taskId}'</p>` : null}
    ${task && task.skipped ? html`<p class="warn-box" data-testid="log-skipped"><strong>${task.skipped[0].toUpperCase()}${task.skipped.slice(1)}</strong>: the task never ran, so it has no output.</p>` : null}
    ${gone || skippedEmpty ? null : html`<${SearchBar} buffer=${buffer.current} version=${version} current=${current} setCurrent=${setCurrent}
      box=${box} onSearch=${onSearch} />
    <${LogLines} buffer=${buffer.current} version=${version} box=${box} current=${current}
      plainLines=${taskId === RUN_LOG /* kiok's own record: no line carries a colour to the next */}
      empty=${complete ? "(empty log)" : "(no output yet)"}
      onScroll=${(e) => { follow.current = atBottom(e.currentTarget); setFollowing(follow.current); }} />`}
  </main>`;
}
