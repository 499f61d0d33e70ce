// Settings → Connections: create or replace (id, type, description, properties), delete.
// Values are write-only: the API answers every value as `***`, and this page never shows one.
import { html, useState } from "../../html.js";
import { enc, get, post, request } from "../../api.js";
import { when } from "../../format.js";
import { ConfirmButton, ErrorBox } from "../common.js";
import { Form, Notice, refusedLabel, useLoad } from "./shared.js";

export function Connections({ can }) {
  const [data, error, reload] = useLoad("/api/v1/connections");
  const [rowError, setRowError] = useState(null);
  const [message, setMessage] = useState(null);
  const done = (m) => { setMessage(m); setRowError(null); reload(); };
  return html`
    <p class="muted small">Values are write-only: they are never shown again, here or in the API.</p>
    <${Notice} message=${message} />
    ${can("connections:Write") ? html`<${Form} label="Save connection" onStart=${() => setMessage(null)} testid="create-connection" onSubmit=${async (f) => {
      const properties = {};
      for (const line of String(f.get("properties")).split("\n")) {
        const at = line.indexOf("=");
        if (line.trim() && at < 1) throw new Error(`properties: "${line}" is not key=value`);
        if (line.trim()) properties[line.slice(0, at).trim()] = line.slice(at + 1);
      }
      const id = f.get("id");
      // Saving an id that exists replaces the whole connection: its type, and every value,
      // which cannot be read back to fill the form (found by the UI review: "editing" a
      // description wiped a connection's secrets). So it is asked for, not a side effect.
      // Read now, not the list this page loaded (a save may come before it, or after another
      // user made the id).
      if (!f.get("replace") && (await get("/api/v1/connections")).connections.some((c) => c.connectionId === id)) {
        throw new Error(`connection ${id} exists: saving replaces its type, description and every value `
          + "(none can be read back); tick \"Replace an existing connection\" to do so");
      }
      await post("/api/v1/connections", {
        connectionId: id, type: f.get("type") || "generic", description: f.get("description").trim(), properties,
      });
      done(`Connection ${id} saved.`);
    }}>
      <label>Id <input name="id" required autocomplete="off" /></label>
      <label>Type <input name="type" placeholder="generic" autocomplete="off" /></label>
      <label class="grow-label">Description <input name="description" maxlength="4096" autocomplete="off" /></label>
      <label class="wide">Properties (one key=value a line)
        <textarea name="properties" class="mono" rows="3" autocomplete="off"></textarea></label>
      <label class="inline-check"><input type="checkbox" name="replace" /> Replace an existing connection</label>
    <//>` : null}
    <${ErrorBox} error=${error || rowError} label=${refusedLabel(error || rowError)} />
    ${data ? (data.connections.length === 0 ? html`<p class="muted">No connections.</p>` : html`<div class="table-scroll"><table class="grid-table" data-testid="connections">
      <thead><tr><th scope="col">Connection</th><th scope="col">Type</th><th scope="col">Properties</th><th scope="col">Updated</th>
        <th scope="col" class="actions"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${data.connections.map((c) => html`<tr key=${c.connectionId} data-connection=${c.connectionId}>
        <td><span class="mono strong">${c.connectionId}</span>${c.description
          ? html`<div class="muted small" data-testid="connection-description">${c.description}</div>` : null}</td>
        <td>${c.type}</td>
        <td>${Object.keys(c.properties).map((k) => html`<span class="chip" key=${k}>${k} = ***</span>`)}</td>
        <td class="small when">${when(c.updatedAt)}</td>
        <td class="actions">${can("connections:Delete") ? html`<${ConfirmButton} label="Delete"
          name=${`Delete connection ${c.connectionId}`} yes="Yes, delete" question=${`Delete connection ${c.connectionId}?`}
          action=${async () => {
            setRowError(null);
            try {
              await request("DELETE", `/api/v1/connections/${enc(c.connectionId)}`);
              done(`Connection ${c.connectionId} deleted.`);
            } catch (e) {
              setRowError(e);
            }
          }} />` : null}</td>
      </tr>`)}</tbody></table></div>`) : null}`;
}
