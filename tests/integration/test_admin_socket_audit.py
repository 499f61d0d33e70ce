"""Locked out: reset a password over the master's local socket; and the audit log records
logins, resets, connection changes and key rotations without any secret."""

from __future__ import annotations

import os
import stat
import subprocess
from typing import Any

import httpx

from kiok.testing.process import ADMIN_PASSWORD, Standalone, kiok_executable


def login(k: Standalone, password: str) -> httpx.Response:
    return httpx.post(k.url + "/api/v1/auth/login", json={"user": "admin", "password": password})


def test_reset_password_over_the_socket_is_forced_to_change_and_audited(standalone_factory: Any) -> None:
    k: Standalone = standalone_factory()
    sock = k.data_dir / "admin.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert login(k, "wrong-password-1").status_code == 401
    env = {key: v for key, v in os.environ.items() if not key.startswith("KIOK_")}
    env["KIOK_BASE_DATA_DIR"] = str(k.data_dir)
    out = subprocess.run(
        [kiok_executable(), "admin", "reset-password", "--user", "admin"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    generated = out.stdout.strip()
    assert len(generated) >= 16 and "must be changed" in out.stderr
    assert login(k, ADMIN_PASSWORD).status_code == 401
    fresh = login(k, generated)
    assert fresh.status_code == 200 and fresh.json()["requirePasswordChange"] is True
    bad = subprocess.run(
        [kiok_executable(), "admin", "reset-password", "--user", "nobody", "--socket", str(sock)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "not found" in bad.stderr

    token = httpx.post(
        k.url + "/api/v1/auth/change-password",
        headers={"Authorization": f"Bearer {fresh.json()['accessToken']}"},
        json={"oldPassword": generated, "newPassword": "Brand-New-Pw-2026"},
    ).json()["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    httpx.post(
        k.url + "/api/v1/connections",
        headers=headers,
        json={"connectionId": "c", "properties": {"v": "zz-secret-zz"}},
    )
    httpx.post(k.url + "/api/v1/admin/kms/rotate", headers=headers, json={"key": "metadata-encryption"})
    audit = httpx.get(k.url + "/api/v1/admin/audit", headers=headers)
    assert audit.status_code == 200
    actions = [(e["action"], e["target"], e["success"]) for e in reversed(audit.json()["entries"])]
    assert ("auth:Login", "admin", False) in actions
    assert ("auth:ResetPassword", "admin", True) in actions
    assert ("auth:ChangePassword", "admin", True) in actions
    assert ("connections:Write", "c", True) in actions
    assert ("kms:Rotate", "metadata-encryption v2", True) in actions
    assert all(e["at"] and e["actor"] for e in audit.json()["entries"])
    for secret in (generated, "Brand-New-Pw-2026", "zz-secret-zz", ADMIN_PASSWORD):
        assert secret not in audit.text
    page = httpx.get(k.url + "/api/v1/admin/audit", headers=headers, params={"limit": 2}).json()
    assert len(page["entries"]) == 2 and page["nextCursor"]


def test_restore_admin_over_the_socket_when_no_administrator_is_left(standalone_factory: Any) -> None:
    """An administrator takes the admin out of ``admins`` and deletes ``full-access``,
    locking every administrator out (themselves too); ``reset-password --restore-admin``
    on the master's machine gives the admin full access again, and no one else. A reset the
    password rules refuse restores nothing either."""
    k: Standalone = standalone_factory()
    ops_password = "Ops-Password-2026-xyz"
    made = k.api(
        "POST", "/api/v1/iam/users", json={"user": "ops", "password": ops_password, "groups": ["admins"]}
    )
    assert made.status_code == 201, made.text
    token = httpx.post(k.url + "/api/v1/auth/login", json={"user": "ops", "password": ops_password}).json()
    ops = {"Authorization": f"Bearer {token['accessToken']}"}
    deny = {"Statement": [{"Effect": "Deny", "Action": ["kms:Rotate"], "Resource": ["*"]}]}
    made = httpx.post(
        k.url + "/api/v1/iam/policies", headers=ops, json={"policy": "no-rotate", "document": deny}
    )
    assert made.status_code in (200, 201), made.text
    taken = httpx.post(
        k.url + "/api/v1/iam/users",
        headers=ops,
        json={"user": "admin", "groups": [], "policies": ["no-rotate"]},
    )
    assert taken.status_code == 201, taken.text
    assert httpx.delete(k.url + "/api/v1/iam/policies/full-access", headers=ops).status_code in (200, 204)
    assert httpx.get(k.url + "/api/v1/iam/users", headers=ops).status_code == 403  # nobody may now

    env = {key: v for key, v in os.environ.items() if not key.startswith("KIOK_")}
    env["KIOK_BASE_DATA_DIR"] = str(k.data_dir)
    command = [kiok_executable(), "admin", "reset-password", "--user", "admin", "--restore-admin"]
    refused = subprocess.run([*command, "--new-password", "admin"], env=env, capture_output=True, text=True)
    assert refused.returncode == 1, refused.stdout
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "a Deny wins over full access: no-rotate" in out.stderr  # what still limits them
    fresh = login(k, out.stdout.strip()).json()
    token = httpx.post(
        k.url + "/api/v1/auth/change-password",
        headers={"Authorization": f"Bearer {fresh['accessToken']}"},
        json={"oldPassword": out.stdout.strip(), "newPassword": "Brand-New-Pw-2026"},
    ).json()["accessToken"]
    admin = {"Authorization": f"Bearer {token}"}
    users = httpx.get(k.url + "/api/v1/iam/users", headers=admin)
    assert users.status_code == 200, users.text
    record = {u["user"]: u for u in users.json()["users"]}["admin"]
    assert record["groups"] == [] and record["policies"] == ["no-rotate", "full-access"], record
    policies = httpx.get(k.url + "/api/v1/iam/policies", headers=admin).json()["policies"]
    assert [p["document"] for p in policies if p["policy"] == "full-access"] == [
        {"Statement": [{"Effect": "Allow", "Action": ["*"], "Resource": ["*"]}]}
    ]
    assert httpx.get(k.url + "/api/v1/iam/users", headers=ops).status_code == 403  # still: not theirs
    entries = httpx.get(k.url + "/api/v1/admin/audit", headers=admin).json()["entries"]
    restored = [(e["target"], e["detail"]) for e in entries if e["action"] == "auth:RestoreAdmin"]
    assert restored == [("admin", "policy full-access")]
