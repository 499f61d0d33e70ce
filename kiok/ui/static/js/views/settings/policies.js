// Settings → Policies: the policy documents, and an editor to create one or edit one (Edit
// loads it). The document is checked as you type (a JSON syntax error is marked at its
// line, and Save stays off); what the master refuses (an unknown field, an Effect that is not
// Allow or Deny, a Resource that can match nothing) is its 400 message, shown under the editor.
import { html, useState } from "../../html.js";
import { enc, post, request } from "../../api.js";
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
  const problem = jsonProblem(doc);
  const writable = can("iam:Write");

  const save = async (event) => {
    event.preventDefault();
    setBusy(true);
    setSaveError(null);
    setMessage(null);
    try {
      await post("/api/v1/iam/policies", { policy: name, document: JSON.parse(doc) });
      setMessage(`Policy ${name} saved.`);
      reload();
    } catch (err) {
      setSaveError(err);
    } finally {
      setBusy(false);
    }
  };
  const edit = (p) => {
    setName(p.policy);
    setDoc(JSON.stringify(p.document, null, 2));
    setEditing(true);
    setSaveError(null);
    setMessage(null);
    document.getElementById("policy-editor")?.scrollIntoView({ block: "start" });
  };
  const fresh = () => {
    setName("");
    setDoc(EXAMPLE);
    setEditing(false);
    setSaveError(null);
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
      ${editing ? null : html`<label>Policy name <input name="policy" required autocomplete="off" value=${name}
        onInput=${(e) => setName(e.currentTarget.value)} /></label>`}
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
