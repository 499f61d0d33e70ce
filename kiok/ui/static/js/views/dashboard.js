// The dashboard: runs by state, runs created and tasks/s over the last hour (a small SVG
// chart, no library), running runs, waiting runs with why, recently failed runs. One request
// per refresh (`GET /api/v1/dashboard`), every 5 s while runs are going, 15 s otherwise.
import { html, useEffect, useLayoutEffect, useRef, useState } from "../html.js";
import { enc, get } from "../api.js";
import { glyph, runDuration, stateClass, when } from "../format.js";
import { ErrorBox, Loading, StateBadge, usePolling } from "./common.js";

const STATES = ["RUNNING", "PENDING", "SUCCESS", "FAILED", "CANCELLED"];
// The chart is drawn at the size it is shown (its viewBox is its box in CSS pixels), so it
// fills its card at any width and its labels keep their 11 px.
const H = 170;
const PAD = { left: 34, right: 44, top: 12, bottom: 24 };
const TICK_GAP = 64; // the least room, in px, between two time labels

/** The content width of `ref`'s element, kept up to date (`fallback` before it is laid out). */
function useWidth(ref, fallback) {
  const [width, setWidth] = useState(fallback);
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return undefined;
    const measure = () => setWidth(Math.max(200, Math.floor(el.clientWidth)) || fallback);
    measure();
    const watch = new ResizeObserver(measure);
    watch.observe(el);
    return () => watch.disconnect();
  }, []);
  return width;
}

function hhmm(iso, zone = false) {
  const t = when(iso); // "YYYY-MM-DD HH:MM:SS ZONE": the chart's axis needs only HH:MM
  return zone ? `${t.slice(11, 16)} ${t.slice(20)}` : t.slice(11, 16); // the zone: times are labelled
}

/** When a slice of `seconds` that starts at `iso` ends (an ISO time). */
function sliceEnd(iso, seconds) {
  return new Date(Date.parse(iso) + seconds * 1000).toISOString();
}

/** Bars: runs created per slice (left axis; `series[].runs`: the runs created in the slice); line: tasks finished per second (right axis). */
export function ActivityChart({ series, bucketSeconds }) {
  const box = useRef(null);
  const W = useWidth(box, 640);
  const n = series.length;
  const maxRuns = Math.max(1, ...series.map((b) => b.runs));
  const rates = series.map((b) => b.tasks / bucketSeconds);
  const maxRate = Math.max(0.1, ...rates);
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const bw = iw / n;
  const x = (i) => PAD.left + i * bw;
  const yRuns = (v) => PAD.top + ih - (v / maxRuns) * ih;
  const yRate = (v) => PAD.top + ih - (v / maxRate) * ih;
  const line = rates.map((r, i) => `${i ? "L" : "M"}${(x(i) + bw / 2).toFixed(1)},${yRate(r).toFixed(1)}`).join(" ");
  // A label every `step` slices (as many as fit), counted back from the last slice's, so the
  // labels are evenly spaced and the newest slice has one. A slice is labelled with when it
  // ends (the newest: now), its tooltip with its span: labelled with its start, runs created
  // a minute ago read as two minutes older (found by the UI review).
  const step = Math.max(1, Math.ceil(TICK_GAP / bw));
  const ticks = [];
  for (let i = n - 1; i >= 0; i -= step) ticks.unshift(i);
  const totalRuns = series.reduce((s, b) => s + b.runs, 0);
  const totalTasks = series.reduce((s, b) => s + b.tasks, 0);
  const label = `${totalRuns} runs created and ${totalTasks} tasks finished in the last ` +
    `${Math.round((n * bucketSeconds) / 60)} minutes; peak ${maxRate.toFixed(2)} tasks/s`;
  return html`<figure class="chart card" data-testid="activity">
    <figcaption><strong>Activity</strong>
      <span class="legend-item"><span class="key key-runs" aria-hidden="true"></span> runs created</span>
      <span class="legend-item"><span class="key key-rate" aria-hidden="true"></span> tasks/s</span>
      <span class="legend-item muted" data-testid="activity-zone">times in ${series.length ? hhmm(series[0].at, true).slice(6) : "UTC"}</span>
    </figcaption>
    <div ref=${box} class="chart-box"><svg viewBox=${`0 0 ${W} ${H}`} width=${W} height=${H} role="img" aria-label=${label} class="chart-svg">
      <line class="axis" x1=${PAD.left} y1=${PAD.top + ih} x2=${W - PAD.right} y2=${PAD.top + ih} />
      <text class="tick" x=${PAD.left - 6} y=${PAD.top + 8} text-anchor="end">${maxRuns}</text>
      <text class="tick" x=${PAD.left - 6} y=${PAD.top + ih} text-anchor="end">0</text>
      <text class="tick rate" x=${W - PAD.right + 6} y=${PAD.top + 8}>${maxRate.toFixed(1)}/s</text>
      ${series.map((b, i) => html`<rect key=${i} class="bar" x=${x(i) + 1} y=${yRuns(b.runs)}
        width=${Math.max(1, bw - 2)} height=${PAD.top + ih - yRuns(b.runs)}>
        <title>${when(b.at).slice(11, 19)}–${when(sliceEnd(b.at, bucketSeconds)).slice(11)}: ${b.runs} runs created, ${(b.tasks / bucketSeconds).toFixed(2)} tasks/s</title></rect>`)}
      <path class="rate-line" d=${line} />
      ${ticks.map((i) => html`<text key=${`t${i}`} class="tick" x=${x(i) + bw / 2} y=${H - 6} text-anchor="middle">${hhmm(sliceEnd(series[i].at, bucketSeconds))}</text>`)}
    </svg></div>
  </figure>`;
}

