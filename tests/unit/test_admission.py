"""Worker admission on the in-memory store: one-time join tokens, credentials, revocation,
secrets never stored; the ``/api/v1/admin`` router on a stub node; ``kiok admin`` output."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiok.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from kiok.master.admission import CREDENTIAL_PREFIX, JOIN_TOKEN_PREFIX, Admission, secret_hash
from kiok.master.api.app import create_app
from kiok.master.auth import Principal
from kiok.master.metrics import MasterMetrics
from kiok.observability.tracing import NoTracing
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.apply_admission import EXPIRED_TOKEN_RETENTION_MS
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader
from tests.unit.test_cli_harness import FakeMaster, body, fail, reply


class Clock:
    def __init__(self, now_ms: int = 1_714_560_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def make() -> tuple[Admission, Clock, MemoryKV]:
    kv = MemoryKV(keys.SPACES)
    clock = Clock()
    return Admission(LocalCommandLog(kv), StateReader(kv), clock), clock, kv


def stored_values(kv: MemoryKV) -> bytes:
    return b"\n".join(key + b"=" + raw for space in keys.SPACES for key, raw in kv.scan(space, b""))


async def test_a_token_admits_one_worker_whose_credential_then_verifies() -> None:
    adm, clock, kv = make()
    token, expires_ms = await adm.issue_join_token()
    assert token.startswith(JOIN_TOKEN_PREFIX) and expires_ms == clock.now_ms + 3600_000
    cred = await adm.redeem(token, "w1")
    assert cred.startswith(CREDENTIAL_PREFIX)
    adm.verify("w1", cred)
    with pytest.raises(Unauthenticated, match="wrong credential"):
        adm.verify("w1", cred + "x")
    with pytest.raises(Unauthenticated, match="unknown worker"):
        adm.verify("w2", cred)
    with pytest.raises(Unauthenticated, match="used by another worker"):
        await adm.redeem(token, "w2")
    with pytest.raises(Unauthenticated, match="unknown join token"):
        await adm.redeem(JOIN_TOKEN_PREFIX + "forged", "w3")
    assert adm.workers() == [
        {"id": "w1", "admittedAt": "2024-05-01T10:40:00.000Z", "revoked": False, "revokedAt": None}
    ]
    everything = stored_values(kv)
    assert token.encode() not in everything and cred.encode() not in everything
    assert secret_hash(token).encode() in everything and secret_hash(cred).encode() in everything


async def test_a_spent_token_is_refused_even_for_the_worker_that_spent_it() -> None:
    # Worker ids are public (a worker's /status shows its own): a used token plus the id must
    # not mint a second credential that locks the real worker out.
    adm, clock, kv = make()
    token, _ = await adm.issue_join_token()
    cred = await adm.redeem(token, "w1")
    log = LocalCommandLog(kv)
    clock.now_ms += 1000
    with pytest.raises(Unauthenticated, match=r"already used \(by worker w1\).*needs a new join token"):
        await adm.redeem(token, "w1")
    adm.verify("w1", cred)  # the real worker's credential still works
    # ``apply`` refuses it too, whoever proposes it (a master that skipped the pre-check).
    with pytest.raises(Unauthenticated, match="already used"):
        await log.propose(
            c.RedeemJoinToken(
                at_ms=clock.now_ms, token_hash=secret_hash(token), worker_id="w1", credential_hash="x"
            )
        )
    adm.verify("w1", cred)


async def test_hopeless_tokens_are_refused_without_a_command() -> None:
    kv = MemoryKV(keys.SPACES)
    inner = LocalCommandLog(kv)
    proposed: list[c.Command] = []

    class CountingLog:
        async def propose(self, cmd: c.Command) -> object:
            proposed.append(cmd)
            return await inner.propose(cmd)

    adm = Admission(CountingLog(), StateReader(kv), Clock())  # type: ignore[arg-type]
    token, _ = await adm.issue_join_token()
    await adm.redeem(token, "w1")
    before = len(proposed)
    for bad, worker in ((JOIN_TOKEN_PREFIX + "forged", "w2"), (token, "w1"), (token, "w3")):
        with pytest.raises(Unauthenticated):
            await adm.redeem(bad, worker)
    assert len(proposed) == before


async def test_an_expired_token_is_refused() -> None:
    adm, clock, _ = make()
    token, expires_ms = await adm.issue_join_token(ttl_s=60)
    clock.now_ms = expires_ms
    with pytest.raises(Unauthenticated, match="join token expired"):
        await adm.redeem(token, "w1")


async def test_a_token_held_unsent_does_not_undo_a_revocation() -> None:
    """Found by the failover probe: a worker restarted with a new token while its credential
    was good never sends the token; revoked, it tried that token at once and was admitted
    again 60 ms later. A revoked id needs a token issued since its revocation."""
    adm, clock, kv = make()
    first, _ = await adm.issue_join_token()
    await adm.redeem(first, "w1")
    clock.now_ms += 1000
    held, _ = await adm.issue_join_token()  # in w1's environment, unsent
    clock.now_ms += 1000
    await adm.revoke("w1")
    assert not adm.redeemable(held, "w1")
    with pytest.raises(Unauthenticated, match="issued before worker w1 was revoked"):
        await adm.redeem(held, "w1")
    assert adm.workers()[0]["revoked"] is True
    # Applied from an entry that skipped the check (a leader's own, with the field), refused too.
    with pytest.raises(Unauthenticated, match="issued before worker w1 was revoked"):
        await LocalCommandLog(kv).propose(
            c.RedeemJoinToken(
                at_ms=clock.now_ms, token_hash=secret_hash(held), worker_id="w1", credential_hash="x",
                since_revocation=True,
            )
        )  # fmt: skip
    clock.now_ms += 1000
    fresh, _ = await adm.issue_join_token()
    adm.verify("w1", await adm.redeem(fresh, "w1"))
    assert await adm.redeem(held, "w2")  # the held token is good for another id


async def test_revoke_ends_the_credential_and_only_a_new_token_readmits() -> None:
    adm, clock, _ = make()
    old_token, _ = await adm.issue_join_token()
    cred = await adm.redeem(old_token, "w1")
    clock.now_ms += 5000
    await adm.revoke("w1")
    await adm.revoke("w1")  # harmless again
    with pytest.raises(Unauthenticated, match="worker w1 was revoked"):
        adm.verify("w1", cred)
    with pytest.raises(Unauthenticated, match="already used"):
        await adm.redeem(old_token, "w1")  # the old token cannot undo the revocation
    [row] = adm.workers()
    assert row["revoked"] is True and row["revokedAt"] == "2024-05-01T10:40:05.000Z"

    new_token, _ = await adm.issue_join_token()
    new_cred = await adm.redeem(new_token, "w1")
    adm.verify("w1", new_cred)
    with pytest.raises(Unauthenticated, match="already used"):
        await adm.redeem(old_token, "w1")  # nor take over the re-admitted worker
    with pytest.raises(Unauthenticated, match="already used"):
        await adm.redeem(new_token, "w1")
    with pytest.raises(NotFound):
        await adm.revoke("ghost")


async def test_a_fresh_token_cannot_take_over_an_admitted_worker() -> None:
    adm, _, _ = make()
    cred = await adm.redeem((await adm.issue_join_token())[0], "w1")
    other, _ = await adm.issue_join_token()
    with pytest.raises(Unauthenticated, match="already admitted"):
        await adm.redeem(other, "w1")
    adm.verify("w1", cred)
    await adm.redeem(other, "w2")  # the refused attempt did not use the token up


async def test_bad_role_ttl_and_worker_id_are_refused() -> None:
    adm, _, _ = make()
    with pytest.raises(InvalidInput, match="role"):
        await adm.issue_join_token(role="master")
    for ttl in (59, 7 * 24 * 3600 + 1):
        with pytest.raises(InvalidInput, match="ttlSeconds"):
            await adm.issue_join_token(ttl_s=ttl)
    token, _ = await adm.issue_join_token()
    for bad in ("../etc", "w1\n"):  # "$" alone would let a trailing newline through
        with pytest.raises(InvalidInput, match="worker id"):
            await adm.redeem(token, bad)


async def test_expired_token_records_are_pruned_on_issue() -> None:
    adm, clock, kv = make()
    old, expires_ms = await adm.issue_join_token(ttl_s=60)
    reader = StateReader(kv)
    clock.now_ms = expires_ms + EXPIRED_TOKEN_RETENTION_MS  # not yet past retention
    await adm.issue_join_token()
    assert reader.join_token(secret_hash(old)) is not None
    clock.now_ms += 1
    await adm.issue_join_token()
    assert reader.join_token(secret_hash(old)) is None


async def test_apply_refuses_a_reissued_hash_and_commands_round_trip() -> None:
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    cmd = c.IssueJoinToken(at_ms=1, token_hash="h", role="worker", expires_ms=100)
    await log.propose(cmd)
    with pytest.raises(Conflict):
        await log.propose(cmd)  # a replay must not reopen a used token
    for command in (
        cmd,
        c.RedeemJoinToken(at_ms=2, token_hash="h", worker_id="w", credential_hash="ch"),
        c.RevokeWorker(at_ms=3, worker_id="w"),
    ):
        assert c.from_wire(command.to_wire()) == command


async def test_a_revocation_tells_whichever_master_holds_the_connection() -> None:
    """From the review of the revocation change: the master holding the worker's connection
    closed it only when the revoking request was answered, after the revocation's effects had
    woken the coordinator, whose pass could offer the revoked worker a run meanwhile. The
    effects now name it, and every master closes its connection (if it holds one) as it
    applies them, before the coordinator's pass."""
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    seen: list[list[str]] = []
    log.subscribe(lambda fx: seen.append(list(fx.workers_revoked)))
    await log.propose(c.IssueJoinToken(at_ms=1, token_hash="h", role="worker", expires_ms=100))
    await log.propose(c.RedeemJoinToken(at_ms=2, token_hash="h", worker_id="w", credential_hash="ch"))
    await log.propose(c.RevokeWorker(at_ms=3, worker_id="w", take_runs=True))
    assert seen[-1] == ["w"] and seen[:-1] == [[], []], seen


