"""Health probes, login, the forced first password change, tokens, and 401 everywhere else."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kiok.master.api.app import create_app
from kiok.testing.process import Standalone

PUBLIC = {"/healthz", "/readyz", "/cluster/health", "/api/v1/auth/login"}


def _routes() -> list[tuple[str, str]]:
    """Every route of the admin app (from its OpenAPI document, plus the document itself)."""
    app = create_app(None, max_body_bytes=1024)  # type: ignore[arg-type]  # routes only
    out = [("GET", "/api/v1/openapi.json")]
    for path, item in app.openapi()["paths"].items():
        for method in item:
            out.append((method.upper(), path.replace("{", "").replace("}", "")))
    return out


def test_probes_need_no_auth(shared_kiok: Standalone) -> None:
    assert httpx.get(shared_kiok.url + "/healthz").status_code == 200
    assert httpx.get(shared_kiok.url + "/readyz").json() == {"status": "healthy", "ready": True}


@pytest.mark.parametrize(("method", "path"), _routes())
def test_every_other_route_requires_a_token(shared_kiok: Standalone, method: str, path: str) -> None:
    """Generated from the app's route table: a new route without auth fails here."""
    r = httpx.request(method, shared_kiok.url + path, json={})
    if path in PUBLIC:
        assert r.status_code != 401
    elif path == "/api/v1/auth/refresh":
        assert r.status_code == 400  # it authenticates with the refresh token in its body
    else:
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["error"]["code"] == "unauthenticated"
        bad = httpx.request(
            method, shared_kiok.url + path, json={}, headers={"Authorization": "Bearer not-a-jwt"}
        )
        assert bad.status_code == 401 and "invalid token" in bad.json()["error"]["message"]


def test_default_admin_must_change_password_once_and_is_never_recreated(standalone_factory: Any) -> None:
    kiok: Standalone = standalone_factory(env={"KIOK_IAM_ADMIN_PASSWORD": ""})
    login = httpx.post(kiok.url + "/api/v1/auth/login", json={"user": "admin", "password": "admin"})
    assert login.status_code == 200 and login.json()["requirePasswordChange"] is True
    first = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    refused = httpx.get(kiok.url + "/api/v1/dags", headers=first)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "password_change_required"
    weak = httpx.post(
        kiok.url + "/api/v1/auth/change-password",
        headers=first,
        json={"oldPassword": "admin", "newPassword": "short"},
    )
    assert weak.status_code == 400 and "at least" in weak.json()["error"]["message"]
    changed = httpx.post(
        kiok.url + "/api/v1/auth/change-password",
        headers=first,
        json={"oldPassword": "admin", "newPassword": "A-much-better-pw-42"},
    )
    assert changed.status_code == 200 and changed.json()["requirePasswordChange"] is False
    fresh = {"Authorization": f"Token {changed.json()['accessToken']}"}  # the kiok-style scheme works too
    assert httpx.get(kiok.url + "/api/v1/dags", headers=fresh).status_code == 200
    assert httpx.get(kiok.url + "/api/v1/dags", headers=first).status_code == 401  # older tokens die
    kiok.stop()
    kiok.start()
    assert (
        httpx.post(kiok.url + "/api/v1/auth/login", json={"user": "admin", "password": "admin"}).status_code
        == 401
    )
    again = httpx.post(
        kiok.url + "/api/v1/auth/login", json={"user": "admin", "password": "A-much-better-pw-42"}
    )
    assert again.status_code == 200 and again.json()["requirePasswordChange"] is False


