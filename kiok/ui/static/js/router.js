// URLs for every view (history API): the current location as a hook, navigate(), and
// same-origin <a href="/..."> clicks turned into in-app navigation.
import { useEffect, useState } from "./html.js";

const listeners = new Set();

export function navigate(to, { replace = false } = {}) {
  if (to === location.pathname + location.search) return;
  history[replace ? "replaceState" : "pushState"](null, "", to);
  for (const fn of listeners) fn();
}

export function useLocation() {
  const [where, setWhere] = useState(() => location.pathname + location.search);
  useEffect(() => {
    const update = () => setWhere(location.pathname + location.search);
    listeners.add(update);
    addEventListener("popstate", update);
    update(); // a child's effect may have navigated before this one subscribed
    return () => {
      listeners.delete(update);
      removeEventListener("popstate", update);
    };
  }, []);
  return where;
}

/** Match `path` against patterns like "/runs/:runId/tasks/:taskId"; params are decoded. */
export function match(pattern, path) {
  const want = pattern.split("/");
  const got = path.split("?")[0].split("/");
  if (want.length !== got.length) return null;
  const params = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(":")) {
      if (!got[i]) return null;
      try {
        params[want[i].slice(1)] = decodeURIComponent(got[i]);
      } catch {
        return null;
      }
    } else if (want[i] !== got[i]) {
      return null;
    }
  }
  return params;
}

export function installLinkHandler() {
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const a = event.target.closest("a[href]");
    if (!a || a.target || a.hasAttribute("download")) return;
    const href = a.getAttribute("href");
    if (!href.startsWith("/") || href.startsWith("//") || href.startsWith("/api/")) return;
    event.preventDefault();
    navigate(href);
  });
}
