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

/** Whether the focus was lost: on nothing, or on the page's body (its element removed). */
export const focusLost = () => !document.activeElement || document.activeElement === document.body;

/**
 * A control disabled while its request runs loses the focus (to <body>), and the keyboard
 * with it. Returns the ref to put on that control: when the request is over (`busy` false
 * again) and `when` holds (e.g. it was refused: a notice of success takes the focus itself),
 * the focus goes back to it, if it had the focus as the request began and nothing took it
 * since.
 */
export function useFocusBack(busy, when = true) {
  const ref = useRef(null);
  const armed = useRef(false);
  // Read while rendering the busy state: the control is not disabled in the page yet.
  if (busy && ref.current && document.activeElement === ref.current) armed.current = true;
  useEffect(() => {
    if (busy || !armed.current) return;
    armed.current = false;
    const el = ref.current;
    if (when && el && el.isConnected && focusLost()) el.focus();
  }, [busy]);
  return ref;
}

/**
 * An inline "are you sure?" next to the button that asked it. `asking` shows it; `ask()` opens
 * it, `dismiss()` closes it and gives the focus back to the button holding `trigger` (its
 * ref), `done()` closes it after the action: the focus goes to that button (or the one that
 * replaced it, e.g. "Leave maintenance" after "Enter maintenance") unless the page has put it
 * somewhere already; if the button is gone, the page's notice takes it (see `Notice`).
 */
export function useConfirm() {
  const [asking, setAsking] = useState(false);
  const trigger = useRef(null);
  const refocus = useRef(null); // "always" (dismissed) | "if-lost" (done)
  useEffect(() => {
    if (!asking && refocus.current) {
      const how = refocus.current;
      refocus.current = null;
      const el = trigger.current;
      if (el && el.isConnected && (how === "always" || focusLost())) el.focus();
    }
  }, [asking]);
  return {
    asking,
    trigger,
    ask: () => setAsking(true),
    dismiss: () => { refocus.current = "always"; setAsking(false); },
    done: () => { refocus.current = "if-lost"; setAsking(false); },
  };
}

/**
 * A page's notice of what was done ("Policy p saved."), a status for screen readers. When it
 * appears and the focus was lost (the button that did it went away with its row or its
 * form), it takes the focus, so the keyboard goes on from there.
 */
export function StatusNotice({ message, className = "ok-box", testid }) {
  const box = useRef(null);
  useEffect(() => {
    if (message && box.current && focusLost()) box.current.focus();
  }, [message]);
  return message ? html`<div class=${className} role="status" tabindex="-1" ref=${box} data-testid=${testid}>${message}</div>` : null;
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
    if (first) {
      first.focus();
      // In a table scrolled sideways in its box, bring the question and its answer in view.
      box.current.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
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

/**
 * A button that asks inline before `action` (async; it shows its own errors): Delete, Rotate…
 * `label` is the button's text, `name` its accessible name ("Delete policy p"), `question` the
 * confirm's words, `yes` its confirming button ("Yes, delete"). The confirm is the shared one:
 * it takes the focus, Escape or Cancel closes it and gives the focus back.
 */
export function ConfirmButton({ label, name, question, yes, danger = true, action, className = "small-btn" }) {
  const confirm = useConfirm();
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    try {
      await action();
    } finally {
      setBusy(false);
      confirm.done();
    }
  };
  const cls = danger ? `danger ${className}` : className;
  if (!confirm.asking) {
    return html`<button type="button" class=${cls} ref=${confirm.trigger} aria-label=${name}
      onClick=${confirm.ask}>${label}</button>`;
  }
  return html`<${InlineConfirm} label=${`Confirm: ${name || label}`} onDismiss=${confirm.dismiss}>
    <span>${question}</span>
    <button type="button" class=${danger ? `danger ${className}` : `primary ${className}`} disabled=${busy} onClick=${go}>${busy ? "…" : yes}</button>
    <button type="button" class=${className} onClick=${confirm.dismiss}>Cancel</button>
  <//>`;
}
