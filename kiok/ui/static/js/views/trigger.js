// The Run dialog: a form built from the DAG's params (plain defaults, or {default, type,
// enum, minimum, ...} constraints). Only the fields the user changed are sent as args, so
// the DAG's own defaults (and their date functions) apply to the rest.
import { html, useEffect, useRef, useState } from "../html.js";
import { ApiError, enc, get, post } from "../api.js";
import { navigate } from "../router.js";
import { ErrorBox, Loading } from "./common.js";

const RULE_KEYS = new Set([
  "default", "type", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum", "description",
]);

function isRule(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value) &&
    Object.keys(value).length > 0 && Object.keys(value).every((k) => RULE_KEYS.has(k));
}

/** One form field per param: {name, kind, rule, initial}. */
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
    return { name, kind, rule, required: !hasDefault, initial };
  });
}

function valueOf(field, text) {
  switch (field.kind) {
    case "boolean": return Boolean(text);
    case "integer":
    case "number": return text === "" ? "" : Number(text);
    case "enum":
    case "array":
    case "object":
      try {
        return JSON.parse(text);
      } catch {
        throw new Error(`${field.name}: not valid JSON`);
      }
    default: return text;
  }
}

function Field({ field, value, error, onChange }) {
  const id = `param-${field.name}`;
  const { rule } = field;
  const common = { id, name: field.name, "aria-invalid": error ? "true" : undefined,
    "aria-describedby": `${id}-hint` };
  let input;
  if (field.kind === "boolean") {
    input = html`<input type="checkbox" ...${common} checked=${value}
      onChange=${(e) => onChange(e.currentTarget.checked)} />`;
  } else if (field.kind === "enum") {
    input = html`<select ...${common} value=${value} onChange=${(e) => onChange(e.currentTarget.value)}>
      ${rule.enum.map((v) => html`<option value=${JSON.stringify(v)}>${typeof v === "string" ? v : JSON.stringify(v)}</option>`)}
    </select>`;
  } else if (field.kind === "array" || field.kind === "object") {
    input = html`<textarea ...${common} rows="3" class="mono" required=${field.required}
      value=${value} onInput=${(e) => onChange(e.currentTarget.value)}></textarea>`;
  } else if (field.kind === "integer" || field.kind === "number") {
    input = html`<input type="number" ...${common} step=${field.kind === "integer" ? "1" : "any"}
      min=${rule.minimum} max=${rule.maximum} required=${field.required}
      value=${value} onInput=${(e) => onChange(e.currentTarget.value)} />`;
  } else {
    input = html`<input type="text" ...${common} required=${field.required}
      minLength=${rule.minLength} maxLength=${rule.maxLength}
      value=${value} onInput=${(e) => onChange(e.currentTarget.value)} />`;
  }
  const hints = [];
  if (rule.description) hints.push(rule.description);
  if (field.kind !== "enum" && field.kind !== "boolean") hints.push(field.kind);
  if (rule.pattern) hints.push(`matches ${rule.pattern}`);
  if (rule.minimum !== undefined || rule.maximum !== undefined) hints.push(`${rule.minimum ?? "…"} to ${rule.maximum ?? "…"}`);
  if (field.required) hints.push("required");
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
  const [dirty, setDirty] = useState(new Set());
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

  const change = (name, value) => {
    setValues({ ...values, [name]: value });
    setDirty(new Set([...dirty, name]));
    setFieldErrors({ ...fieldErrors, [name]: undefined });
  };

  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    setFieldErrors({});
    const args = {};
    try {
      for (const f of fields) {
        if (dirty.has(f.name) || (f.required && values[f.name] !== "")) {
          args[f.name] = valueOf(f, values[f.name]);
        }
      }
    } catch (err) {
      setError(err);
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
      if (m && fields.some((f) => f.name === m[1])) setFieldErrors({ [m[1]]: m[2] });
      else setError(err);
    }
  };

  return html`<dialog ref=${dialog} class="card dialog" aria-labelledby="trigger-title" onClose=${onClose}>
    <form ref=${form} onSubmit=${submit}>
      <h2 id="trigger-title">Run <span class="mono">${dagId}</span></h2>
      ${fields === null && !error ? html`<${Loading} what="Loading the DAG's params" />` : null}
      ${fields !== null && fields.length === 0 ? html`<p class="muted">This DAG takes no params.</p>` : null}
      ${fields !== null ? fields.map((f) => html`<${Field} key=${f.name} field=${f} value=${values[f.name]}
        error=${fieldErrors[f.name]} onChange=${(v) => change(f.name, v)} />`) : null}
      <${ErrorBox} error=${error} label="Not started" />
      <div class="row end">
        <button type="button" onClick=${() => dialog.current.close()}>Close</button>
        <button type="submit" class="primary" disabled=${busy || fields === null}>${busy ? "Starting…" : "Start run"}</button>
      </div>
    </form>
  </dialog>`;
}
