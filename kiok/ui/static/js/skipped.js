// Why a task was SKIPPED, in words. The run record says only that it was (no `error`, no
// `waiting`), so the text is derived from the task's trigger rule and upstreams in the DAG
// version the run ran (`run.dagVersion`), and the upstreams' states (the run's tasks).
import { enc, get } from "./api.js";
import { TERMINAL_TASK } from "./format.js";

const NOT_SUCCEEDED = new Set(["FAILED", "SKIPPED", "CANCELLED"]);
export const GENERIC_SKIP = "skipped: its trigger rule could not be met";

/** The spec the run ran, to explain it: `GET /dags/{id}/versions/{dagVersion}`; null when the
 * run has no version or that version is no longer kept (or may not be read). */
export async function runSpec(run) {
  if (run.dagVersion === null || run.dagVersion === undefined) return null;
  try {
    const v = await get(`/api/v1/dags/${enc(run.dagId)}/versions/${enc(String(run.dagVersion))}`);
    return v && v.spec ? v.spec : null;
  } catch {
    return null;
  }
}

/** "skipped: upstream boom failed", … for task `id`; `specTasks`: the tasks of the DAG
 * version the run ran, or missing (not known): then the generic reason. */
export function skipReason(id, runTasks, specTasks) {
  const spec = (specTasks || []).find((t) => t.id === id);
  if (!spec) return GENERIC_SKIP;
  const ups = (spec.requires || []).filter((u) => runTasks[u]);
  const rule = spec.trigger_rule || spec.triggerRule || "all_success";
  const state = (u) => runTasks[u].state;
  const name = (list) => list.map((u) => `${u} (${state(u).toLowerCase()})`).join(", ");
  if (rule === "all_success") {
    const bad = ups.filter((u) => NOT_SUCCEEDED.has(state(u)));
    if (bad.length === 1) {
      return `skipped: upstream ${bad[0]} ${state(bad[0]) === "FAILED" ? "failed" : `was ${state(bad[0]).toLowerCase()}`}`;
    }
    if (bad.length > 1) return `skipped: upstreams ${name(bad)} did not succeed`;
  }
  if (rule === "one_failed") return "skipped: no upstream failed (trigger rule one_failed)";
  if (rule === "all_failed") {
    // Only upstreams that ended count against it: one still running may yet fail.
    const ok = ups.filter((u) => TERMINAL_TASK.has(state(u)) && state(u) !== "FAILED");
    return `skipped: not every upstream failed${ok.length ? ` (${name(ok)})` : ""} (trigger rule all_failed)`;
  }
  return `skipped: trigger rule ${rule} could no longer be met`;
}

/**
 * Why "Re-run from `id`" would skip `id` at once, or null. Such a re-run takes the task and
 * what is downstream of it, never its upstreams (kiok.core.rerun.rerun_selection), so the
 * upstreams keep their states, and if these cannot meet the task's trigger rule
 * (kiok.core.readiness.upstream_verdict) it is skipped again. Null when not known (no spec,
 * an upstream not ended). `{ upstreams, short, reason }`: the upstreams in the way, and why (short and whole).
 */
export function rerunBlocker(id, runTasks, specTasks) {
  const spec = (specTasks || []).find((t) => t.id === id);
  if (!spec) return null;
  const ups = spec.requires || [];
  if (!ups.length || ups.some((u) => !runTasks[u] || !TERMINAL_TASK.has(runTasks[u].state))) return null;
  const rule = spec.trigger_rule || spec.triggerRule || "all_success";
  const state = (u) => runTasks[u].state.toLowerCase();
  const name = (list) => list.map((u) => `${u} (${state(u)})`).join(", ");
  if (rule === "all_success") {
    const bad = ups.filter((u) => runTasks[u].state !== "SUCCESS");
    if (!bad.length) return null;
    return { upstreams: bad, short: `${bad[0]} ${state(bad[0])}`, reason: bad.length === 1 ? `upstream ${bad[0]} ${state(bad[0])}`
      : `upstreams ${name(bad)} did not succeed` };
  }
  if (rule === "one_failed" && !ups.some((u) => runTasks[u].state === "FAILED")) {
    return { upstreams: ups, short: "no upstream failed", reason: "no upstream failed (trigger rule one_failed)" };
  }
  if (rule === "all_failed") {
    const bad = ups.filter((u) => runTasks[u].state !== "FAILED");
    if (bad.length) return { upstreams: bad, short: `${bad[0]} ${state(bad[0])}`, reason: `not every upstream failed: ${name(bad)} (trigger rule all_failed)` };
  }
  return null;
}
