// Small pieces every view uses: state badges, error boxes, the polling hook.
import { html, useEffect, useRef } from "../html.js";
import { glyph, stateClass } from "../format.js";

export function StateBadge({ state }) {
  return html`<span class="badge ${stateClass(state)}" data-state=${state}>
    <span aria-hidden="true">${glyph(state)}</span> ${state}</span>`;
}

export function ErrorBox({ error, label = "Error" }) {
  if (!error) return null;
  return html`<div class="error" role="alert"><strong>${label}:</strong> ${error.message || String(error)}</div>`;
}

export function Loading({ what = "Loading" }) {
  return html`<p class="muted" aria-live="polite">${what}…</p>`;
}

/**
 * Call `tick` now and then every `everyMs` while `active`; one call at a time (the next waits
 * for the previous), paused while the tab is hidden. `tick` may return false to stop.
 */
export function usePolling(tick, everyMs, active, deps) {
  const latest = useRef(tick);
  latest.current = tick;
  useEffect(() => {
    if (!active) return undefined;
    let stopped = false;
    let timer = null;
    const loop = async () => {
      if (stopped) return;
      if (document.visibilityState === "hidden") {
        timer = setTimeout(loop, everyMs);
        return;
      }
      let again = true;
      try {
        again = (await latest.current()) !== false;
      } catch {
        again = true;
      }
      if (!stopped && again) timer = setTimeout(loop, everyMs);
    };
    loop();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [active, everyMs, ...deps]);
}

/** Breadcrumbs: [[label, href], ..., [label]] (the last one is the current page). */
export function Crumbs({ items }) {
  return html`<nav class="crumbs" aria-label="Breadcrumb"><ol>
    ${items.map(([label, href], i) => html`<li key=${i}>${href
      ? html`<a href=${href} class=${i ? "mono" : undefined}>${label}</a>`
      : html`<span class="mono" aria-current="page">${label}</span>`}</li>`)}
  </ol></nav>`;
}