function RunList({ runs, empty, testid, show }) {
  if (runs.length === 0) return html`<p class="muted small" data-testid=${testid}>${empty}</p>`;
  return html`<ul class="run-list" data-testid=${testid}>
    ${runs.map((r) => html`<li key=${r.runId} data-run=${r.runId}>
      <${StateBadge} state=${r.state} />
      <div class="run-list-main">
        <a class="mono" href=${`/runs/${enc(r.runId)}`}>${r.runId}</a>
        <div class="muted small">${show(r)}</div>
      </div>
    </li>`)}
  </ul>`;
}

export function Dashboard() {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => { document.title = "Dashboard · kiok"; }, []);

  const load = async () => {
    try {
      setData(await get("/api/v1/dashboard?window=3600&buckets=30"));
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  const busy = data && (data.running.length > 0 || data.waiting.length > 0);
  usePolling(load, busy ? 5000 : 15000, true, [busy]);

  return html`<main class="page">
    <div class="page-head"><h1>Dashboard</h1><span class="muted small">the last hour</span></div>
    <${ErrorBox} error=${error} label="Could not load the dashboard" />
    ${data === null && !error ? html`<${Loading} />` : null}
    ${data ? html`
      <ul class="counts" aria-label="Runs by state" data-testid="counts">
        ${STATES.map((s) => html`<li key=${s} class=${`count ${stateClass(s)}`} data-state=${s}>
          <span class="count-n">${data.counts[s] || 0}</span>
          <span class="count-label"><span aria-hidden="true">${glyph(s)}</span> ${s.toLowerCase()}</span>
        </li>`)}
      </ul>
      <p class="muted small">Unfinished runs, and runs that ended in the last hour.${data.truncated ? " (Only the newest runs were read.)" : ""}</p>
      <${ActivityChart} series=${data.series} bucketSeconds=${data.bucketSeconds} />
      <div class="dash-cols">
        <section class="card dash-card" aria-labelledby="dash-running">
          <h2 id="dash-running">Running</h2>
          <${RunList} runs=${data.running} testid="running" empty="Nothing is running."
            show=${(r) => `${r.dagId} · ${r.tasksDone} of ${r.tasks} tasks done · for ${runDuration(r)}`} />
        </section>
        <section class="card dash-card" aria-labelledby="dash-waiting">
          <h2 id="dash-waiting">Waiting</h2>
          <${RunList} runs=${data.waiting} testid="waiting" empty="No run is waiting."
            show=${(r) => html`${r.dagId} · <span class="waiting-reason">${r.waiting || "waiting"}</span>`} />
        </section>
        <section class="card dash-card" aria-labelledby="dash-failed">
          <h2 id="dash-failed">Recently failed</h2>
          <${RunList} runs=${data.failed} testid="failed" empty="No run failed in the last hour."
            show=${(r) => `${r.dagId} · ended ${when(r.endedAt)}`} />
        </section>
      </div>` : null}
  </main>`;
}