# --- the /api/v1/admin router on a stub node ---------------------------------------------------


class StubAuth:
    def authenticate(self, header: str | None, *, allow_password_change: bool = False) -> Principal:
        if header != "Bearer good":
            raise Unauthenticated("authentication required")
        return Principal("admin", ("admins",), False)


class StubNode:
    def __init__(self, admission: Admission) -> None:
        self.auth = StubAuth()
        self.admission = admission
        self.disconnected: list[str] = []
        self.audited: list[tuple[str, ...]] = []
        self.audit = self
        self.iam = self
        self.raft = None  # one master: nothing is forwarded
        self.metrics = MasterMetrics()  # the admin app times every request
        self.tracing = NoTracing()

    def authorize(self, principal: object, action: str, resource: str) -> None:
        pass  # the real policy check is covered by tests/integration/test_iam.py

    def record(self, actor: str, action: str, target: str = "", address: str = "", **_: object) -> None:
        self.audited.append((actor, action, target))

    def readiness(self) -> tuple[bool, str]:
        return True, ""

    def disconnect_worker(self, worker_id: str) -> None:
        self.disconnected.append(worker_id)


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, StubNode]]:
    node = StubNode(make()[0])
    app = create_app(node, max_body_bytes=1 << 20)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://m", headers={"Authorization": "Bearer good"}
    ) as client:
        yield client, node


