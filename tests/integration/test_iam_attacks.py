"""Attacks on IAM (the security review of session 17), from a low-privilege account against a
real ``kiok standalone``:
"a user may only do what a policy grants". Each test is one attack."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from kiok.testing.process import Standalone
from tests.integration.test_iam_scoping import PW, allow, call, forbidden, login, put_policy, put_user


def document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Statement": list(statements)}


def deny(action: str | list[str], resource: str | list[str]) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


def policy_document(k: Standalone, name: str) -> dict[str, Any]:
    policies = k.api("GET", "/api/v1/iam/policies").json()["policies"]
    found: dict[str, Any] = next(p["document"] for p in policies if p["policy"] == name)
    return found


@pytest.fixture(scope="module")
def k(shared_kiok: Standalone) -> Standalone:
    return shared_kiok


# --- Policies: writing one's own policy is no way around attaching and detaching -------------


def test_iam_write_on_a_policy_one_holds_does_not_rewrite_it_into_full_access(k: Standalone) -> None:
    """A policy author (``iam:Write`` on ``iam/policy/*``) who holds one of those policies
    could replace its document with ``Allow * on *``: every attach/detach/group check then
    meant nothing. Changing the document of an attached policy changes what its holders may
    do, as attaching it does: it needs ``iam:AttachPolicy`` and ``iam:DetachPolicy`` too."""
    put_policy(k, "authors", allow("iam:Write", "iam/policy/*"))
    put_user(k, "pat", policies=("authors",))
    pat = login(k, "pat")
    assert forbidden(call(k, pat, "GET", "/api/v1/admin/audit"), "audit:Read", "cluster")
    everything = {"policy": "authors", "document": document(allow("*", "*"))}
    r = call(k, pat, "POST", "/api/v1/iam/policies", json=everything)
    assert forbidden(r, "iam:AttachPolicy", "iam/policy/authors"), r.text
    assert policy_document(k, "authors") == document(allow(["iam:Write"], ["iam/policy/*"]))
    assert forbidden(call(k, pat, "GET", "/api/v1/admin/audit"), "audit:Read", "cluster")
    # A policy attached to nobody is the author's to write and delete with iam:Write alone.
    draft = {"policy": "pat-draft", "document": document(allow("*", "*"))}
    assert call(k, pat, "POST", "/api/v1/iam/policies", json=draft).status_code == 201
    draft["document"] = document(allow("dags:List", "dag/*"))
    assert call(k, pat, "POST", "/api/v1/iam/policies", json=draft).status_code == 201
    assert call(k, pat, "DELETE", "/api/v1/iam/policies/pat-draft").status_code == 200


def test_iam_write_on_a_policy_that_denies_does_not_shed_the_deny(k: Standalone) -> None:
    """A Deny attached to a user (or a group of theirs) held against ``iam:Write`` on the
    policy: deleting it detached it from everyone, rewriting it emptied it. Both are detaching
    it (``iam:DetachPolicy``), as deleting a group that holds a Deny already is."""
    put_policy(k, "no-dags", deny("dags:*", "*"))
    put_policy(k, "policy-writer", allow("iam:Write", "iam/policy/*"), allow("dags:List", "dag/*"))
    assert k.api("POST", "/api/v1/iam/groups", json={"group": "dagless", "policies": ["no-dags"]}).is_success
    put_user(k, "quinn", policies=("policy-writer",), groups=("dagless",))
    quinn = login(k, "quinn")
    assert forbidden(call(k, quinn, "GET", "/api/v1/dags"), "dags:List", "any resource")
    r = call(k, quinn, "DELETE", "/api/v1/iam/policies/no-dags")
    assert forbidden(r, "iam:DetachPolicy", "iam/policy/no-dags"), r.text
    harmless = {"policy": "no-dags", "document": document(deny("kms:Rotate", "cluster"))}
    r = call(k, quinn, "POST", "/api/v1/iam/policies", json=harmless)
    assert r.status_code == 403 and "iam/policy/no-dags" in r.text, r.text
    assert policy_document(k, "no-dags") == document(deny(["dags:*"], ["*"]))
    assert forbidden(call(k, quinn, "GET", "/api/v1/dags"), "dags:List", "any resource")
    groups = k.api("GET", "/api/v1/iam/groups").json()["groups"]
    assert {"group": "dagless", "policies": ["no-dags"]} in groups


# --- The audit log tells a password reset from any other user update -------------------------


def test_setting_another_users_password_and_memberships_is_told_in_the_audit_log(k: Standalone) -> None:
    """An admin who set someone's password through ``POST /api/v1/iam/users`` left the same
    record as one who changed nothing (``iam:Write`` on the user, no detail): a password reset
    (then a login as that user) could not be told from a no-op in the audit log."""
    put_user(k, "rita")
    assert k.api("POST", "/api/v1/iam/groups", json={"group": "rita-team"}).status_code == 201
    update = {"user": "rita", "password": "Rita-Reset-Password-2", "groups": ["rita-team"]}
    assert k.api("POST", "/api/v1/iam/users", json=update).status_code == 201

    def records() -> list[dict[str, Any]] | None:
        query = {"action": "iam:Write", "actor": "admin"}
        entries = k.api("GET", "/api/v1/admin/audit", params=query).json()["entries"]
        found = [e for e in entries if e["target"] == "iam/user/rita"]
        return found if len(found) == 2 else None

    newest, created = k.wait_for(records, 10, "both updates of rita audited")
    assert "created" in created["detail"], created
    assert "password" in newest["detail"] and "+rita-team" in newest["detail"], newest
    assert "Rita-Reset-Password-2" not in str(newest)


# --- A Deny that can match nothing is refused, not stored to deny nothing --------------------


@pytest.mark.parametrize(
    "resource",
    [
        "connection/prod\u2010*",  # a Unicode hyphen, as word processors and chat clients write it
        "dag/pr\u043ed-*",  # a Cyrillic o
        "dag/\uff50rod",  # a fullwidth p
        "dag/prod-* ",  # a trailing space, pasted along
        "iam/user/\u00a0bob",  # a no-break space
    ],
)
def test_a_resource_pattern_with_a_character_no_name_has_is_refused(k: Standalone, resource: str) -> None:
    """Every kiok resource name is ASCII without spaces (DAG, connection and IAM names are
    checked on the way in), so a pattern holding anything else matches nothing: as a Deny it
    denied nothing, silently (``connection/prod‐*`` left ``prod-db`` readable)."""
    name = "homoglyph-" + resource.encode().hex()
    body = {"policy": name, "document": document(deny("connections:*", resource))}
    r = k.api("POST", "/api/v1/iam/policies", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input", r.text
    assert "Statement[0].Resource" in r.json()["error"]["message"], r.text
    names = {p["policy"] for p in k.api("GET", "/api/v1/iam/policies").json()["policies"]}
    assert name not in names


# --- What runs:Read shows of a task's output ------------------------------------------------

LEAKY = """\
dag: {id: leaky}
tasks:
  - id: t
    type: python
    script: |
      print("db password: hunter2-in-the-log")
      raise SystemExit(3)
"""

#: A python task that fails quoting its output while another task still runs (to cancel).
LEAKY_SLOW = """\
dag: {id: leaky-slow}
tasks:
  - id: t
    type: python
    script: |
      print("db password: hunter2-in-the-log")
      raise SystemExit(3)
  - id: slow
    type: shell
    script: sleep 60
"""


def states_only(k: Standalone, user: str, *extra: str) -> dict[str, str]:
    """A user who may follow the leaky DAGs' runs (and take ``extra`` actions on them) but
    not read their logs."""
    put_policy(k, f"{user}-states", allow(["runs:Read", *extra], "dag/leaky*"), deny("logs:Read", "*"))
    put_user(k, user, policies=(f"{user}-states",))
    return login(k, user)


def failed_leaky_run(k: Standalone) -> str:
    k.register(LEAKY)
    run_id = k.trigger("leaky")
    assert k.wait_run(run_id)["state"] == "FAILED"
    return run_id


def running_leaky_run(k: Standalone) -> str:
    """A run of ``leaky-slow`` whose python task has failed while ``slow`` still runs."""
    k.register(LEAKY_SLOW)
    run_id = k.trigger("leaky-slow")
    k.wait_for(lambda: k.run(run_id)["tasks"]["t"]["state"] == "FAILED", 30, "the leaky task failed")
    assert k.run(run_id)["state"] == "RUNNING"
    return run_id


def test_runs_read_without_logs_read_shows_nothing_of_the_task_output(k: Standalone) -> None:
    """``logs:Read`` is what reads a task's output; a caller denied it but allowed
    ``runs:Read`` (to follow run states) read the last line of a failed python task's
    output in the run view's ``error``. Now it reads kiok's own part (the exit code)."""
    run_id = failed_leaky_run(k)
    sam = states_only(k, "sam")
    assert forbidden(
        call(k, sam, "GET", f"/api/v1/runs/{run_id}/tasks/t/log"), "logs:Read", f"dag/leaky/run/{run_id}"
    )
    r = call(k, sam, "GET", f"/api/v1/runs/{run_id}")
    assert r.status_code == 200, r.text
    assert "hunter2" not in r.text, r.json()["tasks"]["t"]
    task = r.json()["tasks"]["t"]
    assert (task["state"], task["exitCode"], task["error"]) == ("FAILED", 3, "exit code 3"), task


def test_a_secret_spelling_kioks_words_does_not_uncut_the_output_line(k: Standalone) -> None:
    """A secret's value is masked in a task's error; masking kiok's own suffix too (a secret
    ``code``: ``(exit *** 3)``) left the error in a form the run view did not know, so it
    was shown whole, output line included, to a caller without ``logs:Read``."""
    r = k.api(
        "POST",
        "/api/v1/connections",
        json={"connectionId": "word", "type": "secret", "properties": {"value": "code"}},
    )
    assert r.status_code == 201, r.text
    k.register(
        "dag: {id: leaky_word}\ntasks:\n  - id: t\n    type: python\n    script: |\n"
        '      print("${secret.word} leaked: hunter3")\n      raise SystemExit(3)\n'
    )
    run_id = k.trigger("leaky_word")
    assert k.wait_run(run_id)["state"] == "FAILED"
    assert k.run(run_id)["tasks"]["t"]["error"] == "*** leaked: hunter3 (exit code 3)"
    task = call(k, states_only(k, "sue"), "GET", f"/api/v1/runs/{run_id}").json()["tasks"]["t"]
    assert task["error"] == "exit code 3", task


def test_runs_read_since_without_logs_read_shows_nothing_of_the_task_output(k: Standalone) -> None:
    """The ``?since=`` form (only the tasks changed after a version, from the same cached
    views) is the same run view: read from every version of a run in flight, it quotes
    nothing of the output either, where a log reader's delta does."""
    run_id = running_leaky_run(k)
    sam = states_only(k, "sid")
    version = k.run(run_id)["version"]
    quoted = 0
    for since in range(version + 1):
        r = call(k, sam, "GET", f"/api/v1/runs/{run_id}", params={"since": since})
        assert r.status_code == 200 and "hunter2" not in r.text, (since, r.text)
        mine = k.api("GET", f"/api/v1/runs/{run_id}", params={"since": since}).json()
        if not mine["full"] and "t" in mine["tasks"]:
            quoted += 1
            assert "hunter2" in mine["tasks"]["t"]["error"], mine
            assert r.json()["tasks"]["t"]["error"] == "exit code 3", r.text
    assert quoted, "no delta read held the failed task: the delta path went untested"
    assert k.api("POST", f"/api/v1/runs/{run_id}/cancel").status_code == 200
    k.wait_run(run_id)


def test_a_log_reader_reads_the_output_line_in_the_error(k: Standalone) -> None:
    """The other side: ``runs:Read`` with ``logs:Read`` (not only an admin) keeps the
    ``error`` as it was, the output line first, read before and after a caller without
    ``logs:Read`` (the two cached variants of one view are kept apart)."""
    run_id = failed_leaky_run(k)
    put_policy(k, "leaky-reader", allow(["runs:Read", "logs:Read"], "dag/leaky/*"))
    put_user(k, "lou", policies=("leaky-reader",))
    lou, sam = login(k, "lou"), states_only(k, "sue")
    full = "db password: hunter2-in-the-log (exit code 3)"
    for who, error in ((lou, full), (sam, "exit code 3"), (lou, full), (sam, "exit code 3")):
        r = call(k, who, "GET", f"/api/v1/runs/{run_id}")
        assert r.status_code == 200 and r.json()["tasks"]["t"]["error"] == error, r.text
    assert k.run(run_id)["tasks"]["t"]["error"] == full


@pytest.fixture
def garbling_server() -> Iterator[str]:
    """A server answering every request with a line that is no HTTP status line, but data."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(4096)
                conn.sendall(b"CUSTOMER-DATA ssn=123-45-6789\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/a"
    finally:
        done.set()
        thread.join(5)
        server.close()


def test_runs_read_without_logs_read_shows_nothing_an_http_task_s_server_sent(
    k: Standalone, garbling_server: str
) -> None:
    """Found by the attack probe: an http task's server answering a malformed status (or
    header) line had its bytes quoted in the task's ``error``, whole, to a caller who may read
    run states but not logs. Now that caller reads kiok's part: the failure, method and URL
    (masked: a secret spelling one of kiok's words leaves that form whole)."""
    secret = {"connectionId": "garble", "type": "secret", "properties": {"value": "from"}}
    assert k.api("POST", "/api/v1/connections", json=secret).status_code == 201
    url = f"{garbling_server}?t=${{secret.garble}}"
    k.register(f"dag: {{id: leaky_http}}\ntasks:\n  - {{id: t, type: http, config: {{url: '{url}'}}}}\n")
    run_id = k.trigger("leaky_http")
    assert k.wait_run(run_id)["state"] == "FAILED"
    own = f"RemoteProtocolError from GET {garbling_server}?t=***"
    full = k.run(run_id)["tasks"]["t"]["error"]
    assert "ssn=123-45-6789" in full and full.endswith(f" ({own})"), full
    sam = states_only(k, "hal")
    for params in ({}, {"since": 0}):
        r = call(k, sam, "GET", f"/api/v1/runs/{run_id}", params=params)
        assert r.status_code == 200 and "ssn=" not in r.text, r.text
        assert r.json()["tasks"]["t"]["error"] == own, r.text


def test_cancel_and_rerun_without_logs_read_show_nothing_of_the_task_output(k: Standalone) -> None:
    """``runs:Cancel`` and ``runs:Rerun`` answer with the run view too: without ``logs:Read``
    it is the same redacted one."""
    run_id = running_leaky_run(k)
    sam = states_only(k, "cy", "runs:Cancel", "runs:Rerun")
    r = call(k, sam, "POST", f"/api/v1/runs/{run_id}/cancel")
    assert r.status_code == 200 and "hunter2" not in r.text, r.text
    assert r.json()["tasks"]["t"]["error"] == "exit code 3", r.text
    assert k.wait_run(run_id)["state"] in ("FAILED", "CANCELLED")
    r = call(k, sam, "POST", f"/api/v1/runs/{run_id}/rerun", json={"onlyFailed": False})
    assert r.status_code == 200 and "hunter2" not in r.text, r.text
    call(k, sam, "POST", f"/api/v1/runs/{run_id}/cancel")
    k.wait_run(run_id)


# --- Tokens: what a client can make of one it holds -----------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_forged_tampered_and_swapped_tokens_are_refused(k: Standalone) -> None:
    """Held so: an ``alg: none`` token, one signed with a key of the caller's choosing (with a
    ``kid`` naming another), one whose payload was edited under its signature, and a refresh
    token sent as an access token (and the other way round) all get 401."""
    put_user(k, "tina")
    pair = httpx.post(k.url + "/api/v1/auth/login", json={"user": "tina", "password": PW}).json()
    head, body, signature = pair["accessToken"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    as_admin = {**claims, "sub": "admin", "exp": int(time.time()) + 3600}
    forged = [
        _b64(b'{"alg":"none","typ":"JWT"}') + "." + _b64(json.dumps(as_admin).encode()) + ".",
        jwt.encode(as_admin, "guessed-key-guessed-key-guessed!", algorithm="HS256", headers={"kid": "0"}),
        f"{head}.{_b64(json.dumps(as_admin).encode())}.{signature}",
        pair["refreshToken"],
    ]
    for token in forged:
        r = httpx.get(k.url + "/api/v1/iam/users", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated", (token, r.text)
    r = httpx.post(k.url + "/api/v1/auth/refresh", json={"refreshToken": pair["accessToken"]})
    assert r.status_code == 401, r.text
    assert call(k, {"Authorization": f"Bearer {pair['accessToken']}"}, "GET", "/api/v1/me").status_code == 200


def test_a_client_cannot_name_its_own_address_for_the_audit_log_or_the_login_limits(k: Standalone) -> None:
    """The headers a follower adds when it forwards (and a proxy's ``X-Forwarded-For``) are
    believed only with the service token / from a trusted proxy: a client sending them itself
    is audited, and limited, at its own address."""
    spoof = {
        "X-Kiok-Forwarded-For": "10.9.8.7",
        "X-Kiok-Forwarded-By": "m1",
        "X-Kiok-Service-Authorization": "Bearer guessed",
        "X-Forwarded-For": "10.1.1.1",
    }
    codes = [
        httpx.post(
            k.url + "/api/v1/auth/login",
            json={"user": "ursula", "password": f"wrong-{i}"},
            headers={**spoof, "X-Kiok-Forwarded-For": f"10.9.8.{i}", "X-Forwarded-For": f"10.1.1.{i}"},
        ).status_code
        for i in range(6)
    ]
    assert codes == [401] * 5 + [429]

    def refusals() -> list[dict[str, Any]] | None:
        query = {"actor": "ursula", "action": "auth:Login", "outcome": "refused"}
        entries: list[dict[str, Any]] = k.api("GET", "/api/v1/admin/audit", params=query).json()["entries"]
        return entries if len(entries) == 5 else None

    assert {e["address"] for e in k.wait_for(refusals, 10, "5 refused logins audited")} == {"127.0.0.1"}


def test_a_stolen_token_cannot_outlive_the_password_change_through_an_access_key(k: Standalone) -> None:
    """A key outlives the session that made it, and the password change meant to end a
    stolen one: with a stolen access (or refresh) token alone, an attacker minted a key and
    kept the account. A key of one's own needs the current password (re-authentication)."""
    put_user(k, "vic")
    stolen = login(k, "vic")  # an access token the attacker holds, without the password
    keys = "/api/v1/iam/access-keys"
    r = call(k, stolen, "POST", keys, json={})
    assert r.status_code == 400 and "password" in r.json()["error"]["message"], r.text
    r = call(k, stolen, "POST", keys, json={"password": "Not-Vics-Password-1"})
    assert r.status_code == 403 and "wrong password" in r.json()["error"]["message"], r.text
    assert call(k, stolen, "GET", "/api/v1/me").status_code == 200  # a refusal, not a logout
    assert k.api("GET", keys, params={"user": "vic"}).json()["accessKeys"] == []
    own = login(k, "vic")
    new = {"oldPassword": PW, "newPassword": "Vic-Changed-Password-2"}
    changed = call(k, own, "POST", "/api/v1/auth/change-password", json=new)
    assert changed.status_code == 200
    assert call(k, stolen, "GET", "/api/v1/me").status_code == 401  # the session ended, all of it
    # Vic makes keys with her password; an admin makes them for her (iam:CreateAccessKey on
    # iam/user/vic from a policy) without it.
    vic = {"Authorization": f"Bearer {changed.json()['accessToken']}"}
    r = call(k, vic, "POST", keys, json={"password": "Vic-Changed-Password-2"})
    assert r.status_code == 201 and r.json()["user"] == "vic", r.text
    r = k.api("POST", keys, json={"user": "vic"})
    assert r.status_code == 201 and r.json()["user"] == "vic", r.text
