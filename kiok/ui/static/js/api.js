// The one door to /api/v1: the session (tokens), JSON requests, errors as ApiError.
//
// Tokens: the access token lives in memory only; the refresh token is kept in
// sessionStorage (this tab only, gone when the tab closes) so that a reload does not log you
// out. A 401 tries one refresh, then ends the session: the app shows the login and returns
// to the page you were on.

const REFRESH_KEY = "kiok.refreshToken";

export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body; // the whole error body (e.g. a refused DAG's `errors` with path and line)
  }
}

let access = null;
let mustChangePassword = false;
let refreshing = null;
const listeners = new Set();

function notify() {
  for (const fn of listeners) fn();
}

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

function keep(pair) {
  access = pair.accessToken;
  mustChangePassword = Boolean(pair.requirePasswordChange);
  sessionStorage.setItem(REFRESH_KEY, pair.refreshToken);
  notify();
}

/** What the master takes as a new password (`kiok.security.passwords.password_problem`). */
export const PASSWORD_RULES =
  "At least 8 characters, different from the current one and from your user name.";

export const session = {
  /** "out" | "change-password" | "in" */
  get status() {
    if (access === null) return "out";
    return mustChangePassword ? "change-password" : "in";
  },
  get user() {
    return access ? claims(access).sub || "" : "";
  },
  get canResume() {
    return access === null && sessionStorage.getItem(REFRESH_KEY) !== null;
  },
  subscribe(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
  async login(user, password) {
    keep(await send("POST", "/api/v1/auth/login", { user, password }, null));
  },
  async changePassword(oldPassword, newPassword) {
    // Not through request(): a wrong old password is a 401 that must not end the session.
    keep(await send("POST", "/api/v1/auth/change-password", { oldPassword, newPassword }, access));
  },
  /** Renew the access token from the stored refresh token; false when that is not possible. */
  async resume() {
    const token = sessionStorage.getItem(REFRESH_KEY);
    if (token === null) return false;
    if (refreshing === null) {
      refreshing = send("POST", "/api/v1/auth/refresh", { refreshToken: token }, null)
        .then((pair) => { keep(pair); return true; })
        .catch((err) => {
          if (err instanceof ApiError && err.status === 401) {
            sessionStorage.removeItem(REFRESH_KEY);
            return false;
          }
          throw err;
        })
        .finally(() => { refreshing = null; });
    }
    return refreshing;
  },
  logout() {
    access = null;
    mustChangePassword = false;
    sessionStorage.removeItem(REFRESH_KEY);
    notify();
  },
};

async function send(method, path, body, token, contentType, extraHeaders) {
  const headers = { Accept: "application/json", ...extraHeaders };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : contentType ? body : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, "network", `cannot reach the master: ${err.message}`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(
      response.status,
      error.code || "http_error",
      error.message || `${response.status} ${response.statusText}`,
      data,
    );
  }
  return data;
}

/** One authenticated request (a JSON body, or with `contentType` the body as given; `headers`
 * adds request headers, e.g. `If-None-Match`); a 401 renews the token once, then ends the
 * session. */
export async function request(method, path, body, contentType, headers) {
  try {
    return await send(method, path, body, access, contentType, headers);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) throw err;
    if (await session.resume().catch(() => false)) return send(method, path, body, access, contentType, headers);
    access = null;
    mustChangePassword = false;
    notify();
    throw err;
  }
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body ?? {});
export const enc = encodeURIComponent;
