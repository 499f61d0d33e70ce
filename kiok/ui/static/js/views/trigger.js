// The Run dialog: a form built from the DAG's params (plain defaults, or {default, type,
// enum, minimum, ...} constraints). Only the fields the user changed are sent as args, so
// the DAG's own defaults (and their date functions) apply to the rest; an emptied field is
// not sent either (its placeholder shows the default it then gets). What the page can check
// (a number, a whole number, the bounds and lengths, JSON) is checked before sending, every
// field at once; what only the master decides (a pattern) comes back as a 400 naming
// `args.<param>`, shown at that field too. The fields scroll; the buttons stay in view.
import { html, useEffect, useRef, useState } from "../html.js";
import { ApiError, enc, get, post } from "../api.js";
import { navigate } from "../router.js";
import { ErrorBox, focusLost, Loading } from "./common.js";

const RULE_KEYS = new Set([
  "default", "type", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum", "description",
]);
/** A number as the master reads one (`kiok.dag.params`): no hex, no "Infinity", no blanks. */
const NUMBER = /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/;

function isRule(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value) &&
    Object.keys(value).length > 0 && Object.keys(value).every((k) => RULE_KEYS.has(k));
}

/** One form field per param: {name, kind, rule, required, initial, placeholder}. */
export function fieldsOf(params) {
  return Object.entries(params || {}).map(([name, raw]) => {
    const rule = isRule(raw) ? raw : { default: raw };
    const hasDefault = Object.hasOwn(rule, "default");
    const sample = hasDefault ? rule.default : undefined;
    let kind = rule.type || (sample === undefined ? "string" : Array.isArray(sample) ? "array" : typeof sample);
    if (kind === "number" && Number.isInteger(sample) && !rule.type) kind = "integer";
    if (rule.enum) kind = "enum";
    let initial = "";
    if (hasDefault) {
      if (kind === "boolean") initial = Boolean(sample);
      else if (kind === "array" || kind === "object") initial = JSON.stringify(sample);
      else if (kind === "enum") initial = JSON.stringify(sample);
      else initial = sample === null ? "" : String(sample);
    } else if (kind === "boolean") {
      initial = false;
    } else if (kind === "enum") {
      initial = JSON.stringify(rule.enum[0]);
    }
    const placeholder = hasDefault && kind !== "boolean" && kind !== "enum"
      ? `default: ${typeof sample === "string" ? sample : JSON.stringify(sample)}` : undefined;
    return { name, kind, rule, required: !hasDefault, initial, placeholder };
  });
}

const plural = (n, what) => `${n} ${what}${n === 1 ? "" : "s"}`;

/**
 * What to send for `field` given its input's `value`: {omit: true} (unchanged, or emptied:
 * the DAG's default applies), {value}, or {problem} in words, shown at the field.
 */
export function argOf(field, value) {
  const { kind, rule } = field;
  if (kind === "boolean" || kind === "enum") {
    if (!field.required && value === field.initial) return { omit: true };
    return { value: kind === "boolean" ? Boolean(value) : JSON.parse(value) };
  }
  if (!field.required && value === field.initial) return { omit: true };
  const text = kind === "string" ? value : value.trim();
  if (text === "") return field.required ? { problem: "required: the DAG gives it no default" } : { omit: true };
  if (kind === "integer" || kind === "number") {
    const n = NUMBER.test(text) ? Number(text) : NaN;
    if (!Number.isFinite(n)) return { problem: `not a number: ${JSON.stringify(text)}` };
    if (kind === "integer" && !Number.isInteger(n)) return { problem: `not a whole number: ${text}` };
    if (rule.minimum !== undefined && n < rule.minimum) return { problem: `${n} is below minimum ${rule.minimum}` };
    if (rule.maximum !== undefined && n > rule.maximum) return { problem: `${n} is above maximum ${rule.maximum}` };
    return { value: n };
  }
  if (kind === "array" || kind === "object") {
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      return { problem: `not valid JSON: ${err.message}` };
    }
    const isObject = parsed !== null && typeof parsed === "object" && !Array.isArray(parsed);
    if (rule.type === "array" && !Array.isArray(parsed)) return { problem: "expected a JSON array, [ … ]" };
    if (rule.type === "object" && !isObject) return { problem: "expected a JSON object, { … }" };
    return { value: parsed };
  }
  const length = [...value].length; // code points, as the master counts them
  if (rule.minLength !== undefined && length < rule.minLength) return { problem: `shorter than ${plural(rule.minLength, "character")}` };
  if (rule.maxLength !== undefined && length > rule.maxLength) return { problem: `longer than ${plural(rule.maxLength, "character")}` };
  return { value };
}

