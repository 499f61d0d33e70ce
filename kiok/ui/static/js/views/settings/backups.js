// Settings → Backup & Restore: the backups (newest first), Back up now, the schedule (a cron
// the leader fires in UTC; an invalid one is the master's 400, shown at the field), and
// Restore, which replaces every store: a dialog asks the user to type the backup's id, and
// the request repeats it (`{"confirm": id}`). After a restore the tokens are those of the
// restored store, so the UI signs out. The last restore (when, by whom) is shown above the list.
import { html, useEffect, useRef, useState } from "../../html.js";
import { ApiError, enc, post, request, session } from "../../api.js";
import { cronWords } from "../../cron.js";
import { when } from "../../format.js";
import { navigate } from "../../router.js";
import { ErrorBox, Loading, useFocusBack } from "../common.js";
import { Notice, bytes, refusedLabel, useLoad } from "./shared.js";

export function Backups({ can }) {
  const [data, error, reload] = useLoad("/api/v1/admin/backups");
  const [busy, setBusy] = useState(false);
  const [nowError, setNowError] = useState(null);
  const nowButton = useFocusBack(busy, nowError);
  const [message, setMessage] = useState(null);
  const [restoring, setRestoring] = useState(null);
  if (error && error.status === 404) return html`<p class="muted">This master does not offer backups over the API.</p>`;
  const noTarget = (data && data.targetSet === false) || (error instanceof ApiError && error.code === "backup_target_missing");
  const list = data ? data.backups || [] : [];
  const backUpNow = async () => {
    setBusy(true);
    setNowError(null);
    setMessage(null);
    try {
      const made = await post("/api/v1/admin/backup");
      setMessage(`Backup ${made.backupId} stored (${bytes(made.uploadedBytes)} uploaded).`);
      reload();
    } catch (err) {
      setNowError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`
    <${Schedule} can=${can} noTarget=${noTarget} />
    <h2>Backups</h2>
    ${noTarget ? html`<p class="muted" data-testid="no-backup-target">No backup target is set: set <code>kiok.backup.dir</code>${" "}
      or the <code>kiok.backup.s3.*</code> settings (see the operations guide).</p>` : html`<${ErrorBox} error=${error} label=${refusedLabel(error)} />`}
    ${can("admin:Backup") && !noTarget ? html`<div class="row">
      <button type="button" class="primary" ref=${nowButton} disabled=${busy} onClick=${backUpNow}>${busy ? "Backing up…" : "Back up now"}</button>
      <span class="muted small">Every store (metadata, IAM, KMS, connections, job logs), incremental over the newest backup.</span>
    </div>` : null}
    <${ErrorBox} error=${nowError} label=${refusedLabel(nowError)} />
    <${Notice} message=${message} />
    ${data === null && !error ? html`<${Loading} />` : null}
    ${data && data.lastRestore ? html`<${LastRestore} restore=${data.lastRestore} />` : null}
    ${data ? (list.length === 0 ? html`<p class="muted">No backups yet.</p>` : html`<div class="table-scroll"><table class="grid-table" data-testid="backups">
      <thead><tr><th scope="col">Backup</th><th scope="col">Taken</th><th scope="col" class="num">Size</th>
        <th scope="col" class="num">Uploaded</th><th scope="col">Stores</th><th scope="col">Built on</th>
        <th scope="col" class="actions"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${list.map((b) => html`<tr key=${b.id} data-backup=${b.id}>
        <td><span class="mono strong">${b.id}</span></td><td class="small">${when(b.time)}</td>
        <td class="num">${bytes(b.size)}</td><td class="num">${bytes(b.uploadedBytes)}</td>
        <td class="small">${(b.stores || []).join(", ")}</td>
        <td class="small">${b.incrementalBase ? html`<span class="mono">${b.incrementalBase}</span>` : html`<span class="muted">full</span>`}</td>
        <td class="actions">${can("admin:Restore") ? html`<button type="button" class="danger small-btn"
          aria-label=${`Restore ${b.id}`} onClick=${() => setRestoring(b)}>Restore…</button>` : null}</td>
      </tr>`)}</tbody></table></div>`) : null}
    ${data && (data.rejected || []).length ? html`<${Rejected} items=${data.rejected} />` : null}
    ${restoring ? html`<${RestoreDialog} backup=${restoring} onClose=${() => setRestoring(null)} />` : null}`;
}

// Manifests in the target this cluster cannot authenticate (planted, altered, or another
// master key's): never shown as backups, only named, so nobody restores or trusts them.
function Rejected({ items }) {
  return html`<div class="warn-box" role="note" data-testid="rejected-backups">
    <p class="small"><strong>Not backups of this cluster:</strong> ${items.length === 1
      ? "the target holds a manifest that does not authenticate under this cluster's master key (made by another cluster, or tampered with). It is not listed and cannot be restored."
      : `the target holds ${items.length} manifests that do not authenticate under this cluster's master key (made by another cluster, or tampered with). They are not listed and cannot be restored.`}</p>
    <ul class="small">${items.map((r) => html`<li key=${r.id}><span class="mono">${r.id}</span>: ${r.problem}</li>`)}</ul>
  </div>`;
}

// The last restore into this state (replicated to every master; the raft entry only with several).
function LastRestore({ restore }) {
  return html`<p class="small" data-testid="last-restore">Last restore: backup <span class="mono">${restore.backupId}</span>,${" "}${when(restore.time)}${restore.by ? html` by <strong>${restore.by}</strong>` : null}${restore.raftIndex
      ? html` <span class="muted">(raft entry ${restore.raftIndex})</span>` : null}.</p>`;
}

function Schedule({ can, noTarget }) {
  const [data, error, reload] = useLoad("/api/v1/admin/backup/cron");
  const [value, setValue] = useState(null);
  const [saveError, setSaveError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState(null);
  const saveButton = useFocusBack(busy, saveError);
  const shown = value !== null ? value : (data && data.cron) || "";
  const put = async (cron) => {
    setBusy(true);
    setSaveError(null);
    setMessage(null);
    try {
      const answer = await request("PUT", "/api/v1/admin/backup/cron", { cron });
      setValue(null);
      setMessage(answer.cron ? `Scheduled: ${cronWords(answer.cron, "UTC")}.` : "Schedule cleared.");
      reload();
    } catch (err) {
      setSaveError(err);
    } finally {
      setBusy(false);
    }
  };
  if (error && !(error instanceof ApiError && error.status === 409)) return html`<${ErrorBox} error=${error} label=${refusedLabel(error)} />`;
  const writable = can("admin:Backup");
  return html`<section class="card backup-schedule" aria-labelledby="schedule-title" data-testid="backup-schedule">
    <h2 id="schedule-title">Schedule</h2>
    <p class="small" data-testid="schedule-now">${data ? (data.cron
      ? html`Backups are taken <strong>${cronWords(data.cron, data.timezone || "UTC")}</strong> (<code>${data.cron}</code>).`
      : "No scheduled backups.") : "…"}
      ${data && data.lastError ? html` <span class="err-text">Last scheduled backup failed: ${data.lastError}</span>` : null}</p>
    ${writable ? html`<form class="row" aria-label="Backup schedule" onSubmit=${(e) => { e.preventDefault(); put(shown.trim() || null); }}>
      <label class="grow-label">Cron (5 fields, UTC)
        <input name="cron" class="mono" autocomplete="off" placeholder="0 3 * * *" value=${shown}
          aria-invalid=${saveError ? "true" : undefined} aria-describedby="cron-error" onInput=${(e) => { setValue(e.currentTarget.value); setSaveError(null); }} /></label>
      <button type="submit" class="primary" ref=${saveButton} disabled=${busy || noTarget}
        aria-describedby=${noTarget ? "schedule-no-target" : undefined}>Save schedule</button>
      ${data && data.cron ? html`<button type="button" disabled=${busy} onClick=${() => put(null)}>Clear</button>` : null}
    </form>` : null}
    ${writable && noTarget ? html`<p class="muted small" id="schedule-no-target" data-testid="schedule-no-target">A schedule
      can be saved once a backup target is set (see below).</p>` : null}
    <div id="cron-error">${saveError ? html`<small class="field-error" role="alert" data-testid="cron-error">${saveError.message}</small>` : null}</div>
    <${Notice} message=${message} />
  </section>`;
}

function RestoreDialog({ backup, onClose }) {
  const dialog = useRef(null);
  const [typed, setTyped] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const restoreButton = useFocusBack(busy, error);
  useEffect(() => { dialog.current.showModal(); }, []);
  const restore = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await post(`/api/v1/admin/backups/${enc(backup.id)}/restore`, { confirm: typed });
      dialog.current.close();
      // The restored store has its own users and tokens: sign in again.
      session.logout();
      navigate(`/login?next=${encodeURIComponent("/settings/backups")}`, { replace: true });
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return html`<dialog ref=${dialog} class="card dialog" aria-labelledby="restore-title" onClose=${onClose} data-testid="restore-dialog">
    <form onSubmit=${restore}>
      <h2 id="restore-title">Restore backup <span class="mono">${backup.id}</span>?</h2>
      <p>This <strong>replaces every store</strong> — DAGs, run history, users, policies, connections, keys and
        job logs — with the backup's content from ${when(backup.time)}. What changed since is lost. You will have to
        sign in again.</p>
      <label>Type the backup id to confirm <input class="mono" autocomplete="off" value=${typed}
        onInput=${(e) => setTyped(e.currentTarget.value)} /></label>
      <${ErrorBox} error=${error} label=${refusedLabel(error)} />
      <div class="row end">
        <button type="button" onClick=${() => dialog.current.close()}>Cancel</button>
        <button type="submit" class="danger" ref=${restoreButton} disabled=${busy || typed !== backup.id}>${busy ? "Restoring…" : "Restore"}</button>
      </div>
    </form>
  </dialog>`;
}
