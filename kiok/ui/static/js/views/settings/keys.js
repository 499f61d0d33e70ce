// Settings → KMS keys (versions, rotate) and Join tokens (one worker each, shown once).
import { html, useState } from "../../html.js";
import { post } from "../../api.js";
import { when } from "../../format.js";
import { ConfirmButton, ErrorBox } from "../common.js";
import { CopyButton, Form, useLoad } from "./shared.js";

export function Kms({ can }) {
  const [data, error, reload] = useLoad("/api/v1/admin/kms");
  const [actionError, setActionError] = useState(null);
  return html`<${ErrorBox} error=${error || actionError} />
    ${data ? html`<div class="table-scroll"><table class="grid-table" data-testid="kms"><thead><tr><th scope="col">Key</th><th scope="col" class="num">Current version</th>
      <th scope="col" class="num">Versions kept</th><th scope="col" class="actions"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${data.keys.map((k) => html`<tr key=${k.key} data-key=${k.key}><td><span class="mono strong">${k.key}</span></td>
        <td class="num" data-testid="version">v${k.version}</td><td class="num">${k.versions}</td>
        <td class="actions">${can("kms:Rotate") ? html`<${ConfirmButton} label="Rotate" name=${`Rotate ${k.key}`} danger=${false} yes="Yes, rotate"
          question=${`Rotate ${k.key}? New data is written under a new version; older data still reads.`}
          action=${async () => {
            setActionError(null);
            try { await post("/api/v1/admin/kms/rotate", { key: k.key }); reload(); } catch (e) { setActionError(e); }
          }} />` : null}</td></tr>`)}</tbody></table></div>` : null}`;
}

export function JoinTokens() {
  const [token, setToken] = useState(null);
  return html`<p class="muted small">A join token admits one worker (<code>KIOK_WORKER_JOIN_TOKEN=… kiok worker</code>);
    it is shown once, here, and cannot be read again.</p>
    <${Form} label="Create join token" testid="create-join-token" onSubmit=${async (f) => {
      setToken(await post("/api/v1/admin/join-tokens", { ttlSeconds: Number(f.get("ttl")) * 60 }));
    }}>
      <label>Valid for (minutes, at most 10080: 7 days)
        <input name="ttl" type="number" min="1" max="10080" defaultValue="60" required /></label>
    <//>
    ${token ? html`<div class="card secret" role="status" data-testid="join-token">
      <strong>Copy it now — it is not shown again.</strong>
      <code class="mono">${token.token}</code>
      <div class="row"><${CopyButton} text=${token.token} /><span class="muted small">expires ${when(token.expiresAt)}</span></div>
    </div>` : null}`;
}
