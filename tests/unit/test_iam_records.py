"""IAM records in the store: what refers to a deleted record goes with it, access keys belong
to one user (not to a later user of the same name), user updates cannot race past the API's
checks, and every user may manage its own keys unless a policy denies it."""

from __future__ import annotations

import pytest

from kiok.errors import Conflict
from kiok.master.auth import Principal
from kiok.master.iam import Iam
from kiok.security import actions, resources
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader, access_key_is_current
from kiok.store.txn import encode


def setup() -> tuple[LocalCommandLog, StateReader, MemoryKV]:
    kv = MemoryKV(keys.SPACES)
    return LocalCommandLog(kv), StateReader(kv), kv


async def test_a_users_access_keys_go_with_it_and_a_new_user_of_that_name_has_none() -> None:
    log, reader, _ = setup()
    await log.propose(c.PutUser(at_ms=1, name="erin", password_hash="h"))
    await log.propose(c.PutUser(at_ms=1, name="bob", password_hash="h"))
    await log.propose(c.PutAccessKey(at_ms=2, key_id="AK1", user="erin", secret_hash="s"))
    await log.propose(c.PutAccessKey(at_ms=2, key_id="AK2", user="bob", secret_hash="s"))
    assert [a["keyId"] for a in reader.access_keys("erin")] == ["AK1"]
    await log.propose(c.DeleteIam(at_ms=3, what="user", name="erin"))
    assert reader.access_key("AK1") is None and reader.access_key("AK2") is not None
    await log.propose(c.PutUser(at_ms=4, name="erin", password_hash="h"))
    assert reader.access_keys("erin") == []
    assert [a["keyId"] for a in reader.access_keys()] == ["AK2"]


async def test_a_key_left_behind_by_an_earlier_user_of_the_same_name_is_dead() -> None:
    """Keys written before deletion took them along (no ``userCreatedMs``) stay in the store."""
    log, reader, kv = setup()
    await log.propose(c.PutUser(at_ms=10, name="erin", password_hash="h"))
    orphan = {"keyId": "AK0", "user": "erin", "secretHash": "s", "createdMs": 5}
    kv.write([(keys.IAM, keys.access_key("AK0").encode(), encode(orphan))], sync=False)
    assert reader.access_keys("erin") == []
    user = reader.user("erin")
    assert not access_key_is_current(orphan, user)
    assert access_key_is_current(dict(orphan, createdMs=10), user)  # made for this user
    assert not access_key_is_current(dict(orphan, createdMs=99, userCreatedMs=3), user)
    assert not access_key_is_current(orphan, None)


async def test_deleting_a_group_or_policy_takes_it_off_its_holders() -> None:
    log, reader, _ = setup()
    await log.propose(c.PutPolicy(at_ms=1, name="p", document={"Statement": []}))
    await log.propose(c.PutPolicy(at_ms=1, name="q", document={"Statement": []}))
    await log.propose(c.PutGroup(at_ms=1, name="g", policies=("p", "q")))
    await log.propose(c.PutUser(at_ms=1, name="u", password_hash="h", groups=("g",), policies=("p",)))
    await log.propose(c.DeleteIam(at_ms=2, what="policy", name="p"))
    assert reader.group("g")["policies"] == ["q"]  # type: ignore[index]
    assert reader.user("u")["policies"] == []  # type: ignore[index]
    await log.propose(c.DeleteIam(at_ms=3, what="group", name="g"))
    await log.propose(c.PutGroup(at_ms=4, name="g"))
    assert reader.user("u")["groups"] == []  # type: ignore[index]


async def test_a_user_update_checked_against_a_record_that_changed_since_is_refused() -> None:
    log, reader, _ = setup()
    await log.propose(c.PutGroup(at_ms=1, name="admins"))
    await log.propose(c.PutGroup(at_ms=1, name="viewers"))
    created = c.PutUser(at_ms=2, name="u", password_hash="h", expect_existing=False)
    await log.propose(created)
    with pytest.raises(Conflict, match="created meanwhile"):
        await log.propose(created)  # checked as a creation: a password needs no SetPassword
    await log.propose(c.PutUser(at_ms=3, name="u", groups=("admins",)))  # a concurrent change
    stale = c.PutUser(at_ms=4, name="u", groups=("viewers",), expect_groups=(), expect_policies=())
    with pytest.raises(Conflict, match="groups changed meanwhile"):
        await log.propose(stale)  # would drop admins without RemoveUserFromGroup being checked
    assert reader.user("u")["groups"] == ["admins"]  # type: ignore[index]
    with pytest.raises(Conflict, match="policies changed meanwhile"):
        await log.propose(c.PutGroup(at_ms=5, name="admins", expect_policies=("gone",)))
    assert c.from_wire(stale.to_wire()) == stale


async def test_every_user_manages_its_own_access_keys_unless_denied() -> None:
    log, reader, _ = setup()
    deny = {"Statement": [{"Effect": "Deny", "Action": ["iam:DeleteAccessKey"], "Resource": ["*"]}]}
    await log.propose(c.PutPolicy(at_ms=1, name="no-delete", document=deny))
    await log.propose(c.PutUser(at_ms=1, name="alice", password_hash="h"))
    await log.propose(c.PutUser(at_ms=1, name="carol", password_hash="h", policies=("no-delete",)))
    iam = Iam(reader)
    alice = iam.grants(Principal("alice", (), False))
    for action in actions.SELF_SERVICE:
        assert alice.allows(action, resources.user("alice"))
        assert not alice.allows(action, resources.user("bob"))
    assert not alice.allows(actions.SET_PASSWORD, resources.user("alice"))
    assert not alice.allows(actions.READ_IAM, resources.user("alice"))
    carol = iam.grants(Principal("carol", (), False))
    assert carol.allows(actions.CREATE_ACCESS_KEY, resources.user("carol"))
    assert not carol.allows(actions.DELETE_ACCESS_KEY, resources.user("carol"))
