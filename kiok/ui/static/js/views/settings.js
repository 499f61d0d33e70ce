// Settings: one tab per area, each shown only if the user's policies allow reading it —
// users, groups and policies (create a user, reset a password, attach a policy), connections
// (values are write-only: never shown), KMS keys (rotate), join tokens (shown once), the audit
// log (paged), backups (if the master offers them). URL: /settings/<tab>.
import { html, useEffect, useState } from "../html.js";
import { ApiError, enc, get, post, request } from "../api.js";
import { when } from "../format.js";
import { navigate } from "../router.js";
import { useCan } from "../me.js";
import { ErrorBox, Loading } from "./common.js";

const TABS = [
  ["users", "Users", "iam:Read"],
  ["policies", "Groups & policies", "iam:Read"],
  ["connections", "Connections", "connections:Read"],
  ["kms", "KMS keys", "kms:List"],
  ["join-tokens", "Join tokens", "cluster:IssueJoinToken"],
  ["audit", "Audit log", "audit:Read"],
  ["backups", "Backups", "cluster:Read"],
];

/** Load `path` now and whenever `version` changes; [data, error, reload]. */
function useLoad(path, version = 0) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    get(path).then((d) => live && (setData(d), setError(null))).catch((e) => live && setError(e));
    return () => { live = false; };
  }, [path, version, n]);
  return [data, error, () => setN((v) => v + 1)];
}

