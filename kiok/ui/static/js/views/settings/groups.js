// Settings → Groups: create a group, add and remove its members, attach and detach its
// policies, delete it. Members are the users whose `groups` name it (membership is written
// as a user update, `POST /api/v1/iam/users {user, groups}`); policies with
// `POST /api/v1/iam/groups {group, policies}`.
import { html, useState } from "../../html.js";
import { enc, post, request } from "../../api.js";
import { ConfirmButton, ErrorBox, Loading } from "../common.js";
import { Chip, Form, Notice, refusedLabel, useLoad } from "./shared.js";

export function Groups({ can }) {
  const [groups, gError, reloadGroups] = useLoad("/api/v1/iam/groups");
  const [users, uError, reloadUsers] = useLoad("/api/v1/iam/users");
  const [policies] = useLoad("/api/v1/iam/policies");
  const [message, setMessage] = useState(null);
  const policyNames = (policies ? policies.policies : []).map((p) => p.policy);
  const userList = users ? users.users : [];
  const done = (m) => { setMessage(m); reloadGroups(); reloadUsers(); };
  return html`
    <${ErrorBox} error=${gError || uError} />
    <${Notice} message=${message} />
    ${can("iam:Write") ? html`<${Form} label="Create group" onStart=${() => setMessage(null)} testid="create-group" onSubmit=${async (f) => {
      const policy = f.get("policy");
      const group = f.get("group");
      // Create only: an existing group's policies are not replaced (creating "admins" again
      // without a policy detached full-access from it).
      const taken = new Error(`A group named ${group} already exists: change it in its row, or choose another name.`);
      if (groups && groups.groups.some((g) => g.group === group)) throw taken;
      try {
        await request("POST", "/api/v1/iam/groups", { group, policies: policy ? [policy] : [] }, undefined,
          { "If-None-Match": "*" });
      } catch (err) {
        throw err.status === 409 ? taken : err;
      }
      done(`Group ${group} created.`);
    }}>
      <label>Group <input name="group" required autocomplete="off" /></label>
      <label>Policy <select name="policy"><option value="">none</option>${policyNames.map((p) => html`<option value=${p}>${p}</option>`)}</select></label>
    <//>` : null}
    ${groups === null && !gError ? html`<${Loading} />` : null}
    ${groups ? (groups.groups.length === 0 ? html`<p class="muted">No groups.</p>` : html`<div class="table-scroll"><table class="grid-table" data-testid="groups">
      <thead><tr><th scope="col">Group</th><th scope="col">Members</th><th scope="col">Policies</th>
        <th scope="col" class="actions"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${groups.groups.map((g) => html`<${GroupRow} key=${g.group} g=${g} users=${userList}
        policyNames=${policyNames} can=${can} onDone=${done} />`)}</tbody>
    </table></div>`) : null}`;
}

/** A select of `options` and an Add button. */
function Adder({ label, options, onAdd }) {
  const [value, setValue] = useState("");
  return html`<span class="adder">
    <select aria-label=${label} value=${value} onChange=${(e) => setValue(e.currentTarget.value)}>
      <option value="">${label}…</option>${options.map((o) => html`<option key=${o} value=${o}>${o}</option>`)}</select>
    <button type="button" class="small-btn" disabled=${!value} onClick=${async () => { await onAdd(value); setValue(""); }}>Add</button>
  </span>`;
}

function GroupRow({ g, users, policyNames, can, onDone }) {
  const [error, setError] = useState(null);
  const members = users.filter((u) => u.groups.includes(g.group));
  const act = (fn) => async (...args) => {
    setError(null);
    try {
      onDone(await fn(...args));
    } catch (err) {
      setError(err);
    }
  };
  const setMembership = act(async (user, join) => {
    const u = users.find((x) => x.user === user);
    const groups = join ? [...new Set([...u.groups, g.group])] : u.groups.filter((x) => x !== g.group);
    await post("/api/v1/iam/users", { user, groups });
    return join ? `${user} added to ${g.group}.` : `${user} removed from ${g.group}.`;
  });
  const setPolicies = act(async (policy, attach) => {
    const next = attach ? [...new Set([...g.policies, policy])] : g.policies.filter((p) => p !== policy);
    await post("/api/v1/iam/groups", { group: g.group, policies: next });
    return attach ? `Policy ${policy} attached to ${g.group}.` : `Policy ${policy} detached from ${g.group}.`;
  });
  const remove = act(async () => {
    await request("DELETE", `/api/v1/iam/groups/${enc(g.group)}`);
    return `Group ${g.group} deleted.`;
  });
  return html`<tr data-group=${g.group}>
    <td><span class="mono strong">${g.group}</span></td>
    <td data-testid="members">
      ${members.length ? members.map((u) => html`<${Chip} key=${u.user} text=${u.user} removeLabel=${`Remove ${u.user} from ${g.group}`}
        onRemove=${can("iam:RemoveUserFromGroup") ? () => setMembership(u.user, false) : null} />`) : html`<span class="muted">none</span>`}
      ${can("iam:AddUserToGroup") ? html`<${Adder} label=${`Add member to ${g.group}`}
        options=${users.filter((u) => !u.groups.includes(g.group)).map((u) => u.user)} onAdd=${(u) => setMembership(u, true)} />` : null}
    </td>
    <td data-testid="group-policies">
      ${g.policies.length ? g.policies.map((p) => html`<${Chip} key=${p} text=${p} removeLabel=${`Detach ${p} from ${g.group}`}
        onRemove=${can("iam:DetachPolicy") ? () => setPolicies(p, false) : null} />`) : html`<span class="muted">none</span>`}
      ${can("iam:AttachPolicy") ? html`<${Adder} label=${`Attach policy to ${g.group}`}
        options=${policyNames.filter((p) => !g.policies.includes(p))} onAdd=${(p) => setPolicies(p, true)} />` : null}
      <${ErrorBox} error=${error} label=${refusedLabel(error)} />
    </td>
    <td class="actions">${can("iam:Write") ? html`<${ConfirmButton} label="Delete" name=${`Delete group ${g.group}`} yes="Yes, delete"
      question=${`Delete group ${g.group}? Its members leave it.`} action=${remove} />` : null}</td>
  </tr>`;
}
