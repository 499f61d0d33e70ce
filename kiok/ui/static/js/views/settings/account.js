// Settings → Password: change one's own password (any signed-in user). The old password is
// checked by the master; a wrong one is shown here and does not end the session. The answer
// is a new token pair (every token issued before the change, on any device, stops working).
import { html, useState } from "../../html.js";
import { ApiError, PASSWORD_RULES, session } from "../../api.js";
import { ErrorBox, useFocusBack } from "../common.js";
import { Notice } from "./shared.js";

export function Password() {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState(null);
  const button = useFocusBack(busy, error);
  const submit = async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const f = new FormData(form);
    setError(null);
    setMessage(null);
    if (f.get("next") !== f.get("repeat")) {
      setError(new Error("the new password and its repetition differ"));
      return;
    }
    setBusy(true);
    try {
      await session.changePassword(String(f.get("current")), String(f.get("next")));
      form.reset();
      setMessage("Password changed. Sessions and refresh tokens from before the change have ended.");
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? new Error("the current password is wrong") : err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="card inline-form narrow-form" onSubmit=${submit} aria-label="Change your password" data-testid="change-password">
    <p class="muted small wide">Signed in as <strong class="mono">${session.user}</strong>. ${PASSWORD_RULES}</p>
    <label>Current password <input name="current" type="password" required autocomplete="current-password" /></label>
    <label>New password <input name="next" type="password" required minlength="8" autocomplete="new-password" /></label>
    <label>New password again <input name="repeat" type="password" required minlength="8" autocomplete="new-password" /></label>
    <button type="submit" class="primary" ref=${button} disabled=${busy}>${busy ? "…" : "Change password"}</button>
    <${ErrorBox} error=${error} label="Not changed" />
    <${Notice} message=${message} />
  </form>`;
}
