// What the settings tabs share: loading a list, a form that shows its refusal inline, a chip
// with a remove button, a copy button for secrets shown once, and the JSON editor (line
// numbers, the syntax error marked at its line).
import { html, useEffect, useRef, useState } from "../../html.js";
import { ApiError, get } from "../../api.js";
import { ErrorBox, focusLost, StatusNotice } from "../common.js";
import { Gutter } from "../register.js";
import { jsonProblem } from "./jsonproblem.js";

/** Load `path` now and whenever it changes; [data, error, reload]. */
export function useLoad(path) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    if (path === null) return undefined;
    let live = true;
    get(path).then((d) => live && (setData(d), setError(null))).catch((e) => live && setError(e));
    return () => { live = false; };
  }, [path, n]);
  return [data, error, () => setN((v) => v + 1)];
}

export const refusedLabel = (error) => (error instanceof ApiError && error.status === 403 ? "Not allowed" : "Failed");

/** A form whose submit calls `onSubmit(FormData)` (and then clears it); a refusal is shown
 * inside the form. */
/** A form whose submit runs ``onSubmit(FormData)``; ``onStart`` is called first (a page
 * clears its last notice there: a new failure under the last success read as both). */
export function Form({ label, onSubmit, onStart, children, testid }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  // The button is disabled while the request runs, which takes the focus from it: once a
  // refused submit has enabled it again, a focus left nowhere goes back to it (it stayed on
  // <body>). After a success the page's notice takes the focus.
  const button = useRef(null);
  useEffect(() => {
    if (!busy && error && button.current && focusLost()) button.current.focus();
  }, [busy, error]);
  const submit = async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    setBusy(true);
    setError(null);
    if (onStart) onStart();
    try {
      await onSubmit(new FormData(form));
      form.reset();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="card inline-form" onSubmit=${submit} aria-label=${label} data-testid=${testid}>
    ${children}
    <button type="submit" class="primary" disabled=${busy} ref=${button}>${busy ? "…" : label}</button>
    <${ErrorBox} error=${error} label=${refusedLabel(error)} />
  </form>`;
}

/** A chip with a remove button (when allowed). */
export function Chip({ text, removeLabel, onRemove }) {
  return html`<span class="chip">${text}${onRemove ? html`<button type="button" class="chip-x" aria-label=${removeLabel}
    title=${removeLabel} onClick=${onRemove}>×</button>` : null}</span>`;
}

export function Notice({ message }) {
  return html`<${StatusNotice} message=${message} />`;
}

/** Copies `text`; the Clipboard API needs a secure context, so fall back to a selection. */
export function CopyButton({ text, label = "Copy" }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    setCopied(true);
  };
  return html`<button type="button" class="small-btn" onClick=${copy}>${copied ? "✓ Copied" : label}</button>`;
}

/** A JSON textarea with line numbers; the syntax error (if any) is marked at its line and
 * written under it as "line N: …". */
export function JsonEditor({ value, onInput, label, rows = 12 }) {
  const [scrollTop, setScrollTop] = useState(0);
  const area = useRef(null);
  const problem = jsonProblem(value);
  const bad = new Set(problem && problem.line ? [problem.line] : []);
  return html`<div class="json-editor">
    <div class=${`editor ${problem ? "has-errors" : ""}`}>
      <${Gutter} lines=${Math.max(1, value.split("\n").length)} bad=${bad} scrollTop=${scrollTop} />
      <textarea ref=${area} class="mono" spellcheck="false" rows=${rows} aria-label=${label}
        aria-invalid=${problem ? "true" : undefined} aria-describedby="json-problem" value=${value}
        onInput=${(e) => onInput(e.currentTarget.value)} onScroll=${(e) => setScrollTop(e.currentTarget.scrollTop)}></textarea>
    </div>
    <div id="json-problem" aria-live="polite">${problem ? html`<small class="field-error" data-testid="json-problem"
      data-line=${problem.line || ""}>${problem.line ? `line ${problem.line}: ` : ""}not valid JSON (${problem.message})</small>` : null}</div>
  </div>`;
}

/** "1.2 MB" */
export function bytes(n) {
  if (typeof n !== "number") return "—";
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
