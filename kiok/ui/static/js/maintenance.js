// Maintenance mode for the banner every page shows while it is on: read from
// `/cluster/health` (no login needed, one small request every 15 s), refreshed at once after
// the Cluster page switches it.
import { html, useEffect, useState } from "./html.js";

const EVERY_MS = 15000;
let enabled = false;
const listeners = new Set();
let timer = null;

export async function refreshMaintenance() {
  try {
    const response = await fetch("/cluster/health", { headers: { Accept: "application/json" }, cache: "no-store" });
    const body = await response.json();
    const now = body.maintenanceMode === true;
    if (now !== enabled) {
      enabled = now;
      for (const fn of listeners) fn(enabled);
    }
  } catch {
    // Unreachable master: the pages say so themselves.
  }
}

function loop() {
  if (document.visibilityState !== "hidden") refreshMaintenance();
  timer = setTimeout(loop, EVERY_MS);
}

export function MaintenanceBanner() {
  const [on, setOn] = useState(enabled);
  useEffect(() => {
    listeners.add(setOn);
    if (timer === null) loop();
    return () => listeners.delete(setOn);
  }, []);
  if (!on) return null;
  return html`<div class="banner" role="status" data-testid="maintenance-banner">
    <strong>⚠ Maintenance mode is on.</strong> No run starts: triggers are refused, cron firings
    are skipped, pending runs wait; running runs go on. <a href="/cluster">Cluster</a>
  </div>`;
}
