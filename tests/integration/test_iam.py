"""IAM: users, groups and policies decide every /api/v1 action (default deny, Deny wins)."""

from __future__ import annotations

import httpx
import pytest

from kiok.master.api.app import create_app
from kiok.testing.process import Standalone

OPEN_TO_ANY_USER = {
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/change-password",
    "/api/v1/openapi.json",
    # Who am I and what may I do: the UI asks it to hide what a user may not do. It answers
    # about the caller only (tests/integration/test_ui_support_api.py).
    "/api/v1/me",
}
#: Users manage their own access keys without a policy (tests/integration/test_iam_scoping.py).
SELF_SERVICE = {
    ("POST", "/api/v1/iam/access-keys"),
    ("GET", "/api/v1/iam/access-keys"),
    ("DELETE", "/api/v1/iam/access-keys/key_id"),
}


def as_user(k: Standalone, user: str, password: str) -> dict[str, str]:
    r = httpx.post(k.url + "/api/v1/auth/login", json={"user": user, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['accessToken']}"}


@pytest.fixture(scope="module")
def iam(shared_kiok: Standalone) -> Standalone:
    k = shared_kiok
    readers = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["dags:List", "dags:Read", "runs:*", "logs:Read"],
                "Resource": ["dag/*"],
            },
            {"Effect": "Deny", "Action": "*", "Resource": "dag/secret-*"},
        ]
    }
    assert (
        k.api("POST", "/api/v1/iam/policies", json={"policy": "readers", "document": readers}).status_code
        == 201
    )
    assert (
        k.api("POST", "/api/v1/iam/groups", json={"group": "viewers", "policies": ["readers"]}).status_code
        == 201
    )
    r = k.api(
        "POST", "/api/v1/iam/users", json={"user": "bob", "password": "Bob-Password-1", "groups": ["viewers"]}
    )
    assert r.status_code == 201 and "Bob-Password-1" not in r.text
    r = k.api("POST", "/api/v1/iam/users", json={"user": "nobody", "password": "Nobody-Password-1"})
    assert r.status_code == 201
    k.register("dag: {id: public}\ntasks: [{id: t, script: 'true'}]\n")
    k.register("dag: {id: secret-one}\ntasks: [{id: t, script: 'true'}]\n")
    return k


def test_policies_allow_and_deny(iam: Standalone) -> None:
    bob = as_user(iam, "bob", "Bob-Password-1")
    listed = httpx.get(iam.url + "/api/v1/dags", headers=bob)
    assert listed.status_code == 200
    assert {d["dagId"] for d in listed.json()["dags"]} == {"public"}  # denied DAGs are not listed
    assert httpx.get(iam.url + "/api/v1/dags/public", headers=bob).status_code == 200
    denied = httpx.get(iam.url + "/api/v1/dags/secret-one", headers=bob)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert "dags:Read on dag/secret-one" in denied.json()["error"]["message"]
    trigger = httpx.post(iam.url + "/api/v1/dags/public/runs", headers=bob, json={})
    assert trigger.status_code == 403 and "dags:Trigger" in trigger.json()["error"]["message"]
    reg = httpx.post(
        iam.url + "/api/v1/dags", headers=bob, content="dag: {id: x}\ntasks: [{id: t, script: 'true'}]\n"
    )
    assert reg.status_code == 403
    assert httpx.get(iam.url + "/api/v1/iam/users", headers=bob).status_code == 403


def test_bad_iam_input_is_refused(iam: Standalone) -> None:
    bad = iam.api(
        "POST",
        "/api/v1/iam/policies",
        json={"policy": "p", "document": {"Statement": [{"Effect": "Perhaps"}]}},
    )
    assert bad.status_code == 400 and "Effect" in bad.json()["error"]["message"]
    unknown = iam.api(
        "POST", "/api/v1/iam/users", json={"user": "carol", "password": "Carol-Pass-1", "groups": ["nope"]}
    )
    assert unknown.status_code == 400 and "nope" in unknown.json()["error"]["message"]
    # Service tokens act as "service": a user of that name would be logged as them.
    reserved = iam.api("POST", "/api/v1/iam/users", json={"user": "service", "password": "Service-Pass-1"})
    assert reserved.status_code == 400 and "reserved" in reserved.json()["error"]["message"]
    listed = iam.api("GET", "/api/v1/iam/users").json()["users"]
    assert {"admin", "bob"} <= {u["user"] for u in listed}
    assert "passwordHash" not in str(listed)


