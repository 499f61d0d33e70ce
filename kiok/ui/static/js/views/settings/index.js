// Settings: one tab per area, each shown only if the user's policies allow reading it (from
// `GET /api/v1/me`; the API still decides). URL: /settings/<tab> (the audit log keeps its
// filters in the query). One module per tab in this folder.
import { html, useEffect } from "../../html.js";
import { navigate } from "../../router.js";
import { useCan } from "../../me.js";
import { Loading } from "../common.js";
import { Users } from "./users.js";
import { Groups } from "./groups.js";
import { Policies } from "./policies.js";
import { AccessKeys } from "./accesskeys.js";
import { Password } from "./account.js";
import { Connections } from "./connections.js";
import { JoinTokens, Kms } from "./keys.js";
import { Audit } from "./audit.js";
import { Backups } from "./backups.js";

// [id, label, the action that shows the tab (null: every signed-in user), view]
const TABS = [
  ["users", "Users", "iam:Read", Users],
  ["groups", "Groups", "iam:Read", Groups],
  ["policies", "Policies", "iam:Read", Policies],
  ["access-keys", "Access keys", "iam:ListAccessKeys", AccessKeys],
  ["connections", "Connections", "connections:Read", Connections],
  ["kms", "KMS keys", "kms:List", Kms],
  ["join-tokens", "Join tokens", "cluster:IssueJoinToken", JoinTokens],
  ["audit", "Audit log", "audit:Read", Audit],
  ["backups", "Backup & Restore", "admin:ListBackups", Backups],
  ["password", "Password", null, Password],
];

export function SettingsView({ tab }) {
  const can = useCan();
  useEffect(() => { document.title = "Settings · kiok"; }, []);
  const tabs = TABS.filter(([, , action]) => action === null || can(action));
  const current = tabs.find(([id]) => id === tab) || tabs[0];
  const currentId = can.known && current ? current[0] : null;
  useEffect(() => {
    if (currentId && currentId !== tab) navigate(`/settings/${currentId}`, { replace: true });
  }, [tab, currentId]);
  if (!can.known) return html`<main class="page"><${Loading} /></main>`;
  const [id, label, , View] = current;
  return html`<main class="page">
    <div class="page-head"><h1>Settings</h1></div>
    <nav class="tabs" aria-label="Settings">
      ${tabs.map(([t, l]) => html`<a key=${t} href=${`/settings/${t}`} aria-current=${t === id ? "page" : undefined}>${l}</a>`)}
    </nav>
    <section class="tab-body" aria-label=${label}><${View} key=${id} can=${can} /></section>
  </main>`;
}
