// Settings → Access keys: the keys the user may list (its own at least), create one (for
// itself, or for another user when its policies allow), delete one. A new key's secret is
// in the create answer only: it is shown once, with a copy button, and never again (it is
// dropped when the card is dismissed or the page is left). A key of one's own asks for the
// current password (the API re-authenticates: a key outlives the session that made it); a
// key for another user needs the policy instead, so the password is sent for one's own only.
import { html, useState } from "../../html.js";
import { enc, post, request, session } from "../../api.js";
import { useCanOnUsers } from "../../me.js";
import { when } from "../../format.js";
import { ConfirmButton, ErrorBox, Loading } from "../common.js";
import { CopyButton, Form, Notice, refusedLabel, useLoad } from "./shared.js";

export function AccessKeys({ can }) {
  const [keys, error, reload] = useLoad("/api/v1/iam/access-keys");
  // Other users to make keys for: only when the user may read users (else: itself only).
  const [users] = useLoad(can("iam:Read") ? "/api/v1/iam/users" : null);
  const [created, setCreated] = useState(null);
  const [message, setMessage] = useState(null);
  const [rowError, setRowError] = useState(null);
  const me = session.user;
  // Another user's keys are offered only where a policy allows them on that user (every user
  // may make and delete its own): a read-only user was offered them, each refused with a 403.
  const listed = (users ? users.users.map((u) => u.user) : []).filter((u) => u !== me);
  const owners = keys ? keys.accessKeys.map((k) => k.user) : [];
  const canOn = useCanOnUsers([...new Set([...listed, ...owners])].filter((u) => u !== me));
  const mayOn = (user, action) => (user === me ? can(action) : canOn(user, action));
  const others = listed.filter((u) => canOn(u, "iam:CreateAccessKey"));
  const [forUser, setForUser] = useState(me);
  // The form's fields are keyed: when the user list arrives while the password is being
  // typed, the "For user" label appears before it, and unkeyed, Preact would reuse the
  // password's label element for it and make the password field anew, emptied.
  const remove = async (k) => {
    setRowError(null);
    try {
      await request("DELETE", `/api/v1/iam/access-keys/${enc(k.accessKeyId)}`);
      setMessage(`Access key ${k.accessKeyId} deleted.`);
      if (created && created.accessKeyId === k.accessKeyId) setCreated(null);
      reload();
    } catch (err) {
      setRowError(err);
    }
  };
  return html`
    <p class="muted small">Scripts send <code>${"Authorization: AccessKey <id>:<secret>"}</code> and act with
      the key's user's policies. The secret is shown once, when the key is created.</p>
    ${can("iam:CreateAccessKey") ? html`<${Form} label="Create access key" onStart=${() => setMessage(null)} testid="create-access-key" onSubmit=${async (f) => {
      const user = f.get("user") || me;
      setCreated(await post("/api/v1/iam/access-keys", user === me ? { user, password: f.get("password") } : { user }));
      setForUser(me);
      reload();
    }}>
      ${others.length ? html`<label key="user">For user <select name="user" value=${forUser} onChange=${(e) => setForUser(e.currentTarget.value)}>
        <option value=${me}>${me} (you)</option>${others.map((u) => html`<option key=${u} value=${u}>${u}</option>`)}</select></label>`
        : html`<input key="user" type="hidden" name="user" value=${me} />`}
      ${forUser === me ? html`<label key="password">Your password <input name="password" type="password" required
        autocomplete="current-password" /></label>` : null}
    <//>` : null}
    ${created ? html`<div class="card secret" role="status" data-testid="new-access-key">
      <strong>Copy the secret now — it is not shown again.</strong>
      <div class="kv"><span class="muted">Access key id</span> <code class="mono" data-testid="access-key-id">${created.accessKeyId}</code></div>
      <div class="kv"><span class="muted">Secret</span> <code class="mono" data-testid="access-key-secret">${created.secretAccessKey}</code></div>
      <div class="row">
        <${CopyButton} text=${`${created.accessKeyId}:${created.secretAccessKey}`} label="Copy id:secret" />
        <button type="button" class="small-btn" onClick=${() => setCreated(null)}>Done, hide it</button>
      </div>
    </div>` : null}
    <${Notice} message=${message} />
    <${ErrorBox} error=${error || rowError} label=${refusedLabel(error || rowError)} />
    ${keys === null && !error ? html`<${Loading} />` : null}
    ${keys ? (keys.accessKeys.length === 0 ? html`<p class="muted">No access keys.</p>` : html`<div class="table-scroll"><table class="grid-table" data-testid="access-keys">
      <thead><tr><th scope="col">Access key id</th><th scope="col">User</th><th scope="col">Created</th>
        <th scope="col" class="actions"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${keys.accessKeys.map((k) => html`<tr key=${k.accessKeyId} data-key=${k.accessKeyId}>
        <td><span class="mono strong">${k.accessKeyId}</span></td><td><span class="mono">${k.user}</span></td>
        <td class="small when">${when(k.createdAt)}</td>
        <td class="actions">${mayOn(k.user, "iam:DeleteAccessKey") ? html`<${ConfirmButton} label="Delete"
          name=${`Delete access key ${k.accessKeyId}`} yes="Yes, delete" action=${() => remove(k)}
          question=${`Delete access key ${k.accessKeyId} of ${k.user}? Scripts using it stop working at once.`} />` : null}</td>
      </tr>`)}</tbody></table></div>`) : null}`;
}