async def test_api_issues_lists_and_revokes(api: tuple[httpx.AsyncClient, StubNode]) -> None:
    client, node = api
    r = await client.post("/api/v1/admin/join-tokens", json={"role": "worker", "ttlSeconds": 120})
    assert r.status_code == 201 and set(r.json()) == {"token", "expiresAt"}
    assert r.json()["expiresAt"] == "2024-05-01T10:42:00.000Z"
    assert (await client.post("/api/v1/admin/join-tokens")).status_code == 201  # body optional
    await node.admission.redeem(r.json()["token"], "w1")

    assert (await client.get("/api/v1/admin/workers")).json()["workers"][0]["id"] == "w1"
    r = await client.delete("/api/v1/admin/workers/w1")
    assert r.status_code == 200 and r.json() == {"revoked": "w1"} and node.disconnected == ["w1"]
    r = await client.delete("/api/v1/admin/workers/ghost")
    assert r.status_code == 404 and node.disconnected == ["w1"]


@pytest.mark.parametrize(
    "body",
    [{"role": "master"}, {"ttlSeconds": 10}, {"ttlSeconds": 604801}, {"ttl": 100}],
)
async def test_api_refuses_bad_join_token_requests(
    api: tuple[httpx.AsyncClient, StubNode], body: dict[str, Any]
) -> None:
    r = await api[0].post("/api/v1/admin/join-tokens", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"


async def test_api_requires_authentication(api: tuple[httpx.AsyncClient, StubNode]) -> None:
    client, _ = api
    for method, path in (
        ("POST", "/api/v1/admin/join-tokens"),
        ("GET", "/api/v1/admin/workers"),
        ("DELETE", "/api/v1/admin/workers/w1"),
    ):
        r = await client.request(method, path, headers={"Authorization": "Bearer bad"})
        assert r.status_code == 401, (method, path)


# --- kiok admin --------------------------------------------------------------------------------


def test_cli_join_token_prints_the_token_alone_on_stdout(tmp_path: Path) -> None:
    master = FakeMaster(tmp_path / "config")
    answer = {"token": "kiok_join_v1.abc", "expiresAt": "2024-05-01T13:00:00.000Z"}
    master.on("POST", "/api/v1/admin/join-tokens", reply(201, answer))
    result = master.invoke(["--token", "t", "admin", "join-token", "--ttl", "600"])
    assert result.exit_code == 0 and result.stdout == "kiok_join_v1.abc\n"
    assert "2024-05-01T13:00:00.000Z" in result.stderr
    assert body(master.sent("POST", "/api/v1/admin/join-tokens")[0]) == {"role": "worker", "ttlSeconds": 600}
    result = master.invoke(["--token", "t", "admin", "join-token", "--json"])
    assert json.loads(result.stdout) == answer
    assert master.invoke(["--token", "t", "admin", "join-token", "--ttl", "5"]).exit_code == 2


def test_cli_lists_and_revokes_workers(tmp_path: Path) -> None:
    master = FakeMaster(tmp_path / "config")
    rows = [
        {"id": "w1", "admittedAt": "2024-05-01T10:00:00.000Z", "revoked": False, "revokedAt": None},
        {
            "id": "w2",
            "admittedAt": "2024-05-01T10:01:00.000Z",
            "revoked": True,
            "revokedAt": "2024-05-01T11:00:00.000Z",
        },
    ]
    master.on("GET", "/api/v1/admin/workers", reply(200, {"workers": rows}))
    out = master.invoke(["--token", "t", "admin", "workers"]).stdout.splitlines()
    assert [line.split() for line in out] == [
        ["ID", "ADMITTED", "REVOKED"],
        ["w1", "2024-05-01T10:00:00.000Z", "no"],
        ["w2", "2024-05-01T10:01:00.000Z", "2024-05-01T11:00:00.000Z"],
    ]
    master.on("DELETE", "/api/v1/admin/workers/w1", reply(200, {"revoked": "w1"}))
    assert master.invoke(["--token", "t", "admin", "revoke", "w1"]).stdout == "revoked w1\n"
    master.on("DELETE", "/api/v1/admin/workers/nope", fail(404, "not_found", "worker 'nope' not found"))
    result = master.invoke(["--token", "t", "admin", "revoke", "nope"])
    assert result.exit_code == 1 and result.stderr == "error: worker 'nope' not found\n"