def test_if_none_match_creates_a_policy_only_once(iam: Standalone) -> None:
    """``If-None-Match: *`` (the UI's "New policy") refuses a name already taken with 409 and
    leaves that policy as it was; without it a POST still replaces the document."""
    doc = {"Statement": [{"Effect": "Allow", "Action": "dags:List", "Resource": "*"}]}
    other = {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    create_only = {"If-None-Match": "*"}
    r = iam.api("POST", "/api/v1/iam/policies", json={"policy": "once", "document": doc}, headers=create_only)
    assert r.status_code == 201, r.text
    again = iam.api(
        "POST", "/api/v1/iam/policies", json={"policy": "once", "document": other}, headers=create_only
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert "'once' already exists" in again.json()["error"]["message"]
    full = iam.api(
        "POST", "/api/v1/iam/policies", json={"policy": "full-access", "document": other}, headers=create_only
    )
    assert full.status_code == 409
    stored = {p["policy"]: p["document"] for p in iam.api("GET", "/api/v1/iam/policies").json()["policies"]}
    effects = {name: [s["Effect"] for s in d["Statement"]] for name, d in stored.items()}
    assert effects["once"] == ["Allow"] and effects["full-access"] == ["Allow"]
    replaced = iam.api("POST", "/api/v1/iam/policies", json={"policy": "once", "document": other})
    assert replaced.status_code == 201
    stored = {p["policy"]: p["document"] for p in iam.api("GET", "/api/v1/iam/policies").json()["policies"]}
    assert [s["Effect"] for s in stored["once"]["Statement"]] == ["Deny"]
    # The audit log tells a policy made from one whose document was replaced.
    entries = iam.api("GET", "/api/v1/admin/audit").json()["entries"]
    once = [e["detail"] for e in entries if e["target"] == "iam/policy/once" and e["success"]]
    assert sorted(once) == ["created", "document replaced"], once


def _routes() -> list[tuple[str, str]]:
    app = create_app(None, max_body_bytes=1024)  # type: ignore[arg-type]  # routes only
    return [
        (m.upper(), p.replace("{", "").replace("}", ""))
        for p, item in app.openapi()["paths"].items()
        for m in item
    ]


@pytest.mark.parametrize(
    ("method", "path"), [r for r in _routes() if r[1].startswith("/api/v1") or r[1] == "/metrics"]
)
def test_a_user_without_policies_gets_403_everywhere(iam: Standalone, method: str, path: str) -> None:
    """Generated from the route table: a new route without an action check fails here."""
    if path in OPEN_TO_ANY_USER or (method, path) in SELF_SERVICE:
        return
    nobody = as_user(iam, "nobody", "Nobody-Password-1")
    r = httpx.request(method, iam.url + path, headers=nobody, json={})
    assert r.status_code == 403, (method, path, r.status_code, r.text)


def test_access_keys_authenticate_scripts_with_the_users_policies(iam: Standalone) -> None:
    made = iam.api("POST", "/api/v1/iam/access-keys", json={"user": "bob"})
    assert made.status_code == 201
    key_id, secret = made.json()["accessKeyId"], made.json()["secretAccessKey"]
    ak = {"Authorization": f"AccessKey {key_id}:{secret}"}
    assert httpx.get(iam.url + "/api/v1/dags", headers=ak).status_code == 200  # bob may list
    assert (
        httpx.post(iam.url + "/api/v1/dags/public/runs", headers=ak, json={}).status_code == 403
    )  # not trigger
    wrong = httpx.get(iam.url + "/api/v1/dags", headers={"Authorization": f"AccessKey {key_id}:nope"})
    assert wrong.status_code == 401 and "invalid access key" in wrong.json()["error"]["message"]
    listed = iam.api("GET", "/api/v1/iam/access-keys")
    assert key_id in listed.text and secret not in listed.text
    assert iam.api("DELETE", f"/api/v1/iam/access-keys/{key_id}").status_code == 200
    assert httpx.get(iam.url + "/api/v1/dags", headers=ak).status_code == 401
