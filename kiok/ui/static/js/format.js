// How states, times and durations are shown. A state is always text plus a glyph, never
// colour alone.
export const TERMINAL_RUN = new Set(["SUCCESS", "FAILED", "CANCELLED"]);
export const TERMINAL_TASK = new Set(["SUCCESS", "FAILED", "SKIPPED", "CANCELLED"]);

const GLYPHS = {
  SUCCESS: "✓",
  FAILED: "✕",
  RUNNING: "▶",
  QUEUED: "◷",
  PENDING: "○",
  RETRYING: "↻",
  SKIPPED: "↷",
  CANCELLED: "⊘",
};

export const glyph = (state) => GLYPHS[state] || "•";
export const stateClass = (state) => `st-${String(state || "unknown").toLowerCase()}`;

const pad = (n) => String(n).padStart(2, "0");

// Times are shown in UTC or in the browser's zone, always labelled; the header switch sets
// it and localStorage remembers it.
const ZONE_KEY = "kiok.timeZone";
const zoneListeners = new Set();
let zoneMode = (() => {
  try {
    return localStorage.getItem(ZONE_KEY) === "local" ? "local" : "utc";
  } catch {
    return "utc";
  }
})();

/** "utc" | "local" */
export const timeZoneMode = () => zoneMode;
export function setTimeZoneMode(mode) {
  zoneMode = mode === "local" ? "local" : "utc";
  try {
    localStorage.setItem(ZONE_KEY, zoneMode);
  } catch {
    // private mode: the choice lasts for this page only
  }
  for (const fn of zoneListeners) fn();
}
export function onTimeZoneChange(fn) {
  zoneListeners.add(fn);
  return () => zoneListeners.delete(fn);
}

/** The browser's zone as a short label ("CEST", "GMT+2"), for local times. */
function localZoneLabel(d) {
  const part = new Intl.DateTimeFormat("en-GB", { timeZoneName: "short" })
    .formatToParts(d).find((p) => p.type === "timeZoneName");
  return part ? part.value : "local";
}

/** "2026-05-04 12:03:09 UTC", or in local time with the zone's name (the header switch). */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  if (zoneMode === "local") {
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${localZoneLabel(d)}`;
  }
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}

/** The one way a duration is shown: "340 ms", "7.1 s", "55 s", "11 m 06 s", "1 h 02 m". */
export function elapsed(ms) {
  if (typeof ms !== "number" || !(ms >= 0)) return "—"; // null >= 0 is true in JS
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 9950) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${pad(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} m`;
}

/** elapsed() between two ISO times (`end` missing: until now). */
export function duration(startIso, endIso, now = Date.now()) {
  if (!startIso) return "—";
  return elapsed((endIso ? new Date(endIso).getTime() : now) - new Date(startIso).getTime());
}

/** How long a run took, or its last re-run: a re-run keeps the run's first start, so the
 * run's own span would count the time between the two. "waiting" while a re-run waits.
 * Masters before re-runs recorded their start leave `lastRerun.startedAt` null for good: a
 * run that runs again or has ended then counts from the re-run's request. */
export function runDuration(run, now = Date.now()) {
  const rerun = run.lastRerun;
  if (!rerun) return duration(run.startedAt, run.endedAt, now);
  const from = rerun.startedAt || (run.state === "RUNNING" || run.endedAt ? rerun.requestedAt : null);
  return from ? duration(from, run.endedAt, now) : run.endedAt ? "—" : "waiting";
}

/** The cron expression with its zone ("manual only" without a schedule). */
export function schedule(cron, timezone) {
  if (!cron) return "manual only";
  return timezone && timezone !== "UTC" ? `${cron} (${timezone})` : `${cron} (UTC)`;
}

const SIGNALS = { 1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM" };

/** A task's exit code in words: "0", "3", or for a process ended by a signal (a negative
 * code, as the worker reports it) "killed by SIGTERM (-15)"; "—" without one. */
export function exitText(code) {
  if (code === null || code === undefined) return "—";
  if (code >= 0) return String(code);
  return `killed by ${SIGNALS[-code] || `signal ${-code}`} (${code})`;
}
