"""The authorisation cache (``kiok.master.auth_cache``): a credential already resolved costs
no store read, yet every IAM change applied to the store drops what was kept, an answer
worked out while a change was applied is not kept, a cached token still expires, and the
commands that change IAM records say so in their effects."""

from __future__ import annotations

import hashlib

import pytest

from kiok.errors import Forbidden, Unauthenticated
from kiok.master.auth import AuthService, Principal
from kiok.master.auth_cache import EpochCache, IamEpoch
from kiok.master.iam import Iam
from kiok.security import actions
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog, apply_batch
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

TTL_MS = 60_000
READERS = {"Statement": [{"Effect": "Allow", "Action": ["runs:Read"], "Resource": ["dag/*"]}]}
DENY = {"Statement": [{"Effect": "Deny", "Action": ["*"], "Resource": ["*"]}]}


class CountingKV(MemoryKV):
    """Counts the IAM records read (what the cache is there to save)."""

    def __init__(self) -> None:
        super().__init__(keys.SPACES)
        self.iam_reads = 0

    def get(self, space: str, key: bytes) -> bytes | None:
        self.iam_reads += space == keys.IAM
        return super().get(space, key)


class Authorizer:
    """The pieces of a master that authorise a request, wired as ``MasterNode`` wires them."""

    def __init__(self) -> None:
        self.kv = CountingKV()
        self.now = 1_700_000_000_000
        self.log = LocalCommandLog(self.kv)
        reader = StateReader(self.kv)
        self.epoch = IamEpoch()
        self.log.subscribe(self.epoch.on_effects)
        self.auth = AuthService(
            self.log,
            reader,
            lambda: self.now,
            access_ttl_ms=TTL_MS,
            refresh_ttl_ms=10 * TTL_MS,
            max_failures=5,
            window_ms=60_000,
            epoch=self.epoch,
        )
        self.iam = Iam(reader, self.epoch)

    async def setup(self) -> str:
        """Bob, reading runs through his group; returns his access token."""
        await self.log.propose(
            c.Bootstrap(
                at_ms=1,
                admin_user="admin",
                password_hash="h",
                require_password_change=False,
                signing_key=b"k" * 32,
            )
        )
        await self.log.propose(c.PutPolicy(at_ms=2, name="readers", document=READERS))
        await self.log.propose(c.PutGroup(at_ms=2, name="viewers", policies=("readers",)))
        await self.log.propose(c.PutUser(at_ms=2, name="bob", password_hash="h", groups=("viewers",)))
        record = StateReader(self.kv).user("bob")
        assert record is not None
        return self.auth._tokens("bob", record).access

    def read_run(self, token: str) -> Principal:
        """What ``require(runs:Read, dag/d/run/r)`` does."""
        principal = self.auth.authenticate(f"Bearer {token}")
        self.iam.authorize(principal, actions.READ_RUN, "dag/d/run/r")
        return principal


async def test_a_known_token_costs_no_store_read_until_an_iam_change() -> None:
    m = Authorizer()
    token = await m.setup()
    m.read_run(token)
    before = m.kv.iam_reads
    for _ in range(3):
        m.read_run(token)
    assert m.kv.iam_reads == before
    # Any IAM change, even one about somebody else, drops what was kept.
    await m.log.propose(c.PutUser(at_ms=3, name="carol", password_hash="h"))
    m.read_run(token)
    assert m.kv.iam_reads > before


@pytest.mark.parametrize(
    "change, refused",
    [
        (c.PutGroup(at_ms=5, name="viewers", policies=()), Forbidden),
        (c.PutPolicy(at_ms=5, name="readers", document=DENY), Forbidden),
        (c.PutUser(at_ms=5, name="bob", groups=()), Forbidden),
        (c.DeleteIam(at_ms=5, what="group", name="viewers"), Forbidden),
        (c.DeleteIam(at_ms=5, what="policy", name="readers"), Forbidden),
        (c.DeleteIam(at_ms=5, what="user", name="bob"), Unauthenticated),
        (c.SetPassword(at_ms=5, user="bob", password_hash="h2"), Unauthenticated),
    ],
    ids=[
        "group-policy-detached",
        "policy-edited",
        "left-group",
        "group-deleted",
        "policy-deleted",
        "user-deleted",
        "password-reset",
    ],
)
async def test_the_request_after_an_iam_change_is_refused(
    change: c.Command, refused: type[Exception]
) -> None:
    m = Authorizer()
    token = await m.setup()
    m.read_run(token)
    m.read_run(token)  # answered from the cache
    await m.log.propose(change)
    with pytest.raises(refused):
        m.read_run(token)


async def test_an_access_key_deleted_is_refused_at_once() -> None:
    m = Authorizer()
    await m.setup()
    secret = "s3cret"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    await m.log.propose(c.PutAccessKey(at_ms=3, key_id="AK1", user="bob", secret_hash=digest))
    assert m.auth.authenticate(f"AccessKey AK1:{secret}").user == "bob"
    assert m.auth.authenticate(f"AccessKey AK1:{secret}").user == "bob"
    with pytest.raises(Unauthenticated):  # the same key id with another secret is not the cached one
        m.auth.authenticate("AccessKey AK1:guess")
    await m.log.propose(c.DeleteIam(at_ms=4, what="accesskey", name="AK1"))
    with pytest.raises(Unauthenticated):
        m.auth.authenticate(f"AccessKey AK1:{secret}")


async def test_a_cached_token_still_expires() -> None:
    m = Authorizer()
    token = await m.setup()
    m.read_run(token)
    m.now += TTL_MS
    with pytest.raises(Unauthenticated, match="expired"):
        m.read_run(token)


def test_an_answer_worked_out_while_the_epoch_moved_is_not_kept() -> None:
    epoch = IamEpoch()
    cache: EpochCache[str, int] = EpochCache(epoch, capacity=2)
    calls: list[str] = []

    def compute(value: int, bump: bool = False) -> int:
        calls.append("x")
        if bump:  # an IAM change applied (on the Raft thread) while the store was read
            epoch.bump()
        return value

    assert cache.resolve("a", lambda: compute(1, bump=True)) == 1
    assert cache.resolve("a", lambda: compute(2)) == 2  # not kept: worked out again
    assert cache.resolve("a", lambda: compute(3)) == 2  # kept
    assert len(calls) == 2
    epoch.bump()
    assert cache.resolve("a", lambda: compute(4)) == 4
    cache.resolve("b", lambda: 5)
    cache.resolve("c", lambda: 6)  # over capacity: "a", least recently used, goes
    assert len(cache) == 2 and cache.resolve("a", lambda: 7) == 7


def test_a_refusal_is_not_kept() -> None:
    cache: EpochCache[str, int] = EpochCache(IamEpoch())

    def refuse() -> int:
        raise Unauthenticated("no")

    with pytest.raises(Unauthenticated):
        cache.resolve("a", refuse)
    assert cache.resolve("a", lambda: 1) == 1


def test_iam_commands_and_restores_say_so_in_their_effects_and_others_do_not() -> None:
    kv = MemoryKV(keys.SPACES)
    boot = c.Bootstrap(
        at_ms=1, admin_user="admin", password_hash="h", require_password_change=False, signing_key=b"k" * 32
    )
    assert apply_batch(kv, [boot]).effects.iam_changed
    assert not apply_batch(kv, [c.SetDagPaused(at_ms=2, dag_id="nope", paused=True)]).effects.iam_changed
    refused = apply_batch(kv, [c.DeleteIam(at_ms=2, what="user", name="nobody")])
    assert refused.outcomes[0][1] is not None and not refused.effects.iam_changed