function Field({ field, value, error, onChange }) {
  const id = `param-${field.name}`;
  const { rule } = field;
  const common = { id, name: field.name, "aria-invalid": error ? "true" : undefined,
    "aria-describedby": `${id}-hint` };
  const typed = { ...common, required: field.required, placeholder: field.placeholder, value,
    onInput: (e) => onChange(e.currentTarget.value) };
  let input;
  if (field.kind === "boolean") {
    input = html`<input type="checkbox" ...${common} checked=${value}
      onChange=${(e) => onChange(e.currentTarget.checked)} />`;
  } else if (field.kind === "enum") {
    input = html`<select ...${common} value=${value} onChange=${(e) => onChange(e.currentTarget.value)}>
      ${rule.enum.map((v) => html`<option value=${JSON.stringify(v)}>${typeof v === "string" ? v : JSON.stringify(v)}</option>`)}
    </select>`;
  } else if (field.kind === "array" || field.kind === "object") {
    input = html`<textarea ...${typed} rows="3" class="mono"></textarea>`;
  } else if (field.kind === "integer" || field.kind === "number") {
    // Text, not type=number: that one drops letters silently and reports a blank; here the
    // user sees what was typed and why it is refused. A numeric keypad only when the value
    // cannot be negative: a phone's has no minus key.
    input = html`<input type="text" ...${typed} autocomplete="off"
      inputmode=${rule.minimum >= 0 ? (field.kind === "integer" ? "numeric" : "decimal") : undefined} />`;
  } else {
    input = html`<input type="text" ...${typed} />`;
  }
  const hints = [];
  if (rule.description) hints.push(rule.description);
  if (field.kind !== "enum" && field.kind !== "boolean") hints.push(field.kind);
  if (rule.pattern) hints.push(`matches ${rule.pattern}`);
  if (rule.minimum !== undefined || rule.maximum !== undefined) hints.push(`${rule.minimum ?? "…"} to ${rule.maximum ?? "…"}`);
  if (rule.minLength !== undefined || rule.maxLength !== undefined) hints.push(`${rule.minLength ?? 0} to ${rule.maxLength ?? "…"} characters`);
  if (field.required) hints.push("required");
  else if (field.placeholder) hints.push("empty: the default");
  return html`<div class=${`field ${field.kind === "boolean" ? "field-check" : ""}`}>
    <label for=${id}>${field.name}</label>
    ${input}
    <small id=${`${id}-hint`} class=${error ? "field-error" : "muted"}>${error || hints.join(" · ")}</small>
  </div>`;
}

export function TriggerDialog({ dagId, onClose }) {
  const dialog = useRef(null);
  const form = useRef(null);
  const [fields, setFields] = useState(null);
  const [values, setValues] = useState({});
  const [error, setError] = useState(null);
  const [fieldErrors, setFieldErrors] = useState({});
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    dialog.current.showModal();
    get(`/api/v1/dags/${enc(dagId)}`).then((dag) => {
      const made = fieldsOf(dag.spec.dag.params);
      setFields(made);
      setValues(Object.fromEntries(made.map((f) => [f.name, f.initial])));
    }).catch(setError);
  }, [dagId]);

  // Once the params are in: focus the first field, or Start run when there is none (showModal
  // focused Close, the only control enabled meanwhile: Enter would have closed the dialog).
  useEffect(() => {
    if (fields === null || !form.current) return;
    const first = fields.length ? form.current.querySelector(`#param-${CSS.escape(fields[0].name)}`)
      : form.current.querySelector("button[type=submit]");
    if (first) first.focus();
  }, [fields]);

  // Start run is disabled while the request runs, which takes the focus from it: refused (not
  // at a field), the focus goes back to it rather than staying on <body> in an open dialog.
  const start = useRef(null);
  useEffect(() => {
    if (error && !busy && start.current && focusLost()) start.current.focus();
  }, [error, busy]);

  // The field, and the problem written under it, brought into view.
  const focusField = (name) => {
    const el = form.current && form.current.querySelector(`#param-${CSS.escape(name)}`);
    if (!el) return;
    el.focus({ preventScroll: true });
    el.closest(".field").scrollIntoView({ block: "nearest" });
  };

  const change = (name, value) => {
    setValues({ ...values, [name]: value });
    if (fieldErrors[name]) setFieldErrors({ ...fieldErrors, [name]: undefined });
  };

  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    const args = {};
    const problems = {};
    for (const f of fields) {
      const arg = argOf(f, values[f.name]);
      if (arg.problem) problems[f.name] = arg.problem;
      else if (!arg.omit) args[f.name] = arg.value;
    }
    setFieldErrors(problems);
    const wrong = fields.find((f) => problems[f.name]);
    if (wrong) {
      focusField(wrong.name);
      return;
    }
    setBusy(true);
    try {
      const { runId } = await post(`/api/v1/dags/${enc(dagId)}/runs`, { args });
      dialog.current.close();
      navigate(`/runs/${enc(runId)}`);
    } catch (err) {
      setBusy(false);
      // "args.region: 'mars' is not one of ..." goes next to its field.
      const m = err instanceof ApiError && /^args\.([A-Za-z0-9_]+): (.*)$/s.exec(err.message);
      if (m && fields.some((f) => f.name === m[1])) {
        setFieldErrors({ [m[1]]: m[2] });
        focusField(m[1]);
      } else {
        setError(err);
      }
    }
  };

  const count = Object.values(fieldErrors).filter(Boolean).length;
  return html`<dialog ref=${dialog} class="card dialog dialog-tall" aria-labelledby="trigger-title" onClose=${onClose}>
    <form ref=${form} onSubmit=${submit} noValidate>
      <h2 id="trigger-title">Run <span class="mono">${dagId}</span></h2>
      <div class="dialog-body">
        ${fields === null && !error ? html`<${Loading} what="Loading the DAG's params" />` : null}
        ${fields !== null && fields.length === 0 ? html`<p class="muted">This DAG takes no params.</p>` : null}
        ${fields !== null ? fields.map((f) => html`<${Field} key=${f.name} field=${f} value=${values[f.name]}
          error=${fieldErrors[f.name]} onChange=${(v) => change(f.name, v)} />`) : null}
      </div>
      <div class="dialog-foot">
        <${ErrorBox} error=${error} label="Not started" />
        <div class="row end">
          ${count ? html`<span class="err-text small" role="status" data-testid="trigger-problems">${
            count === 1 ? "1 field to correct" : `${count} fields to correct`}</span><span class="spacer"></span>` : null}
          <button type="button" onClick=${() => dialog.current.close()}>Close</button>
          <button type="submit" class="primary" ref=${start} disabled=${busy || fields === null}>${busy ? "Starting…" : "Start run"}</button>
        </div>
      </div>
    </form>
  </dialog>`;
}
