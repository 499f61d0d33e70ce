// The run's timeline (Gantt): one bar per task from its start to its end (or to now while
// it runs), coloured by state and labelled with the state in text, on a time axis from the
// run's start. It follows the run live: the run view re-renders it on every poll.
//
// The run record keeps each task's current (last) attempt, so a retried task's bar is its
// last attempt; the attempt number is in the bar's label. The axis spans the bars drawn (of a
// re-run run: from the earliest kept attempt, not the run's first start, so the bars are not
// squeezed into the end of it). On a narrow panel (a phone) the task names take less room,
// the plot scrolls sideways under them (they stay put) and a hint says it scrolls.
import { html, useLayoutEffect, useState } from "../html.js";
import { enc } from "../api.js";
import { elapsed, glyph, stateClass, TERMINAL_RUN, when } from "../format.js";
import { skipReason } from "../skipped.js";

const ROW_H = 24;
const AXIS_H = 26;
const MIN_BAR = 2;
/** The task names' column, and on a panel narrower than NARROW px (a phone) a slimmer one. */
const LABEL_W = 200;
const LABEL_W_NARROW = 100;
const NARROW = 600;
/** The plot is never narrower than this: a narrower panel scrolls sideways. */
const MIN_PLOT = 360;

/** The panel's inner width (it follows window resizes), for the SVG to fill it. */
function usePanelWidth(fallback) {
  const [el, setEl] = useState(null);
  const [width, setWidth] = useState(fallback);
  useLayoutEffect(() => {
    if (!el) return undefined;
    const measure = () => {
      const style = getComputedStyle(el);
      const inner = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
      if (inner > 0) setWidth(Math.floor(inner));
    };
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, [el]);
  return [setEl, width];
}

/** "a", "a, b and c", "a, b, c, d, e and 3 more". */
function someOf(ids, most = 5) {
  if (ids.length === 1) return ids[0];
  if (ids.length <= most) return `${ids.slice(0, -1).join(", ")} and ${ids[ids.length - 1]}`;
  return `${ids.slice(0, most).join(", ")} and ${ids.length - most} more`;
}

/** Why the tasks without a bar have none: waiting in a going run, never started in an ended
 * one; a skipped task's reason is the job list's (`skipReason`). `specTasks`: the tasks of
 * the DAG version the run ran, null when not known, undefined while it is being read. */
export function notStartedText(run, rows, specTasks) {
  const started = new Set(rows.map((r) => r.id));
  const rest = Object.entries(run.tasks).filter(([id]) => !started.has(id));
  if (rest.length === 0) return null;
  const n = (k) => `${k} task${k === 1 ? "" : "s"}`;
  if (!TERMINAL_RUN.has(run.state)) return `${n(rest.length)} not started (the job list says why each waits).`;
  const skipped = rest.filter(([, t]) => t.state === "SKIPPED").map(([id]) => id);
  const other = rest.length - skipped.length;
  const parts = [];
  if (skipped.length && specTasks === undefined) parts.push(`${n(skipped.length)} skipped`);
  else if (skipped.length) {
    const byReason = new Map(); // "upstream upload failed" -> [task ids]
    for (const id of skipped) {
      const reason = skipReason(id, run.tasks, specTasks).replace(/^skipped: /, "");
      byReason.set(reason, [...(byReason.get(reason) || []), id]);
    }
    for (const [reason, ids] of byReason) parts.push(`${someOf(ids)} skipped: ${reason}`);
  }
  if (other) {
    const how = run.state === "CANCELLED" ? "was cancelled" : run.state === "FAILED" ? "failed" : "ended";
    parts.push(`${n(other)} never started: the run ${how} first`);
  }
  return `${parts.join(". ")}.`;
}

/** A "nice" tick step (ms) giving about `want` ticks over `span` ms. */
export function tickStep(span, want = 8) {
  const steps = [100, 250, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
    600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000];
  return steps.find((s) => span / s <= want) || steps[steps.length - 1];
}

/** "+1.5 s", "+2 m", "+1 h 30 m": offsets from the run's start. */
export function offsetLabel(ms) {
  if (ms === 0) return "0";
  if (ms < 1000) return `+${ms} ms`;
  if (ms < 60_000) return `+${(ms / 1000).toFixed(ms % 1000 ? 1 : 0)} s`;
  if (ms < 3_600_000) return `+${Math.floor(ms / 60_000)} m${ms % 60_000 ? ` ${Math.round((ms % 60_000) / 1000)} s` : ""}`;
  return `+${Math.floor(ms / 3_600_000)} h${ms % 3_600_000 ? ` ${Math.round((ms % 3_600_000) / 60_000)} m` : ""}`;
}

/** The bars: tasks that started, ordered by start, with their times in ms. */
export function bars(run, now) {
  const out = [];
  for (const [id, t] of Object.entries(run.tasks)) {
    if (!t.startedAt) continue;
    const start = new Date(t.startedAt).getTime();
    const end = t.endedAt ? new Date(t.endedAt).getTime() : now;
    out.push({ id, state: t.state, attempt: t.attempt, start, end: Math.max(start, end), open: !t.endedAt });
  }
  return out.sort((a, b) => a.start - b.start || a.id.localeCompare(b.id));
}

/** The axis: from the earliest bar's start (or the run's start, if the run was not re-run and
 * started before it) to the last bar's end (or the run's end, or now). */
export function axis(run, rows, now) {
  const first = Math.min(...rows.map((r) => r.start));
  const fromRun = run.startedAt && !run.lastRerun;
  const t0 = fromRun ? Math.min(new Date(run.startedAt).getTime(), first) : first;
  const ended = run.endedAt && !run.lastRerun ? new Date(run.endedAt).getTime() : 0;
  const t1 = Math.max(...rows.map((r) => r.end), ended, TERMINAL_RUN.has(run.state) ? 0 : now);
  return { t0, t1, fromRun: Boolean(fromRun && t0 === new Date(run.startedAt).getTime()) };
}

function shortId(id, room) {
  const chars = Math.max(6, Math.floor((room - 12) / 7.3));
  return id.length > chars ? `${id.slice(0, chars - 1)}…` : id;
}

export function Timeline({ run, now, specTasks, links = true }) {
  const [wrap, inner] = usePanelWidth(1100);
  const labelW = inner < NARROW ? LABEL_W_NARROW : LABEL_W;
  const width = Math.max(labelW + 16 + MIN_PLOT, inner);
  const scrolls = width > inner + 1;
  const rows = bars(run, now);
  const notStarted = notStartedText(run, rows, specTasks);
  if (rows.length === 0) {
    return html`<p class="muted" data-testid="timeline">${TERMINAL_RUN.has(run.state) ? notStarted
      : `No task has started yet${run.waiting ? `: ${run.waiting}` : "."}`}</p>`;
  }
  const { t0, t1, fromRun } = axis(run, rows, now);
  const span = Math.max(1, t1 - t0);
  const plot = width - labelW - 16;
  const x = (ms) => labelW + ((ms - t0) / span) * plot;
  const step = tickStep(span);
  const ticks = [];
  for (let t = 0; t <= span; t += step) ticks.push(t);
  const height = AXIS_H + rows.length * ROW_H + 4;
  // The last tick's label ends at its line when it would run past the right edge.
  const tickLabelW = (t) => offsetLabel(t).length * 6.5;
  // A bar opens the task's log; without links (logs the user may not read), an <a> without
  // href, which is no link.
  const href = (id) => (links ? `/runs/${enc(run.runId)}/tasks/${enc(id)}` : undefined);
  return html`<div class="timeline-wrap" data-testid="timeline" ref=${wrap}>
    ${scrolls ? html`<p class="muted small timeline-hint" data-testid="timeline-scroll-hint">Scroll sideways for the whole timeline →</p>` : null}
    <div class="timeline-stack">
    <svg class="timeline" width=${width} height=${height} viewBox=${`0 0 ${width} ${height}`}
      role="img" aria-label=${`Timeline of ${rows.length} started tasks`}>
      ${ticks.map((t) => html`<g key=${t} class="tick">
        <line x1=${x(t0 + t)} x2=${x(t0 + t)} y1=${AXIS_H - 6} y2=${height} />
        ${x(t0 + t) + 3 + tickLabelW(t) > width
          ? html`<text x=${x(t0 + t) - 3} y=${AXIS_H - 10} text-anchor="end">${offsetLabel(t)}</text>`
          : html`<text x=${x(t0 + t) + 3} y=${AXIS_H - 10}>${offsetLabel(t)}</text>`}</g>`)}
      ${rows.map((r, i) => {
        const y = AXIS_H + i * ROW_H;
        const bx = x(r.start);
        const bw = Math.max(MIN_BAR, x(r.end) - bx);
        const label = `${glyph(r.state)} ${r.state}${r.attempt > 1 ? ` · attempt ${r.attempt}` : ""} · ${elapsed(r.end - r.start)}`;
        // The state after the bar; before it when the bar reaches the right edge; inside it
        // when it spans the plot (before it, the label would cover the task's name).
        const labelW2 = label.length * 6.5;
        const place = bx + bw + 5 <= width - 150 ? "right" : bx - 5 - labelW2 >= labelW ? "left" : "inside";
        return html`<a key=${r.id} href=${href(r.id)}
          class=${`bar ${stateClass(r.state)}${r.open ? " open" : ""}`} data-task=${r.id} data-state=${r.state}>
          <title>${r.id}: ${label} · started ${when(new Date(r.start).toISOString())}</title>
          <text x=${labelW - 8} y=${y + 16} class="bar-label">${shortId(r.id, labelW)}</text>
          <rect x=${bx} y=${y + 4} width=${bw} height=${ROW_H - 8} rx="3" />
          <text x=${place === "right" ? bx + bw + 5 : place === "left" ? bx - 5 : bx + 6} y=${y + 16}
            class=${`bar-state${place === "right" ? "" : ` ${place}`}`}>${label}</text>
        </a>`;
      })}
    </svg>
    ${scrolls ? html`<svg class="timeline-names" width=${labelW} height=${height} aria-hidden="true"
      data-testid="timeline-names">
      ${rows.map((r, i) => html`<a key=${r.id} href=${href(r.id)} tabindex="-1">
        <text x=${labelW - 8} y=${AXIS_H + i * ROW_H + 16} class="bar-label">${shortId(r.id, labelW)}</text></a>`)}
    </svg>` : null}
    </div>
    <p class="muted small timeline-note" data-testid="timeline-origin">0 s is ${when(new Date(t0).toISOString())}${fromRun ? " (the run's start)"
      : run.lastRerun ? ` (the earliest start of the attempts shown; the run first started ${when(run.startedAt)} and was re-run ${when(run.lastRerun.requestedAt)})` : ""}.</p>
    ${notStarted ? html`<p class="muted small timeline-note" data-testid="timeline-not-started">${notStarted}</p>` : null}
  </div>`;
}
