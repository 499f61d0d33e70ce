// Settings → Policies: the policy documents, and an editor to create one or edit one (Edit
// loads it). The document is checked as you type (a JSON syntax error is marked at its
// line, and Save stays off); what the master refuses (an unknown field, an Effect that is not
// Allow or Deny, a Resource that can match nothing) is its 400 message, shown under the editor.
// "New policy" creates only (`If-None-Match: *`): a name already taken is refused at the name
// field, never silently replaced; once saved, the form edits that policy. Edit (or "New policy
// instead") while the form has unsaved changes asks first, inline, whether to discard them.
import { html, useEffect, useRef, useState } from "../../html.js";
import { enc, request } from "../../api.js";
import { ConfirmButton, ErrorBox, InlineConfirm, Loading, useFocusBack } from "../common.js";
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
  const saveButton = useFocusBack(busy, saveError);
  const [rowError, setRowError] = useState(null);
  const [nameError, setNameError] = useState(null);
  // What the form held when loaded or saved: a change since then is a draft not to lose.
  const [base, setBase] = useState({ name: "", doc: EXAMPLE });
  const dirty = name !== base.name || doc !== base.doc;
  // Edit (a policy) or New (null) asked while dirty: { to, from } (the button that asked).
  const [pending, setPending] = useState(null);
  const editor = useRef(null);
  // After "Discard changes" the confirm is gone: the focus goes to the editor's first field.
  const [refocus, setRefocus] = useState(0);
  useEffect(() => {
    if (refocus) editor.current?.querySelector("input, textarea")?.focus();
  }, [refocus]);
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
      setBase({ name: saved, doc });
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
  const load = (p) => {
    const text = p ? JSON.stringify(p.document, null, 2) : EXAMPLE;
    setName(p ? p.policy : "");
    setDoc(text);
    setBase({ name: p ? p.policy : "", doc: text });
    setEditing(Boolean(p));
    setSaveError(null);
    setNameError(null);
    setMessage(null);
    setPending(null);
  };
  // Edit p (or a new policy: null); with unsaved changes, ask first (in the editor).
  const open = (p, event) => {
    if (dirty) {
      setPending({ to: p, from: event && event.currentTarget });
    } else {
      load(p);
    }
    editor.current?.scrollIntoView({ block: "start" });
  };
  const edit = (p) => (event) => open(p, event);
  const fresh = (event) => open(null, event);
  const keep = () => {
    const from = pending && pending.from;
    setPending(null);
    if (from && from.isConnected) from.focus();
  };
  const draftName = editing ? `policy ${base.name}` : name.trim() ? `new policy ${name.trim()}` : "new policy";
  const remove = async (p) => {
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
    ${writable ? html`<form id="policy-editor" ref=${editor} class="card policy-editor" onSubmit=${save}
      aria-label=${editing ? `Edit policy ${name}` : "New policy"} data-testid="policy-editor">
      <div class="row">
        <h2>${editing ? html`Edit policy <span class="mono">${name}</span>` : "New policy"}</h2>
        <span class="spacer"></span>
        ${editing ? html`<button type="button" class="link" onClick=${fresh}>New policy instead</button>` : null}
      </div>
      ${pending ? html`<${InlineConfirm} label="Unsaved changes" onDismiss=${keep} testid="policy-discard">
        <span>Your changes to the ${draftName} are not saved. Discard them and ${pending.to
          ? html`edit <span class="mono">${pending.to.policy}</span>` : "start a new policy"}?</span>
        <button type="button" class="danger small-btn" onClick=${() => { load(pending.to); setRefocus((n) => n + 1); }}>Discard changes</button>
        <button type="button" class="small-btn" onClick=${keep}>Keep editing</button>
      <//>` : null}
      ${editing ? null : html`<label>Policy name <input id="policy-name" name="policy" required autocomplete="off"
        value=${name} aria-invalid=${nameError ? "true" : undefined} aria-describedby="policy-name-error"
        onInput=${(e) => { setName(e.currentTarget.value); setNameError(null); }} /></label>
        <div id="policy-name-error">${nameError ? html`<small class="field-error" role="alert"
          data-testid="policy-name-error">${nameError}</small>` : null}</div>`}
      <${JsonEditor} value=${doc} onInput=${(v) => { setDoc(v); setSaveError(null); }} label="Policy document (JSON)" />
      <${ErrorBox} error=${saveError} label=${saveError && saveError.status === 400 ? "Refused" : refusedLabel(saveError)} />
      <div class="row end">
        <button type="submit" class="primary" ref=${saveButton} disabled=${busy || Boolean(problem) || !name.trim()}>${busy ? "Saving…" : "Save policy"}</button>
      </div>
    </form>` : null}
    <h2>Policies</h2>
    ${policies === null && !error ? html`<${Loading} />` : null}
    ${policies ? html`<div class="policy-list">${policies.policies.map((p) => html`<div key=${p.policy} class="card" data-policy=${p.policy}>
      <div class="row"><span class="mono strong">${p.policy}</span><span class="spacer"></span>
        ${writable ? html`<button type="button" class="small-btn" aria-label=${`Edit ${p.policy}`} onClick=${edit(p)}>Edit</button>
          <${ConfirmButton} label="Delete" name=${`Delete ${p.policy}`} yes="Yes, delete" action=${() => remove(p)}
            question=${`Delete policy ${p.policy}? It is detached from every user and group.`} />` : null}</div>
      <details><summary class="small muted">Document</summary><pre class="mono small">${JSON.stringify(p.document, null, 2)}</pre></details>
    </div>`)}</div>` : null}`;
}
