// Log in, and the forced password change of a first login (or after an admin reset). Each
// puts the focus on its first field when shown (`autofocus` acts on a page load only, not when
// the app swaps the view in after the login).
import { html, useEffect, useRef, useState } from "../html.js";
import { PASSWORD_RULES, session } from "../api.js";
import { ErrorBox, useFocusBack } from "./common.js";

/** A ref whose element takes the focus once mounted. */
function useFocusFirst() {
  const field = useRef(null);
  useEffect(() => { if (field.current) field.current.focus(); }, []);
  return field;
}

export function Login() {
  const first = useFocusFirst();
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const button = useFocusBack(busy, error);

  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await session.login(user, password);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return html`<main class="auth">
    <form class="card auth-card" onSubmit=${submit} aria-labelledby="login-title">
      <div class="logo logo-big" aria-hidden="true"></div>
      <h1 id="login-title">Log in to kiok</h1>
      <label>User
        <input name="user" autocomplete="username" required autofocus ref=${first}
          value=${user} onInput=${(e) => setUser(e.currentTarget.value)} />
      </label>
      <label>Password
        <input name="password" type="password" autocomplete="current-password" required
          value=${password} onInput=${(e) => setPassword(e.currentTarget.value)} />
      </label>
      <${ErrorBox} error=${error} label="Login failed" />
      <button class="primary" type="submit" ref=${button} disabled=${busy}>${busy ? "Logging in…" : "Log in"}</button>
    </form>
  </main>`;
}

export function ChangePassword() {
  const first = useFocusFirst();
  const [old, setOld] = useState("");
  const [next, setNext] = useState("");
  const [again, setAgain] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const button = useFocusBack(busy, error);

  const submit = async (event) => {
    event.preventDefault();
    if (next !== again) {
      setError(new Error("the two new passwords differ"));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await session.changePassword(old, next);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return html`<main class="auth">
    <form class="card auth-card" onSubmit=${submit} aria-labelledby="pw-title">
      <h1 id="pw-title">Choose a new password</h1>
      <p class="muted">User <strong>${session.user}</strong> must set a new password before doing anything else.</p>
      <p class="muted small" id="pw-rules">${PASSWORD_RULES}</p>
      <label>Current password
        <input name="oldPassword" type="password" autocomplete="current-password" required autofocus ref=${first}
          value=${old} onInput=${(e) => setOld(e.currentTarget.value)} />
      </label>
      <label>New password
        <input name="newPassword" type="password" autocomplete="new-password" required aria-describedby="pw-rules"
          value=${next} onInput=${(e) => setNext(e.currentTarget.value)} />
      </label>
      <label>New password, again
        <input name="newPasswordAgain" type="password" autocomplete="new-password" required
          value=${again} onInput=${(e) => setAgain(e.currentTarget.value)} />
      </label>
      <${ErrorBox} error=${error} label="Not changed" />
      <div class="row">
        <button class="primary" type="submit" ref=${button} disabled=${busy}>${busy ? "Saving…" : "Set password"}</button>
        <button type="button" class="link" onClick=${() => session.logout()}>Log out</button>
      </div>
    </form>
  </main>`;
}
