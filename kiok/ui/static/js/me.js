// What the signed-in user may do (`GET /api/v1/me`), read once per session, so that views
// hide or disable actions the user's policies forbid before anyone clicks them. The API
// still checks every request; this only spares the user a 403 after the click.
import { useEffect, useState } from "./html.js";
import { get, session } from "./api.js";

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
