// What the signed-in user may do (`GET /api/v1/me`), read once per session, so that views
// hide or disable actions the user's policies forbid before anyone clicks them. The API
// still checks every request; this only spares the user a 403 after the click.
// `useCan` answers "on some resource"; `useCanOnDags`, `useCanOnRun` and `useCanOnRuns` answer
// on given DAGs and runs (`/me?dag=…&run=…`, batched: the ids wanted in one tick go in one request, each
// asked once per session).
import { useEffect, useState } from "./html.js";
import { enc, get, session } from "./api.js";

let cached = null; // { user, allowed } for session.user
let pending = null; // { user, promise }: the /me request in flight, and for whom
const listeners = new Set();

// An answer is kept only if the user who asked is still the one signed in: a request sent
// for A and answered after A logged out and B logged in is dropped, and B's is asked for.
function load() {
  const user = session.user;
  if (cached && cached.user === user) return Promise.resolve(cached);
  if (pending !== null && pending.user === user) return pending.promise;
  const mine = { user };
  const settle = (me) => {
    if (pending === mine) pending = null;
    if (session.user !== user) {
      if (session.user && listeners.size) load();
      return null;
    }
    cached = me;
    for (const fn of listeners) fn();
    return me;
  };
  // /me failed: offer every action; the API decides.
  mine.promise = get("/api/v1/me").then((me) => settle({ ...me, user }), () => settle({ user, allowed: null }));
  pending = mine;
  return mine.promise;
}

session.subscribe(() => {
  if (!cached || cached.user !== session.user) cached = null;
});

/** can(action): whether to offer the action — false until /me has answered (so nothing is
 * offered and then taken away), true for everything if /me itself failed. */
export function useCan() {
  const [, setVersion] = useState(0);
  useEffect(() => {
    const bump = () => setVersion((v) => v + 1);
    listeners.add(bump);
    load();
    return () => listeners.delete(bump);
  }, []);
  const me = cached && cached.user === session.user ? cached : null;
  const can = (action) => (me ? me.allowed === null || Boolean(me.allowed[action]) : false);
  can.known = me !== null;
  return can;
}

// ---- Per DAG and per run -----------------------------------------------------------------

/** At most this many ids of a kind per request (the API's limit). */
const MAX_IDS = 200;

/** Each kind of id: the /me query parameter that asks about it and the answer's key. */
const KINDS = { dag: ["dag", "allowedOn"], run: ["run", "allowedOnRun"], iamUser: ["user", "allowedOnUser"] };

function fresh() {
  // answers: id -> {action: bool}, or null when /me failed for it (offer all; the API decides)
  const state = { user: session.user, asking: {}, queued: null };
  for (const kind of Object.keys(KINDS)) {
    state[kind] = new Map();
    state.asking[kind] = new Set();
  }
  return state;
}
let onIds = fresh();
const idListeners = new Set();

session.subscribe(() => {
  if (onIds.user === session.user) return;
  onIds = fresh(); // answers (and requests in flight) of another user are not this one's
  for (const fn of idListeners) fn();
});

/** Ask for `ids` of `kind` ("dag" | "run" | "iamUser") not yet answered nor asked: in one
 * request with every other id wanted in the same tick. */
function want(kind, ids) {
  const state = onIds;
  if (!state.user || state.user !== session.user) return;
  const missing = ids.filter((id) => id && !state[kind].has(id) && !state.asking[kind].has(id));
  if (missing.length === 0) return;
  for (const id of missing) state.asking[kind].add(id);
  if (state.queued === null) {
    state.queued = Object.fromEntries(Object.keys(KINDS).map((k) => [k, []]));
    Promise.resolve().then(() => flush(state));
  }
  state.queued[kind].push(...missing);
}

function flush(state) {
  const queued = state.queued;
  state.queued = null;
  const longest = Math.max(...Object.values(queued).map((ids) => ids.length));
  for (let i = 0; i < longest; i += MAX_IDS) {
    const batch = Object.entries(queued).map(([kind, ids]) => [kind, ids.slice(i, i + MAX_IDS)]);
    const query = batch.flatMap(([kind, ids]) => ids.map((id) => `${KINDS[kind][0]}=${enc(id)}`)).join("&");
    // An answer without the kind's key (a master from before it): as if /me failed.
    const settle = (me) => {
      for (const [kind, ids] of batch) for (const id of ids) state.asking[kind].delete(id);
      if (state !== onIds) return; // signed out (or another user signed in) meanwhile
      for (const [kind, ids] of batch) {
        const on = me && me[KINDS[kind][1]];
        for (const id of ids) state[kind].set(id, on ? on[id] || {} : null);
      }
      for (const fn of idListeners) fn();
    };
    get(`/api/v1/me?${query}`).then(settle, () => settle(null));
  }
}

function useIds(kind, ids) {
  const [, setVersion] = useState(0);
  useEffect(() => {
    const bump = () => setVersion((v) => v + 1);
    idListeners.add(bump);
    return () => idListeners.delete(bump);
  }, []);
  // Every render: after a sign-in as someone else the answers are asked again.
  useEffect(() => { want(kind, ids); });
  return onIds.user === session.user ? onIds : null;
}

/** The check for one id: false until answered (nothing offered, then taken away); the
 * action must also be allowed somewhere (`can`); every action if /me failed. */
function checker(can, answers, id, action) {
  if (!can(action) || !answers || !answers.has(id)) return false;
  const on = answers.get(id);
  return on === null || Boolean(on[action]);
}

/** canOn(dagId, action): whether to offer a DAG action on that DAG (`dags:Trigger`,
 * `dags:Pause`, …); `canOn.known(dagId)`: whether it has been answered. One request for all
 * of `dagIds` not asked before. */
export function useCanOnDags(dagIds) {
  const can = useCan();
  const state = useIds("dag", dagIds);
  const answers = state && state.dag;
  const canOn = (dagId, action) => checker(can, answers, dagId, action);
  canOn.known = (dagId) => can.known && Boolean(answers && answers.has(dagId));
  return canOn;
}

/** canOn(action): whether to offer a run action on run `runId` (`runs:Cancel`,
 * `runs:Rerun`, `logs:Read`, …); `canOn.known`: whether it has been answered. */
export function useCanOnRun(runId) {
  const can = useCan();
  const state = useIds("run", runId ? [runId] : []);
  const answers = state && state.run;
  const canOn = (action) => checker(can, answers, runId, action);
  canOn.known = can.known && Boolean(answers && answers.has(runId));
  return canOn;
}

/** canOn(runId, action): useCanOnRun for many runs at once (the grid's columns), asked in one
 * request (200 runs a request); `canOn.known(runId)`: whether it has been answered. */
export function useCanOnRuns(runIds) {
  const can = useCan();
  const state = useIds("run", runIds);
  const answers = state && state.run;
  const canOn = (runId, action) => checker(can, answers, runId, action);
  canOn.known = (runId) => can.known && Boolean(answers && answers.has(runId));
  return canOn;
}

/** canOn(user, action): whether to offer an IAM action on that user (`iam:CreateAccessKey`,
 * `iam:DeleteAccessKey`, …: one's own keys by self-service, another's only by a policy);
 * `canOn.known(user)`: whether it has been answered. */
export function useCanOnUsers(users) {
  const can = useCan();
  const state = useIds("iamUser", users);
  const answers = state && state.iamUser;
  const canOn = (user, action) => checker(can, answers, user, action);
  canOn.known = (user) => can.known && Boolean(answers && answers.has(user));
  return canOn;
}
