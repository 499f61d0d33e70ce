// The Source tab: the DAG file as it was registered (the text the master received), then the
// compiled spec the master runs. Both are text, never markup. The version is shown with when
// that version was registered (as on the DAG's page: from its versions, since updatedAt moves
// with a pause too), in UTC or local time as the header's switch says.
import { html, useEffect, useState } from "../html.js";
import { enc, get } from "../api.js";
import { when } from "../format.js";

/** When version `version` of DAG `dag` was registered: its first version's time is the DAG's
 * registeredAt; a later one's comes from `GET /dags/{id}/versions`. null while unknown (or
 * that version is not kept). */
function useVersionTime(dag) {
  const dagId = dag ? dag.dagId : null;
  const version = dag ? dag.version : null;
  const [found, setFound] = useState(null); // {dagId, version, at}
  useEffect(() => {
    if (dagId === null || version === null || version === 1) return undefined;
    let gone = false;
    get(`/api/v1/dags/${enc(dagId)}/versions`).then((body) => {
      const v = body.versions.find((x) => x.version === version);
      if (!gone) setFound(v ? { dagId, version, at: v.registeredAt } : null);
    }).catch(() => { if (!gone) setFound(null); });
    return () => { gone = true; };
  }, [dagId, version]);
  if (!dag) return null;
  if (version === 1) return dag.registeredAt;
  return found && found.dagId === dagId && found.version === version ? found.at : null;
}

export function Source({ dag }) {
  const at = useVersionTime(dag);
  if (!dag) return null;
  return html`<div data-testid="source">
    <p class="muted small" data-testid="source-version">DAG <span class="mono">${dag.dagId}</span> version ${dag.version}${
      at ? html`, registered <span class="nowrap">${when(at)}</span>` : null}: the DAG as registered now, which may be newer than this run.</p>
    <h3>Original source</h3>
    ${dag.source
      ? html`<pre class="code" data-testid="source-original" tabindex="0">${dag.source}</pre>`
      : html`<p class="muted">Not stored (the DAG was registered without its source).</p>`}
    <h3>Compiled spec</h3>
    <pre class="code" data-testid="source-spec" tabindex="0">${JSON.stringify(dag.spec, null, 2)}</pre>
  </div>`;
}
