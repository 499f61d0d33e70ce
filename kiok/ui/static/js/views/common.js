// Small pieces every view uses: state badges, error boxes, the polling hook, inline confirms.
import { html, useEffect, useRef, useState } from "../html.js";
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

/**
 * An inline "are you sure?" next to the button that asked it. `asking` shows it; `ask()` opens
 * it, `dismiss()` closes it and gives the focus back to the button holding `trigger` (its
 * ref), `done()` closes it after the action (the focus stays where the page puts it).
 */
export function useConfirm() {
  const [asking, setAsking] = useState(false);
  const trigger = useRef(null);
  const refocus = useRef(false);
  useEffect(() => {
    if (!asking && refocus.current) {
      refocus.current = false;
      if (trigger.current) trigger.current.focus();
    }
  }, [asking]);
  return {
    asking,
    trigger,
    ask: () => setAsking(true),
    dismiss: () => { refocus.current = true; setAsking(false); },
    done: () => setAsking(false),
  };
}

/**
 * The confirm's box: a labelled group whose first control (the button that confirms, or the
 * field to fill) takes the focus when it appears, so Enter confirms and Tab reaches the way
 * out; Escape anywhere in it calls `onDismiss`. With `onSubmit` it is a form (Enter in a
 * field submits it).
 */
export function InlineConfirm({ label, onDismiss, onSubmit, children, className = "confirm", testid }) {
  const box = useRef(null);
  useEffect(() => {
    const first = box.current && box.current.querySelector("input, select, button");
    if (first) first.focus();
  }, []);
  const onKeyDown = (e) => {
    if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      onDismiss();
    }
  };
  if (onSubmit) {
    const submit = (e) => { e.preventDefault(); onSubmit(); };
    return html`<form class=${className} role="group" aria-label=${label} ref=${box} onKeyDown=${onKeyDown}
      onSubmit=${submit} data-testid=${testid}>${children}</form>`;
  }
  return html`<div class=${className} role="group" aria-label=${label} ref=${box} onKeyDown=${onKeyDown}
    data-testid=${testid}>${children}</div>`;
}