def test_an_admin_reset_can_require_a_new_password_at_the_next_login(shared_kiok: Standalone) -> None:
    """``requirePasswordChange`` on ``POST /api/v1/iam/users`` (the UI's "Reset password"):
    the user is asked for a new one before anything else; omitted, it is left as it was."""
    kiok = shared_kiok
    create = {"user": "reset-me", "password": "First-pass-4242"}
    assert kiok.api("POST", "/api/v1/iam/users", json=create).status_code == 201
    reset = {"user": "reset-me", "password": "Reset-pass-4242", "requirePasswordChange": True}
    r = kiok.api("POST", "/api/v1/iam/users", json=reset)
    assert r.status_code == 201 and r.json()["requirePasswordChange"] is True, r.text
    credentials = {"user": "reset-me", "password": "Reset-pass-4242"}
    login = httpx.post(kiok.url + "/api/v1/auth/login", json=credentials)
    assert login.status_code == 200 and login.json()["requirePasswordChange"] is True
    token = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    assert httpx.get(kiok.url + "/api/v1/dags", headers=token).status_code == 403
    # Another change to the user (its policies) keeps the requirement.
    assert kiok.api("POST", "/api/v1/iam/users", json={"user": "reset-me", "policies": []}).status_code == 201
    users = {u["user"]: u for u in kiok.api("GET", "/api/v1/iam/users").json()["users"]}
    assert users["reset-me"]["requirePasswordChange"] is True
    audit = kiok.api("GET", "/api/v1/admin/audit", params={"resource": "iam/user/reset-me"}).json()
    assert any("requirePasswordChange=true" in (e.get("detail") or "") for e in audit["entries"]), audit


def test_refresh_and_failed_login_rate_limit(shared_kiok: Standalone) -> None:
    ok = httpx.post(
        shared_kiok.url + "/api/v1/auth/login", json={"user": "admin", "password": "Test-Admin-Pw-0123456789"}
    )
    refreshed = httpx.post(
        shared_kiok.url + "/api/v1/auth/refresh", json={"refreshToken": ok.json()["refreshToken"]}
    )
    assert refreshed.status_code == 200
    headers = {"Authorization": f"Bearer {refreshed.json()['accessToken']}"}
    assert httpx.get(shared_kiok.url + "/api/v1/dags", headers=headers).status_code == 200
    wrong_kind = httpx.post(
        shared_kiok.url + "/api/v1/auth/refresh", json={"refreshToken": ok.json()["accessToken"]}
    )
    assert wrong_kind.status_code == 401

    codes = [
        httpx.post(
            shared_kiok.url + "/api/v1/auth/login", json={"user": "mallory", "password": "guess"}
        ).status_code
        for _ in range(6)
    ]
    assert codes == [401] * 5 + [429]
    last = httpx.post(shared_kiok.url + "/api/v1/auth/login", json={"user": "mallory", "password": "guess"})
    assert last.status_code == 429 and int(last.headers["Retry-After"]) >= 1


def test_wrong_old_passwords_are_limited_and_audited_like_wrong_logins(kiok: Standalone) -> None:
    """A stolen token is no password oracle: change-password's check of the old password
    counts against the same per-(user, address) limit as logins, and refusals are audited."""
    body = {"user": "carl", "password": "Carl-Password-1"}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    tokens = httpx.post(kiok.url + "/api/v1/auth/login", json=body).json()
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}

    def change(old: str) -> httpx.Response:
        new = {"oldPassword": old, "newPassword": "Carl-Password-2"}
        return httpx.post(kiok.url + "/api/v1/auth/change-password", headers=headers, json=new)

    assert [change(f"guess-{i}").status_code for i in range(6)] == [401] * 5 + [429]
    right = change("Carl-Password-1")
    assert right.status_code == 429 and right.json()["error"]["code"] == "rate_limited", right.text
    assert int(right.headers["Retry-After"]) >= 1
    assert httpx.post(kiok.url + "/api/v1/auth/login", json=body).status_code == 429  # one limit

    def refusals() -> list[dict[str, Any]] | None:
        query = {"actor": "carl", "action": "auth:ChangePassword", "outcome": "refused"}
        entries: list[dict[str, Any]] = kiok.api("GET", "/api/v1/admin/audit", params=query).json()["entries"]
        return entries if len(entries) == 5 else None

    assert all(e["address"] == "127.0.0.1" for e in kiok.wait_for(refusals, 10, "5 refusals audited"))
