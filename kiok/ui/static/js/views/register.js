// Register a DAG by pasting it or uploading a file: YAML, JSON, or the JSON array that
// `python -m kiok.compile my_dags.py` prints (each DAG in it is registered in turn). A refused
// DAG's problems (`errors: [{path, line, message}]` of the 400) are listed under the editor
// and marked at their line in its gutter; clicking one selects that line.
import { html, useEffect, useRef, useState } from "../html.js";
import { ApiError, request } from "../api.js";
import { Crumbs, ErrorBox, useFocusBack } from "./common.js";
import { useCan } from "../me.js";

const EXAMPLE = `dag:
  id: hello
  schedule: "0 2 * * *"
  timezone: Europe/Berlin
tasks:
  - id: say
    script: echo hello
`;

/** What to send: one document, or (a JSON array, as kiok.compile prints) each element. */
export function documentsOf(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith("[")) {
    try {
      const list = JSON.parse(trimmed);
      if (Array.isArray(list)) return list.map((d) => ({ body: JSON.stringify(d), type: "application/json", of: list.length }));
    } catch {
      // not JSON after all: let the server say where
    }
  }
  const json = trimmed.startsWith("{");
  return [{ body: text, type: json ? "application/json" : "application/yaml", of: 1 }];
}

export function Gutter({ lines, bad, scrollTop }) {
  const ref = useRef(null);
  useEffect(() => { if (ref.current) ref.current.scrollTop = scrollTop; }, [scrollTop]);
  return html`<pre class="gutter" ref=${ref} aria-hidden="true">${Array.from({ length: lines }, (_, i) =>
    html`<span class=${bad.has(i + 1) ? "bad" : undefined}>${i + 1}\n</span>`)}</pre>`;
}

export function RegisterView() {
  const [text, setText] = useState("");
  const [problems, setProblems] = useState([]);
  const [error, setError] = useState(null);
  const [done, setDone] = useState([]);
  const [busy, setBusy] = useState(false);
  const submitButton = useFocusBack(busy);
  const [scrollTop, setScrollTop] = useState(0);
  const editor = useRef(null);
  const can = useCan();
  useEffect(() => { document.title = "Register a DAG · kiok"; }, []);

  const upload = async (event) => {
    const file = event.currentTarget.files[0];
    if (!file) return;
    if (file.name.endsWith(".py")) {
      setError(new Error(`${file.name} is Python: compile it first with "python -m kiok.compile ${file.name}" ` +
        `and upload or paste its output (or use "kiok dags register ${file.name}")`));
      return;
    }
    setText(await file.text());
    setProblems([]);
    setError(null);
  };

  const goTo = (line) => {
    const el = editor.current;
    if (!el || !line) return;
    const lines = el.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    el.focus();
    el.setSelectionRange(start, start + (lines[line - 1] || "").length);
  };

  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setProblems([]);
    setError(null);
    setDone([]);
    const registered = [];
    const found = [];
    for (const [i, doc] of documentsOf(text).entries()) {
      try {
        const answer = await request("POST", "/api/v1/dags", doc.body, doc.type);
        registered.push(answer);
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 400) {
          setError(err);
          break;
        }
        const errors = (err.body && err.body.errors) || [{ path: null, line: null, message: err.message }];
        // Lines point into what was sent: only a single document is what the editor shows.
        for (const e of errors) found.push({ ...e, line: doc.of === 1 ? e.line : null, dag: doc.of > 1 ? i + 1 : null });
      }
    }
    setDone(registered);
    setProblems(found);
    setBusy(false);
  };

  const bad = new Set(problems.map((p) => p.line).filter(Boolean));
  const lineCount = Math.max(1, text.split("\n").length);
  return html`<main class="page">
    <${Crumbs} items=${[["DAGs", "/dags"], ["Register"]]} />
    <div class="page-head"><h1>Register a DAG</h1></div>
    ${!can("dags:Register") && can.known ? html`<p class="error" role="alert"><strong>Not allowed:</strong> your policies do not allow registering DAGs.</p>` : null}
    <form class="register" onSubmit=${submit}>
      <div class="row">
        <label class="inline file-pick">Upload a file
          <input type="file" accept=".yaml,.yml,.json,.py" onChange=${upload} />
        </label>
        <button type="button" class="link" onClick=${() => { setText(EXAMPLE); setProblems([]); }}>Insert an example</button>
        <span class="spacer"></span>
        <span class="muted small">YAML, JSON, or the output of <code>python -m kiok.compile</code></span>
      </div>
      <div class=${`editor ${bad.size ? "has-errors" : ""}`}>
        <${Gutter} lines=${lineCount} bad=${bad} scrollTop=${scrollTop} />
        <textarea ref=${editor} class="mono" spellcheck="false" rows="22" aria-label="DAG document"
          aria-invalid=${problems.length ? "true" : undefined} aria-describedby="register-problems"
          placeholder="Paste a DAG here (YAML or JSON)" value=${text}
          onInput=${(e) => setText(e.currentTarget.value)} onScroll=${(e) => setScrollTop(e.currentTarget.scrollTop)}></textarea>
      </div>
      <div id="register-problems" aria-live="polite">
        ${problems.length ? html`<ul class="problems" data-testid="problems">
          ${problems.map((p, i) => html`<li key=${i} data-line=${p.line || ""} data-path=${p.path || ""}>
            <button type="button" class="link problem" onClick=${() => goTo(p.line)} disabled=${!p.line}>
              ${p.dag ? html`<span class="muted">DAG ${p.dag}</span> ` : null}
              ${p.line ? html`<span class="where">line ${p.line}</span> ` : null}
              ${p.path ? html`<code>${p.path}</code>: ` : null}<span class="err-text">${p.message}</span>
            </button></li>`)}
        </ul>` : null}
      </div>
      <${ErrorBox} error=${error} label="Not registered" />
      ${done.length ? html`<div class="ok-box" role="status" data-testid="registered">
        Registered ${done.map((d, i) => html`${i ? ", " : ""}<a class="mono" href=${`/dags/${encodeURIComponent(d.registered)}`}>${d.registered}</a> (v${d.version})`)}.
      </div>` : null}
      <div class="row end">
        <button type="submit" class="primary" ref=${submitButton} disabled=${busy || !text.trim() || !can("dags:Register")}>${busy ? "Registering…" : "Register"}</button>
      </div>
    </form>
  </main>`;
}
