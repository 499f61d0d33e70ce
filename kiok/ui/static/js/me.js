// What the signed-in user may do (`GET /api/v1/me`), read once per session, so that views
// hide or disable actions the user's policies forbid before anyone clicks them. The API
// still checks every request; this only spares the user a 403 after the click.
import { useEffect, useState } from "./html.js";
import { get, session } from "./api.js";

let cached = null; // { user, allowed } for session.user
let pending = null;
const listeners = new Set();

function load() {
  const user = session.user;
  if (cached && cached.user === user) return Promise.resolve(cached);
  if (pending === null) {
    pending = get("/api/v1/me")
      .then((me) => {
        cached = me;
        for (const fn of listeners) fn();
        return me;
      })
      .catch(() => {
        cached = { user, allowed: null }; // /me failed: offer every action; the API decides
        for (const fn of listeners) fn();
        return null;
      })
      .finally(() => { pending = null; });
  }
  return pending;
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
