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

/** "2026-05-04 12:03:09 UTC" (times are shown in UTC, labelled). */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}

/** "340 ms", "1.2 s", "3 m 04 s", "2 h 05 m" between two ISO times (`end` missing: until now). */
export function duration(startIso, endIso, now = Date.now()) {
  if (!startIso) return "—";
  const ms = (endIso ? new Date(endIso).getTime() : now) - new Date(startIso).getTime();
  if (!(ms >= 0)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} m ${pad(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} m`;
}

/** The cron expression with its zone ("manual only" without a schedule). */
export function schedule(cron, timezone) {
  if (!cron) return "manual only";
  return timezone && timezone !== "UTC" ? `${cron} (${timezone})` : `${cron} (UTC)`;
}
