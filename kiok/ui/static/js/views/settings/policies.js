// Settings → Policies: the policy documents, and an editor to create one or edit one (Edit
// loads it). The document is checked as you type (a JSON syntax error is marked at its
// line, and Save stays off); what the master refuses (an unknown field, an Effect that is not
// Allow or Deny, a Resource that can match nothing) is its 400 message, shown under the editor.
// "New policy" creates only (`If-None-Match: *`): a name already taken is refused at the name
// field, never silently replaced; once saved, the form edits that policy.
import { html, useState } from "../../html.js";
import { enc, request } from "../../api.js";
import { ErrorBox, Loading } from "../common.js";
import { JsonEditor, Notice, refusedLabel, useLoad } from "./shared.js";
import { jsonProblem } from "./jsonproblem.js";

const EXAMPLE = `{
  "Statement": [
    {"Effect": "Allow", "Action": ["dags:List", "dags:Read", "runs:List", "runs:Read"], "Resource": "*"}
  ]
}`;

export function Policies({ can }) {
  const [policies, error, reload] = useLoad("/api/v1/iam/policies");
  const [name, setName] = useState("");
  const [doc, setDoc] = useState(EXAMPLE);
  const [editing, setEditing] = useState(false);
  const [saveError, setSaveError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState(null);
  const [rowError, setRowError] = useState(null);
  const [nameError, setNameError] = useState(null);
  const problem = jsonProblem(doc);
  const writable = can("iam:Write");
  const taken = (n) => html`A policy named <span class="mono">${n}</span> already exists: use its <strong>Edit</strong> to change it, or choose another name.`;

  const save = async (event) => {
    event.preventDefault();
    const saved = name.trim();
    setSaveError(null);
    setMessage(null);
    if (!editing && policies && policies.policies.some((p) => p.policy === saved)) {
      setNameError(taken(saved));
      document.getElementById("policy-name")?.focus();
      return;
    }
    setBusy(true);
    try {
      const body = { policy: saved, document: JSON.parse(doc) };
      // New: create only, so a policy made meanwhile (or one this list does not show) is kept.
      await request("POST", "/api/v1/iam/policies", body, undefined, editing ? undefined : { "If-None-Match": "*" });
      setMessage(`Policy ${saved} saved.`);
      setName(saved);
      setEditing(true);
      reload();
    } catch (err) {
      if (!editing && err.status === 409) {
        setNameError(taken(saved));
        document.getElementById("policy-name")?.focus();
      } else {
        setSaveError(err);
      }
    } finally {
      setBusy(false);
    }
  };
  const edit = (p) => {
    setName(p.policy);
    setDoc(JSON.stringify(p.document, null, 2));
    setEditing(true);
    setSaveError(null);
    setNameError(null);
    setMessage(null);
    document.getElementById("policy-editor")?.scrollIntoView({ block: "start" });
  };
  const fresh = () => {
    setName("");
    setDoc(EXAMPLE);
    setEditing(false);
    setSaveError(null);
    setNameError(null);
    setMessage(null);
  };
  const remove = async (p) => {
    if (!confirm(`Delete policy ${p.policy}? It is detached from every user and group.`)) return;
    setRowError(null);
    try {
      await request("DELETE", `/api/v1/iam/policies/${enc(p.policy)}`);
      setMessage(`Policy ${p.policy} deleted.`);
      reload();
    } catch (err) {
      setRowError(err);
    }
  };

  return html`
    <${ErrorBox} error=${error || rowError} label=${refusedLabel(error || rowError)} />
    <${Notice} message=${message} />
    ${writable ? html`<form id="policy-editor" class="card policy-editor" onSubmit=${save}
      aria-label=${editing ? `Edit policy ${name}` : "New policy"} data-testid="policy-editor">
      <div class="row">
        <h2>${editing ? html`Edit policy <span class="mono">${name}</span>` : "New policy"}</h2>
        <span class="spacer"></span>
        ${editing ? html`<button type="button" class="link" onClick=${fresh}>New policy instead</button>` : null}
      </div>
      ${editing ? null : html`<label>Policy name <input id="policy-name" name="policy" required autocomplete="off"
        value=${name} aria-invalid=${nameError ? "true" : undefined} aria-describedby="policy-name-error"
        onInput=${(e) => { setName(e.currentTarget.value); setNameError(null); }} /></label>
        <div id="policy-name-error">${nameError ? html`<small class="field-error" role="alert"
          data-testid="policy-name-error">${nameError}</small>` : null}</div>`}
      <${JsonEditor} value=${doc} onInput=${(v) => { setDoc(v); setSaveError(null); }} label="Policy document (JSON)" />
      <${ErrorBox} error=${saveError} label=${saveError && saveError.status === 400 ? "Refused" : refusedLabel(saveError)} />
      <div class="row end">
        <button type="submit" class="primary" disabled=${busy || Boolean(problem) || !name.trim()}>${busy ? "Saving…" : "Save policy"}</button>
      </div>
    </form>` : null}
    <h2>Policies</h2>
    ${policies === null && !error ? html`<${Loading} />` : null}
    ${policies ? html`<div class="policy-list">${policies.policies.map((p) => html`<div key=${p.policy} class="card" data-policy=${p.policy}>
      <div class="row"><span class="mono strong">${p.policy}</span><span class="spacer"></span>
        ${writable ? html`<button type="button" class="small-btn" aria-label=${`Edit ${p.policy}`} onClick=${() => edit(p)}>Edit</button>
          <button type="button" class="danger small-btn" aria-label=${`Delete ${p.policy}`} onClick=${() => remove(p)}>Delete</button>` : null}</div>
      <details><summary class="small muted">Document</summary><pre class="mono small">${JSON.stringify(p.document, null, 2)}</pre></details>
    </div>`)}</div>` : null}`;
}
