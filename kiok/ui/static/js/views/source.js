// The Source tab: the DAG file as it was registered (the text the master received), then the
// compiled spec the master runs. Both are text, never markup.
import { html } from "../html.js";

export function Source({ dag }) {
  if (!dag) return null;
  return html`<div data-testid="source">
    <p class="muted small">DAG <span class="mono">${dag.dagId}</span> version ${dag.version}, registered
      ${dag.updatedAt || dag.registeredAt}: the DAG as registered now, which may be newer than this run.</p>
    <h3>Original source</h3>
    ${dag.source
      ? html`<pre class="code" data-testid="source-original" tabindex="0">${dag.source}</pre>`
      : html`<p class="muted">Not stored (the DAG was registered without its source).</p>`}
    <h3>Compiled spec</h3>
    <pre class="code" data-testid="source-spec" tabindex="0">${JSON.stringify(dag.spec, null, 2)}</pre>
  </div>`;
}
