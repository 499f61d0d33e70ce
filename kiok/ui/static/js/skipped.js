// Why a task was SKIPPED, in words. The run record says only that it was (no `error`, no
// `waiting`), so the text is derived from what the page already has: the task's trigger rule
// and upstreams (the DAG's spec) and the upstreams' states (the run's tasks).
const NOT_SUCCEEDED = new Set(["FAILED", "SKIPPED", "CANCELLED"]);

/** "skipped: upstream boom failed", … for task `id`; `specTasks` may be missing (a deleted DAG). */
export function skipReason(id, runTasks, specTasks) {
  const spec = (specTasks || []).find((t) => t.id === id);
  if (!spec) return "skipped: its trigger rule could no longer be met";
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
    const ok = ups.filter((u) => state(u) !== "FAILED");
    return `skipped: not every upstream failed${ok.length ? ` (${name(ok)})` : ""} (trigger rule all_failed)`;
  }
  return `skipped: trigger rule ${rule} could no longer be met`;
}
