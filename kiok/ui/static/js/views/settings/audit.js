// Settings → Audit log: 50 records a page (Older / Newer), filtered by actor, action (an
// exact action or a prefix such as `iam:*`), outcome and time range. The filters live in
// the URL (/settings/audit?actor=bob&outcome=refused&since=…), so a filtered view can be
// shared, and so is the page; they are passed to `GET /api/v1/admin/audit` as they are. Every record shows its
// detail (what changed: "paused", "policies: +x"; a refusal's reason) under its outcome.
import { html, useEffect, useState } from "../../html.js";
import { get } from "../../api.js";
import { timeZoneMode, when } from "../../format.js";
import { navigate, useLocation } from "../../router.js";
import { ErrorBox, Loading } from "../common.js";
import { notThePage, pagedUrl, paging, remember, unchecked } from "../../paging.js";

const PAGE = 50;
const FILTERS = ["actor", "action", "outcome", "since", "until"];
const ACTIONS = [
  "auth:Login", "auth:ChangePassword", "auth:ResetPassword", "iam:*", "iam:Write", "iam:CreateAccessKey",
  "iam:DeleteAccessKey", "connections:*", "kms:Rotate", "cluster:IssueJoinToken", "cluster:RevokeWorker",
  "admin:Maintenance", "admin:Backup", "admin:Restore",
];

const pad = (n) => String(n).padStart(2, "0");

/** An ISO instant as a datetime-local value, in the zone the header's switch shows. */
function toInput(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return "";
  if (timeZoneMode() === "local") {
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }
  return d.toISOString().slice(0, 16);
}

/** A datetime-local value (in the shown zone) as an ISO instant. */
function fromInput(value) {
  if (!value) return "";
  const d = timeZoneMode() === "local" ? new Date(value) : new Date(`${value}:00Z`);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString().replace(".000Z", "Z");
}

export function Audit() {
  const where = useLocation();
  const params = new URLSearchParams(where.split("?")[1] || "");
  const filters = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || ""]));
  const search = filterQuery(filters);
  const apply = (next) => {
    const s = filterQuery(next);
    navigate(`/settings/audit${s ? `?${s}` : ""}`);
  };
  const active = FILTERS.some((k) => filters[k]);
  const zone = timeZoneMode() === "local" ? "local time" : "UTC";
  return html`
    <form key=${search} class="card inline-form audit-filters" aria-label="Filter the audit log" data-testid="audit-filters"
      onSubmit=${(e) => {
        e.preventDefault();
        const f = new FormData(e.currentTarget);
        apply({ actor: f.get("actor").trim(), action: f.get("action").trim(), outcome: f.get("outcome"),
          since: fromInput(f.get("since")), until: fromInput(f.get("until")) });
      }}>
      <label>Actor <input name="actor" autocomplete="off" placeholder="any" value=${filters.actor} /></label>
      <label>Action <input name="action" list="audit-actions" autocomplete="off" placeholder="any (iam:* for a prefix)" value=${filters.action} />
        <datalist id="audit-actions">${ACTIONS.map((a) => html`<option key=${a} value=${a} />`)}</datalist></label>
      <label>Outcome <select name="outcome" value=${filters.outcome}>
        <option value="">any</option><option value="ok">✓ ok</option><option value="refused">✕ refused</option></select></label>
      <label>From (${zone}) <input name="since" type="datetime-local" value=${toInput(filters.since)} /></label>
      <label>Until (${zone}) <input name="until" type="datetime-local" value=${toInput(filters.until)} /></label>
      <button type="submit" class="primary">Filter</button>
      ${active ? html`<button type="button" onClick=${() => apply({})}>Clear filters</button>` : null}
    </form>
    <${AuditPages} key=${search} search=${search} where=${where} />`;
}

/** The set filters as a query (no `?`). */
function filterQuery(filters) {
  const q = new URLSearchParams();
  for (const k of FILTERS) if (filters[k]) q.set(k, filters[k]);
  return q.toString();
}

/** The pages for one set of filters (a new set starts again at the newest); the page shown
 * is in the URL beside the filters (../../paging.js), so a reload or Back keeps it. */
function AuditPages({ search, where }) {
  const { trail, limit, bad } = paging(where, 1000);
  const cursor = trail.length ? trail[trail.length - 1] : null;
  const list = `audit:${search}`;
  const turn = (next, how) => navigate(pagedUrl("/settings/audit", search, limit, next), how);
  const url = `/api/v1/admin/audit?limit=${limit || PAGE}${search ? `&${search}` : ""}${cursor ? `&cursor=${cursor}` : ""}`;
  const [loaded, setLoaded] = useState({ url: null, data: null, error: null });
  useEffect(() => {
    if (bad) {
      turn([], { replace: true }); // a malformed `?page=` is the first page
      if (trail.length) return undefined;
    }
    let gone = false;
    const suspect = unchecked(list, trail);
    // The newest record the filters match: a filtered page is checked against its own list.
    const first = `/api/v1/admin/audit?limit=1${search ? `&${search}` : ""}`;
    Promise.all([get(url), suspect ? get(first) : null]).then(([page, newest]) => {
      if (gone) return;
      if (suspect) {
        const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
        if (notThePage(page.entries, page.nextCursor, newest.entries[0], same)) {
          turn([], { replace: true });
          return;
        }
        remember(list, trail, null);
      }
      remember(list, [], page.nextCursor);
      setLoaded({ url, data: page, error: null });
    }, (err) => { if (!gone) setLoaded({ url, data: null, error: err }); });
    return () => { gone = true; };
  }, [url, bad]);
  const { data, error } = loaded.url === url ? loaded : { data: null, error: null };
  return html`<${ErrorBox} error=${error} label=${error && error.status === 400 ? "Filter refused" : "Error"} />
    ${trail.length ? html`<p class="muted small" data-testid="audit-page">Page ${trail.length + 1}</p>` : null}
    ${data === null && !error ? html`<${Loading} />` : null}
    ${data ? html`${data.entries.length === 0 ? html`<p class="muted" data-testid="audit-empty">No records${data.nextCursor
      ? " on this page (the filter searched part of the log): try Older" : " match"}.</p>` : html`<div class="table-scroll"><table class="grid-table small" data-testid="audit">
      <thead><tr><th scope="col">When</th><th scope="col">Who</th>
      <th scope="col">Action</th><th scope="col">Target</th><th scope="col">From</th><th scope="col">Result</th></tr></thead>
      <tbody>${data.entries.map((e, i) => html`<tr key=${i}><td class="when">${when(e.at)}</td><td><span class="mono">${e.actor}</span></td>
        <td><span class="mono">${e.action}</span></td><td><span class="mono">${e.target}</span></td><td><span class="mono">${e.address}</span></td>
        <td class="audit-result">${e.success ? html`✓ ok${e.detail ? html`<div class="muted audit-detail" data-testid="audit-detail">${e.detail}</div>` : null}`
          : html`<span class="err-text">✕ ${e.detail || "refused"}</span>`}</td></tr>`)}</tbody></table></div>`}
      <div class="row pager">
        <button type="button" disabled=${!trail.length} onClick=${() => turn(trail.slice(0, -1))}>Newer</button>
        <button type="button" disabled=${!data.nextCursor} onClick=${() => turn([...trail, data.nextCursor])}>Older</button>
      </div>` : null}`;
}