function Form({ label, onSubmit, children, testid }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    setBusy(true);
    setError(null);
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
    <button type="submit" class="primary" disabled=${busy}>${busy ? "…" : label}</button>
    <${ErrorBox} error=${error} label=${error instanceof ApiError && error.status === 403 ? "Not allowed" : "Failed"} />
  </form>`;
}

function Users({ can }) {
  const [users, error, reload] = useLoad("/api/v1/iam/users");
  const [policies] = useLoad("/api/v1/iam/policies");
  const [message, setMessage] = useState(null);
  const names = (policies ? policies.policies : []).map((p) => p.policy);
  return html`
    <${ErrorBox} error=${error} />
    ${message ? html`<div class="ok-box" role="status">${message}</div>` : null}
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

function Policies({ can }) {
  const [groups, gError] = useLoad("/api/v1/iam/groups");
  const [policies, pError, reload] = useLoad("/api/v1/iam/policies");
  const [doc, setDoc] = useState('{\n  "Statement": [\n    {"Effect": "Allow", "Action": ["dags:List", "runs:List"], "Resource": "*"}\n  ]\n}');
  let parseError = null;
  try {
    JSON.parse(doc);
  } catch (e) {
    parseError = e.message;
  }
  return html`
    <h2>Groups</h2>
    <${ErrorBox} error=${gError} />
    ${groups ? (groups.groups.length ? html`<table class="grid-table"><thead><tr><th scope="col">Group</th><th scope="col">Policies</th></tr></thead>
      <tbody>${groups.groups.map((g) => html`<tr key=${g.group}><td class="mono strong">${g.group}</td>
        <td>${g.policies.map((p) => html`<span class="chip" key=${p}>${p}</span>`)}</td></tr>`)}</tbody></table>`
      : html`<p class="muted">No groups.</p>`) : null}
    <h2>Policies</h2>
    <${ErrorBox} error=${pError} />
    ${can("iam:Write") ? html`<${Form} label="Save policy" testid="create-policy" onSubmit=${async (f) => {
      if (parseError) throw new Error(`document: not valid JSON (${parseError})`);
      await post("/api/v1/iam/policies", { policy: f.get("policy"), document: JSON.parse(doc) });
      reload();
    }}>
      <label>Policy <input name="policy" required autocomplete="off" /></label>
      <label class="wide">Document (JSON)
        <textarea class="mono" rows="6" value=${doc} aria-invalid=${parseError ? "true" : undefined}
          onInput=${(e) => setDoc(e.currentTarget.value)}></textarea>
        ${parseError ? html`<small class="field-error">${parseError}</small>` : null}
      </label>
    <//>` : null}
    ${policies ? html`<div class="policy-list">${policies.policies.map((p) => html`<details key=${p.policy} class="card" data-policy=${p.policy}>
      <summary class="mono strong">${p.policy}</summary><pre class="mono small">${JSON.stringify(p.document, null, 2)}</pre></details>`)}</div>` : null}`;
}

function Connections({ can }) {
  const [data, error, reload] = useLoad("/api/v1/connections");
  const [rowError, setRowError] = useState(null);
  return html`
    <p class="muted small">Values are write-only: they are never shown again, here or in the API.</p>
    ${can("connections:Write") ? html`<${Form} label="Save connection" testid="create-connection" onSubmit=${async (f) => {
      const properties = {};
      for (const line of String(f.get("properties")).split("\n")) {
        const at = line.indexOf("=");
        if (line.trim() && at < 1) throw new Error(`properties: "${line}" is not key=value`);
        if (line.trim()) properties[line.slice(0, at).trim()] = line.slice(at + 1);
      }
      await post("/api/v1/connections", { connectionId: f.get("id"), type: f.get("type") || "generic", properties });
      reload();
    }}>
      <label>Id <input name="id" required autocomplete="off" /></label>
      <label>Type <input name="type" placeholder="generic" autocomplete="off" /></label>
      <label class="wide">Properties (one key=value a line)
        <textarea name="properties" class="mono" rows="3" autocomplete="off"></textarea></label>
    <//>` : null}
    <${ErrorBox} error=${error || rowError} />
    ${data ? (data.connections.length === 0 ? html`<p class="muted">No connections.</p>` : html`<table class="grid-table" data-testid="connections">
      <thead><tr><th scope="col">Connection</th><th scope="col">Type</th><th scope="col">Properties</th><th scope="col">Updated</th>
        <th scope="col" class="actions"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${data.connections.map((c) => html`<tr key=${c.connectionId} data-connection=${c.connectionId}>
        <td class="mono strong">${c.connectionId}</td><td>${c.type}</td>
        <td>${Object.keys(c.properties).map((k) => html`<span class="chip" key=${k}>${k} = ***</span>`)}</td>
        <td class="small">${when(c.updatedAt)}</td>
        <td class="actions">${can("connections:Delete") ? html`<button type="button" class="danger small-btn"
          onClick=${async () => {
            if (!confirm(`Delete connection ${c.connectionId}?`)) return;
            try { await request("DELETE", `/api/v1/connections/${enc(c.connectionId)}`); reload(); } catch (e) { setRowError(e); }
          }}>Delete</button>` : null}</td>
      </tr>`)}</tbody></table>`) : null}`;
}

function Kms({ can }) {
  const [data, error, reload] = useLoad("/api/v1/admin/kms");
  const [actionError, setActionError] = useState(null);
  return html`<${ErrorBox} error=${error || actionError} />
    ${data ? html`<table class="grid-table" data-testid="kms"><thead><tr><th scope="col">Key</th><th scope="col">Current version</th>
      <th scope="col">Versions kept</th><th scope="col" class="actions"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${data.keys.map((k) => html`<tr key=${k.key} data-key=${k.key}><td class="mono strong">${k.key}</td>
        <td class="num" data-testid="version">v${k.version}</td><td class="num">${k.versions}</td>
        <td class="actions">${can("kms:Rotate") ? html`<button type="button" class="small-btn" onClick=${async () => {
          if (!confirm(`Rotate ${k.key}? New data is written under a new version; older data still reads.`)) return;
          try { await post("/api/v1/admin/kms/rotate", { key: k.key }); reload(); } catch (e) { setActionError(e); }
        }}>Rotate</button>` : null}</td></tr>`)}</tbody></table>` : null}`;
}

function JoinTokens() {
  const [token, setToken] = useState(null);
  return html`<p class="muted small">A join token admits one worker (<code>kiok worker --join-token …</code>);
    it is shown once, here, and cannot be read again.</p>
    <${Form} label="Create join token" testid="create-join-token" onSubmit=${async (f) => {
      setToken(await post("/api/v1/admin/join-tokens", { ttlSeconds: Number(f.get("ttl")) * 60 }));
    }}>
      <label>Valid for (minutes) <input name="ttl" type="number" min="1" value="60" required /></label>
    <//>
    ${token ? html`<div class="card secret" role="status" data-testid="join-token">
      <strong>Copy it now — it is not shown again.</strong>
      <code class="mono">${token.token}</code>
      <span class="muted small">expires ${when(token.expiresAt)}</span>
    </div>` : null}`;
}

function Audit() {
  const [cursors, setCursors] = useState([null]);
  const cursor = cursors[cursors.length - 1];
  const [data, error] = useLoad(`/api/v1/admin/audit?limit=50${cursor ? `&cursor=${enc(cursor)}` : ""}`);
  return html`<${ErrorBox} error=${error} />
    ${data ? html`<table class="grid-table small" data-testid="audit"><thead><tr><th scope="col">When</th><th scope="col">Who</th>
      <th scope="col">Action</th><th scope="col">Target</th><th scope="col">From</th><th scope="col">Result</th></tr></thead>
      <tbody>${data.entries.map((e, i) => html`<tr key=${i}><td>${when(e.at)}</td><td class="mono">${e.actor}</td>
        <td class="mono">${e.action}</td><td class="mono">${e.target}</td><td class="mono">${e.address}</td>
        <td>${e.success ? "✓ ok" : html`<span class="err-text">✕ ${e.detail || "refused"}</span>`}</td></tr>`)}</tbody></table>
      <div class="row">
        <button type="button" disabled=${cursors.length === 1} onClick=${() => setCursors(cursors.slice(0, -1))}>Newer</button>
        <button type="button" disabled=${!data.nextCursor} onClick=${() => setCursors([...cursors, data.nextCursor])}>Older</button>
      </div>` : null}`;
}

function Backups() {
  const [data, error] = useLoad("/api/v1/admin/backups");
  if (error && error.status === 404) return html`<p class="muted">This master does not offer backups over the API.</p>`;
  const list = data ? data.backups || [] : [];
  return html`<${ErrorBox} error=${error} />
    ${data ? (list.length === 0 ? html`<p class="muted">No backups yet.</p>` : html`<table class="grid-table" data-testid="backups">
      <thead><tr>${Object.keys(list[0]).slice(0, 6).map((k) => html`<th scope="col" key=${k}>${k}</th>`)}</tr></thead>
      <tbody>${list.map((b, i) => html`<tr key=${i}>${Object.keys(list[0]).slice(0, 6).map((k) =>
        html`<td class="small mono" key=${k}>${/At$/.test(k) ? when(b[k]) : typeof b[k] === "object" ? JSON.stringify(b[k]) : String(b[k])}</td>`)}</tr>`)}</tbody>
    </table>`) : null}`;
}

export function SettingsView({ tab }) {
  const can = useCan();
  useEffect(() => { document.title = "Settings · kiok"; }, []);
  const tabs = TABS.filter(([, , action]) => can(action));
  const current = tabs.find(([id]) => id === tab) || tabs[0];
  const currentId = current ? current[0] : null;
  useEffect(() => {
    if (currentId && currentId !== tab) navigate(`/settings/${currentId}`, { replace: true });
  }, [tab, currentId]);
  if (!can.known) return html`<main class="page"><${Loading} /></main>`;
  if (!current) return html`<main class="page"><h1>Settings</h1><p class="muted">Your policies allow no settings pages.</p></main>`;
  const View = { users: Users, policies: Policies, connections: Connections, kms: Kms,
    "join-tokens": JoinTokens, audit: Audit, backups: Backups }[current[0]];
  return html`<main class="page">
    <div class="page-head"><h1>Settings</h1></div>
    <nav class="tabs" aria-label="Settings">
      ${tabs.map(([id, label]) => html`<a key=${id} href=${`/settings/${id}`} aria-current=${id === current[0] ? "page" : undefined}>${label}</a>`)}
    </nav>
    <section class="tab-body" aria-label=${current[1]}><${View} key=${current[0]} can=${can} /></section>
  </main>`;
}
