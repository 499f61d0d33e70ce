// Settings → Users: create a user (with a first policy), reset another user's password (by
// default the user must choose a new one at the next login; one's own is changed under
// Settings → Password), attach and detach a policy, delete a user (never oneself). Group membership is edited on the Groups tab.
import { html, useEffect, useRef, useState } from "../../html.js";
import { enc, post, request, session } from "../../api.js";
import { when } from "../../format.js";
import { ErrorBox, InlineConfirm, Loading } from "../common.js";
import { Chip, Form, Notice, refusedLabel, useLoad } from "./shared.js";

export function Users({ can }) {
  const [users, error, reload] = useLoad("/api/v1/iam/users");
  const [policies] = useLoad("/api/v1/iam/policies");
  const [message, setMessage] = useState(null);
  const names = (policies ? policies.policies : []).map((p) => p.policy);
  const done = (m) => { setMessage(m); reload(); };
  return html`
    <${ErrorBox} error=${error} />
    <${Notice} message=${message} />
    ${can("iam:Write") ? html`<${Form} label="Create user" onStart=${() => setMessage(null)} testid="create-user" onSubmit=${async (f) => {
      const pols = f.getAll("policies").filter(Boolean);
      const user = f.get("user");
      // Create only: an existing user's password and policies are not replaced (it was, by
      // creating a user of the same name); one made meanwhile is refused by the master.
      const taken = new Error(`A user named ${user} already exists: change it in its row, or choose another name.`);
      if (users && users.users.some((u) => u.user === user)) throw taken;
      try {
        await request("POST", "/api/v1/iam/users", { user, password: f.get("password"), policies: pols }, undefined,
          { "If-None-Match": "*" });
      } catch (err) {
        throw err.status === 409 ? taken : err;
      }
      done(`User ${user} created.`);
    }}>
      <label>User <input name="user" required autocomplete="off" /></label>
      <label>First password <input name="password" type="password" required autocomplete="new-password" /></label>
      <label>Policy <select name="policies"><option value="">none</option>${names.map((p) => html`<option value=${p}>${p}</option>`)}</select></label>
    <//>` : null}
    ${users === null && !error ? html`<${Loading} />` : null}
    ${users ? html`<div class="table-scroll"><table class="grid-table" data-testid="users">
      <thead><tr><th scope="col">User</th><th scope="col">Groups</th><th scope="col">Policies</th><th scope="col">Created</th>
        <th scope="col" class="actions"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${users.users.map((u) => html`<${UserRow} key=${u.user} u=${u} names=${names} can=${can} onDone=${done} />`)}</tbody>
    </table></div>` : null}`;
}

function UserRow({ u, names, can, onDone }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const detach = async (policy) => {
    if (busy) return; // a second click would send the list the first one changed
    setError(null);
    setBusy(true);
    try {
      await post("/api/v1/iam/users", { user: u.user, policies: u.policies.filter((p) => p !== policy) });
      onDone(`Policy ${policy} detached from ${u.user}.`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  // The API checks iam:Write on the user as well as iam:DetachPolicy on the policy.
  const mayDetach = can("iam:DetachPolicy") && can("iam:Write");
  return html`<tr data-user=${u.user}>
    <td><span class="mono strong">${u.user}</span>${u.requirePasswordChange
      ? html` <span class="chip" data-testid="must-change">must change password</span>` : null}</td>
    <td>${u.groups.join(", ") || html`<span class="muted">none</span>`}</td>
    <td data-testid="user-policies">${u.policies.length ? u.policies.map((p) => html`<${Chip} key=${p} text=${p}
      removeLabel=${`Detach ${p} from ${u.user}`} onRemove=${mayDetach ? () => detach(p) : null} />`)
      : html`<span class="muted">none</span>`}
      <${ErrorBox} error=${error} label=${refusedLabel(error)} /></td>
    <td class="small when">${when(u.createdAt)}</td>
    <td class="actions"><${UserActions} u=${u} names=${names} can=${can} onDone=${onDone} /></td>
  </tr>`;
}

function UserActions({ u, names, can, onDone }) {
  const [open, setOpen] = useState(null); // "password" | "policy" | "delete"
  const [error, setError] = useState(null);
  const [value, setValue] = useState("");
  const [mustChange, setMustChange] = useState(true);
  const [busy, setBusy] = useState(false);
  // Cancel or Escape gives the focus back to the button that opened the editor.
  const buttons = useRef(null);
  const back = useRef(null);
  useEffect(() => {
    if (open === null && back.current && buttons.current) {
      buttons.current.querySelector(`[data-action="${back.current}"]`)?.focus();
      back.current = null;
    }
  }, [open]);
  const reset = () => { setOpen(null); setValue(""); setError(null); setMustChange(true); };
  const close = () => { back.current = open; reset(); };
  const go = async () => {
    if (!value && open !== "delete") return;
    setError(null);
    setBusy(true);
    try {
      if (open === "password") {
        // An admin's reset: by default the user must choose a new password at the next login
        // (until then its access keys are refused too: unticked for a scripts' user).
        await post("/api/v1/iam/users", { user: u.user, password: value, requirePasswordChange: mustChange });
        onDone(mustChange
          ? `Password of ${u.user} set. ${u.user} must choose a new one at the next login.`
          : `Password of ${u.user} set.`);
      } else if (open === "delete") {
        await request("DELETE", `/api/v1/iam/users/${enc(u.user)}`);
        onDone(`User ${u.user} deleted.`);
      } else {
        await post("/api/v1/iam/users", { user: u.user, policies: [...new Set([...u.policies, value])] });
        onDone(`Policy ${value} attached to ${u.user}.`);
      }
      // The focus goes back to the button that opened the form (a deleted user's row is
      // gone: the page's notice takes it).
      back.current = open === "delete" ? null : open;
      reset();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const errorBox = html`<${ErrorBox} error=${error} label=${refusedLabel(error)} />`;
  if (open === "delete") {
    return html`<${InlineConfirm} label=${`Delete ${u.user}`} onDismiss=${close}>
      <span>Delete ${u.user}? Its access keys go with it.</span>
      <button type="button" class="danger small-btn" disabled=${busy} onClick=${go}>Yes, delete</button>
      <button type="button" class="small-btn" onClick=${close}>Cancel</button>
      ${errorBox}
    <//>`;
  }
  if (open) {
    return html`<${InlineConfirm} label=${`${open} for ${u.user}`} onDismiss=${close} onSubmit=${go}>
      ${open === "password"
        ? html`<input type="password" aria-label=${`New password for ${u.user}`} placeholder="new password"
            autocomplete="new-password" required value=${value} onInput=${(e) => setValue(e.currentTarget.value)} />
          <label class="inline-check" title="Until then the user's access keys are refused too">
            <input type="checkbox" checked=${mustChange} onChange=${(e) => setMustChange(e.currentTarget.checked)} />
            must choose a new one at next login</label>`
        : html`<select aria-label=${`Policy to attach to ${u.user}`} value=${value} onChange=${(e) => setValue(e.currentTarget.value)}>
            <option value="">choose a policy…</option>${names.filter((p) => !u.policies.includes(p)).map((p) => html`<option value=${p}>${p}</option>`)}</select>`}
      <button type="submit" class="primary small-btn" disabled=${!value || busy}>Save</button>
      <button type="button" class="small-btn" onClick=${close}>Cancel</button>
      ${errorBox}
    <//>`;
  }
  const self = u.user === session.user;
  return html`<div class="row" ref=${buttons}>
    ${can("iam:SetPassword") && !self ? html`<button type="button" class="small-btn" data-action="password" onClick=${() => setOpen("password")}>Reset password</button>` : null}
    ${can("iam:AttachPolicy") ? html`<button type="button" class="small-btn" data-action="policy" onClick=${() => setOpen("policy")}>Attach policy</button>` : null}
    ${can("iam:Write") && !self ? html`<button type="button" class="danger small-btn" aria-label=${`Delete user ${u.user}`}
      data-action="delete" onClick=${() => setOpen("delete")}>Delete</button>` : null}
  </div>`;
}
