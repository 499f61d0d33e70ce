"""The authorisation cache seen by an attacker holding a credential the master has already
resolved (and so keeps): over HTTP, the very next request after an IAM change that takes
the right away is refused, on a single master, after a restore, and with three masters on
the leader and on followers whichever master the change went through, and after a restore
sent to a follower."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiok.testing.process import MasterGroup, Standalone
from tests.integration.test_backup_restore import POLICY as LIST
from tests.integration.test_backup_restore import ok
from tests.integration.test_ha import FAST
from tests.integration.test_iam import as_user

pytestmark = pytest.mark.slow

PASSWORD = "Cached-Password-1"
DENY = {"Statement": [{"Effect": "Deny", "Action": ["*"], "Resource": ["*"]}]}


def grant(admin: Standalone, name: str, *, via_group: bool = False) -> None:
    """User ``name`` allowed ``dags:List`` by its own policy ``name`` (or its group's)."""
    ok(admin.api("POST", "/api/v1/iam/policies", json={"policy": name, "document": LIST}), 201)
    user: dict[str, Any] = {"user": name, "password": PASSWORD, "policies": [name]}
    if via_group:
        ok(admin.api("POST", "/api/v1/iam/groups", json={"group": name, "policies": [name]}), 201)
        user = {"user": name, "password": PASSWORD, "groups": [name]}
    ok(admin.api("POST", "/api/v1/iam/users", json=user), 201)


def before_a_grant(admin: Standalone, name: str) -> tuple[str, dict[str, str]]:
    """User ``name`` without rights and an access key of its, backed up, then granted
    ``dags:List``: the backup's id, and the key's headers (a credential that outlives a
    restore, unlike a session: a restore ends those)."""
    ok(admin.api("POST", "/api/v1/iam/users", json={"user": name, "password": PASSWORD}), 201)
    key = ok(admin.api("POST", "/api/v1/iam/access-keys", json={"user": name}), 201)
    backup = str(ok(admin.api("POST", "/api/v1/admin/backup", timeout=120), 201)["backupId"])
    ok(admin.api("POST", "/api/v1/iam/policies", json={"policy": name, "document": LIST}), 201)
    ok(admin.api("POST", "/api/v1/iam/users", json={"user": name, "policies": [name]}), 201)
    return backup, {"Authorization": f"AccessKey {key['accessKeyId']}:{key['secretAccessKey']}"}


def status(node: Standalone, headers: dict[str, str]) -> int:
    return node.http("GET", node.url + "/api/v1/dags", headers=headers).status_code


def answered(node: Standalone, headers: dict[str, str]) -> int:
    """The status of the next request that is answered: a master is not ready (503) for a
    moment after a restore."""
    return int(node.wait_for(lambda: (code := status(node, headers)) != 503 and code, 30, "an answer"))


def cached(node: Standalone, headers: dict[str, str]) -> None:
    """Two granted requests: the second is answered from the cache."""
    assert [status(node, headers), status(node, headers)] == [200, 200]


#: name -> (whether the grant comes through a group, the admin's change, the status after)
CHANGES: dict[str, tuple[bool, Callable[[Standalone, str], httpx.Response], int]] = {
    "policy-detached": (
        False,
        lambda a, n: a.api("POST", "/api/v1/iam/users", json={"user": n, "policies": []}),
        403,
    ),
    "policy-edited": (
        False,
        lambda a, n: a.api("POST", "/api/v1/iam/policies", json={"policy": n, "document": DENY}),
        403,
    ),
    "policy-deleted": (False, lambda a, n: a.api("DELETE", f"/api/v1/iam/policies/{n}"), 403),
    "removed-from-group": (
        True,
        lambda a, n: a.api("POST", "/api/v1/iam/users", json={"user": n, "groups": []}),
        403,
    ),
    "group-policy-detached": (
        True,
        lambda a, n: a.api("POST", "/api/v1/iam/groups", json={"group": n, "policies": []}),
        403,
    ),
    "group-deleted": (True, lambda a, n: a.api("DELETE", f"/api/v1/iam/groups/{n}"), 403),
    "user-deleted": (False, lambda a, n: a.api("DELETE", f"/api/v1/iam/users/{n}"), 401),
    "password-reset": (
        False,
        lambda a, n: a.api("POST", "/api/v1/iam/users", json={"user": n, "password": "Another-Password-2"}),
        401,
    ),
}


def test_the_request_after_each_iam_change_is_refused(standalone_factory: Any, tmp_path: Path) -> None:
    node: Standalone = standalone_factory("kiok", {"KIOK_BACKUP_DIR": str(tmp_path / "backups")})
    for name, (via_group, change, refused) in CHANGES.items():
        grant(node, name, via_group=via_group)
        headers = as_user(node, name, PASSWORD)
        cached(node, headers)
        done = change(node, name)
        assert done.is_success, done.text
        assert status(node, headers) == refused, name

    # An access key, deleted.
    grant(node, "scripted")
    key = ok(node.api("POST", "/api/v1/iam/access-keys", json={"user": "scripted"}), 201)
    by_key = {"Authorization": f"AccessKey {key['accessKeyId']}:{key['secretAccessKey']}"}
    cached(node, by_key)
    ok(node.api("DELETE", f"/api/v1/iam/access-keys/{key['accessKeyId']}"))
    assert status(node, by_key) == 401

    # A restore of a backup taken before the user had any right.
    backup, by_key = before_a_grant(node, "late")
    late = as_user(node, "late", PASSWORD)
    cached(node, late)
    cached(node, by_key)
    restore = {"confirm": backup}
    ok(node.api("POST", f"/api/v1/admin/backups/{backup}/restore", json=restore, timeout=120))
    assert status(node, by_key) == 403  # the key is in the backup; the right it had is not
    assert status(node, late) == 401  # the session ended with the restore


@pytest.fixture
def group(tmp_path: Path) -> Iterator[MasterGroup]:
    g = MasterGroup(tmp_path, extra_env={**FAST, "KIOK_BACKUP_DIR": str(tmp_path / "backups")})
    yield g
    g.stop()


def test_every_master_refuses_the_next_request_whichever_master_the_change_went_through(
    group: MasterGroup,
) -> None:
    group.start()
    leader = group.leader()
    follower, other = group.followers(leader)
    worker = group.add_worker(leader, "w1")  # a cluster opens once a worker is ready
    try:
        for m in group.masters.values():
            m.wait_open()
        changes_reach_every_master(group, leader, follower, other)
    finally:
        worker.stop()


def changes_reach_every_master(
    group: MasterGroup, leader: Standalone, follower: Standalone, other: Standalone
) -> None:
    for name, via in (("detached-on-leader", leader), ("detached-via-follower", follower)):
        grant(leader, name)
        group.settle()
        headers = {m: as_user(m, name, PASSWORD) for m in (leader, follower, other)}
        for m, h in headers.items():
            cached(m, h)
        ok(via.api("POST", "/api/v1/iam/users", json={"user": name, "policies": []}), 201)
        group.settle()
        assert {m.url: status(m, h) for m, h in headers.items()} == {m.url: 403 for m in headers}

    # A restore of a backup taken before the user had any right, sent to a follower.
    backup, by_key = before_a_grant(leader, "late")
    group.settle()
    late = {m: as_user(m, "late", PASSWORD) for m in (leader, follower, other)}
    for m, h in late.items():
        cached(m, h)
        cached(m, by_key)
    restore = {"confirm": backup}
    ok(follower.api("POST", f"/api/v1/admin/backups/{backup}/restore", json=restore, timeout=120))
    group.settle()
    assert {m.url: answered(m, by_key) for m in late} == {m.url: 403 for m in late}
    assert {m.url: answered(m, h) for m, h in late.items()} == {m.url: 401 for m in late}
