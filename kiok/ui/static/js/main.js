// The app: session gate (login, forced password change), top navigation, and the routes.
import { html, render, useEffect, useState } from "./html.js";
import { session } from "./api.js";
import { installLinkHandler, match, navigate, useLocation } from "./router.js";
import { ChangePassword, Login } from "./views/login.js";
import { DagList } from "./views/dags.js";
import { DagPage } from "./views/dag.js";
import { RunView } from "./views/run.js";
import { LogView } from "./views/log.js";
import { GridView } from "./views/grid.js";
import { ClusterView } from "./views/cluster.js";
import { MaintenanceBanner } from "./maintenance.js";
import { Loading } from "./views/common.js";
import { Dashboard } from "./views/dashboard.js";
import { RegisterView } from "./views/register.js";
import { SettingsView } from "./views/settings.js";
import { useCan } from "./me.js";
import { onTimeZoneChange, setTimeZoneMode, timeZoneMode } from "./format.js";

const ROUTES = [
  ["/", () => html`<${Home} />`],
  ["/dags", () => html`<${DagList} />`],
  ["/dags/register", () => html`<${RegisterView} />`],
  ["/settings", () => html`<${SettingsView} tab="" />`],
  ["/settings/:tab", (p) => html`<${SettingsView} tab=${p.tab} />`],
  ["/dags/:dagId", (p) => html`<${DagPage} key=${p.dagId} dagId=${p.dagId} />`],
  ["/dags/:dagId/grid", (p) => html`<${GridView} key=${p.dagId} dagId=${p.dagId} />`],
  ["/cluster", () => html`<${ClusterView} />`],
  ["/runs/:runId", (p) => html`<${RunView} key=${p.runId} runId=${p.runId} />`],
  ["/runs/:runId/tasks/:taskId", (p) => html`<${LogView} key=${p.runId + "/" + p.taskId} ...${p} />`],
];

function useSession() {
  const [, setVersion] = useState(0);
  useEffect(() => session.subscribe(() => setVersion((v) => v + 1)), []);
  useEffect(() => onTimeZoneChange(() => setVersion((v) => v + 1)), []);
  return session;
}

function Nav({ where }) {
  const dagsActive = where === "/dags" || where.startsWith("/dags/");
  const zone = timeZoneMode();
  // Only the pages the user's policies let it read (GET /api/v1/me; the API still decides).
  const can = useCan();
  return html`<header class="topbar">
    <a class="brand" href="/"><span class="logo" aria-hidden="true"></span>kiok</a>
    <nav aria-label="Main">
      ${can("runs:List") ? html`<a href="/" aria-current=${where === "/" ? "page" : undefined}>Dashboard</a>` : null}
      ${can("dags:List") ? html`<a href="/dags" aria-current=${dagsActive ? "page" : undefined}>DAGs</a>` : null}
      ${can("cluster:Read") ? html`<a href="/cluster" aria-current=${where === "/cluster" ? "page" : undefined}>Cluster</a>` : null}
      <a href="/settings" aria-current=${where.startsWith("/settings") ? "page" : undefined}>Settings</a>
    </nav>
    <div class="who">
      <div class="segmented zone-switch" role="group" aria-label="Times shown in">
        <button type="button" aria-pressed=${zone === "utc"} onClick=${() => setTimeZoneMode("utc")}>UTC</button>
        <button type="button" aria-pressed=${zone === "local"} onClick=${() => setTimeZoneMode("local")}>Local</button>
      </div>
      <span class="muted signed-in">Signed in as</span> <strong data-testid="user">${session.user}</strong>
      <button type="button" class="link logout" onClick=${() => { session.logout(); navigate("/login", { replace: true }); }}>Log out</button>
    </div>
  </header>`;
}

/** The dashboard, or for a user who may not list runs the first page it may read. */
function Home() {
  const can = useCan();
  if (!can.known) return html`<main class="page"><${Loading} /></main>`;
  if (can("runs:List")) return html`<${Dashboard} />`;
  return html`<${Redirect} to=${can("dags:List") ? "/dags" : can("cluster:Read") ? "/cluster" : "/settings"} />`;
}

function Redirect({ to }) {
  useEffect(() => navigate(to, { replace: true }), [to]);
  return null;
}

/** `next` as a path of this origin, or "/". A check on its text is not enough: the browser
 *  reads "/\\evil.example" or "/\t/evil.example" as another origin. */
function localPath(next) {
  if (!next || !next.startsWith("/")) return "/";
  try {
    const url = new URL(next, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
  } catch {
    return "/";
  }
}

function NotFound() {
  return html`<main class="page"><h1>No page here</h1><p><a href="/dags">Back to the DAGs</a></p></main>`;
}

function App() {
  const where = useLocation();
  useSession();
  const [resuming, setResuming] = useState(session.canResume);

  useEffect(() => {
    if (!resuming) return;
    session.resume().catch(() => false).finally(() => setResuming(false));
  }, []);

  const path = where.split("?")[0];
  const status = session.status;

  if (resuming) return html`<main class="auth"><${Loading} what="Resuming your session" /></main>`;
  if (status === "out") {
    // Remember where the user was going; come back there after logging in.
    if (path !== "/login") return html`<${Redirect} to=${`/login?next=${encodeURIComponent(where)}`} />`;
    return html`<${Login} />`;
  }
  if (status === "change-password") return html`<${ChangePassword} />`;
  if (path === "/login") {
    return html`<${Redirect} to=${localPath(new URLSearchParams(location.search).get("next"))} />`;
  }
  let view = html`<${NotFound} />`;
  for (const [pattern, make] of ROUTES) {
    const params = match(pattern, path);
    if (params) {
      view = make(params);
      break;
    }
  }
  return html`<${Nav} where=${path} /><${MaintenanceBanner} />${view}`;
}

installLinkHandler();
render(html`<${App} />`, document.getElementById("app"));
