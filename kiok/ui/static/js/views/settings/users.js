// Settings → Users: create a user (with a first policy), set a user's password, attach a
// policy. Group membership is edited on the Groups tab.
import { html, useState } from "../../html.js";
import { post } from "../../api.js";
import { when } from "../../format.js";
import { ErrorBox, Loading } from "../common.js";
import { Form, Notice, useLoad } from "./shared.js";

export function Users({ can }) {
  const [users, error, reload] = useLoad("/api/v1/iam/users");
  const [policies] = useLoad("/api/v1/iam/policies");
  const [message, setMessage] = useState(null);
  const names = (policies ? policies.policies : []).map((p) => p.policy);
  return html`
    <${ErrorBox} error=${error} />
    <${Notice} message=${message} />
    ${can("iam:Write") ? html`<${Form} label="Create user" testid="create-user" onSubmit=${async (f) => {
      const pols = f.getAll("policies").filter(Boolean);
      await post("/api/v1/iam/users", { user: f.get("user"), password: f.get("password"), policies: pols });
      setMessage(`User ${f.get("user")} created.`);
      reload();
    }}>
      <label>User <input name="user" required autocomplete="off" /></label>
      <label>First password <input name="password" type="password" required autocomplete="new-password" /></label>
      <label>Policy <select name="policies"><option value="">none</option>${names.map((p) => html`<option value=${p}>${p}</option>`)}</select></label>
    <//>` : null}
    ${users === null && !error ? html`<${Loading} />` : null}
    ${users ? html`<table class="grid-table" data-testid="users">
      <thead><tr><th scope="col">User</th><th scope="col">Groups</th><th scope="col">Policies</th><th scope="col">Created</th>
        <th scope="col" class="actions"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${users.users.map((u) => html`<tr key=${u.user} data-user=${u.user}>
        <td class="mono strong">${u.user}${u.requirePasswordChange ? html` <span class="chip">must change password</span>` : null}</td>
        <td>${u.groups.join(", ") || html`<span class="muted">none</span>`}</td>
        <td>${u.policies.map((p) => html`<span class="chip" key=${p}>${p}</span>`)}</td>
        <td class="small">${when(u.createdAt)}</td>
        <td class="actions"><${UserActions} u=${u} names=${names} can=${can} onDone=${(m) => { setMessage(m); reload(); }} /></td>
      </tr>`)}</tbody></table>` : null}`;
}

function UserActions({ u, names, can, onDone }) {
  const [open, setOpen] = useState(null);
  const [error, setError] = useState(null);
  const [value, setValue] = useState("");
  const go = async () => {
    setError(null);
    try {
      if (open === "password") {
        await post("/api/v1/iam/users", { user: u.user, password: value });
        onDone(`Password of ${u.user} set.`);
      } else {
        await post("/api/v1/iam/users", { user: u.user, policies: [...new Set([...u.policies, value])] });
        onDone(`Policy ${value} attached to ${u.user}.`);
      }
      setOpen(null);
      setValue("");
    } catch (err) {
      setError(err);
    }
  };
  if (open) {
    return html`<div class="confirm" role="group" aria-label=${`${open} for ${u.user}`}>
      ${open === "password"
        ? html`<input type="password" aria-label=${`New password for ${u.user}`} value=${value} onInput=${(e) => setValue(e.currentTarget.value)} />`
        : html`<select aria-label=${`Policy to attach to ${u.user}`} value=${value} onChange=${(e) => setValue(e.currentTarget.value)}>
            <option value="">choose…</option>${names.filter((p) => !u.policies.includes(p)).map((p) => html`<option value=${p}>${p}</option>`)}</select>`}
      <button type="button" class="primary small-btn" disabled=${!value} onClick=${go}>Save</button>
      <button type="button" class="small-btn" onClick=${() => setOpen(null)}>Cancel</button>
      <${ErrorBox} error=${error} label="Failed" />
    </div>`;
  }
  return html`<div class="row">
    ${can("iam:SetPassword") ? html`<button type="button" class="small-btn" onClick=${() => setOpen("password")}>Reset password</button>` : null}
    ${can("iam:AttachPolicy") ? html`<button type="button" class="small-btn" onClick=${() => setOpen("policy")}>Attach policy</button>` : null}
  </div>`;
}
