"""Rewriting or deleting a policy attached to someone needs ``iam:AttachPolicy`` /
``iam:DetachPolicy``; the API checks that before it proposes the write. An attach landing
between the check and the write must not let the write through unchecked: the command
carries that its caller was not checked, and applying it refuses (409). Each race is
reproduced deterministically: the attach is proposed at the moment the handler proposes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from kiok.errors import Conflict, Forbidden
from kiok.master.api import iam as api
from kiok.master.auth import Principal
from kiok.master.iam import Iam
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

ANYTHING = {"Statement": [{"Effect": "Allow", "Action": ["*"], "Resource": ["*"]}]}
NO_DAGS = {"Statement": [{"Effect": "Deny", "Action": ["dags:*"], "Resource": ["*"]}]}
AUTHOR = {"Statement": [{"Effect": "Allow", "Action": ["iam:Write"], "Resource": ["iam/policy/*"]}]}


class RacingLog:
    """A command log that, when the handler proposes its policy write, first commits
    ``meanwhile``: the concurrent attach, landing after the handler's check."""

    def __init__(self, log: LocalCommandLog, meanwhile: c.Command) -> None:
        self._log = log
        self._meanwhile: c.Command | None = meanwhile

    async def propose(self, cmd: c.Command) -> Any:
        if self._meanwhile is not None and isinstance(cmd, c.PutPolicy | c.DeleteIam):
            attach, self._meanwhile = self._meanwhile, None
            await self._log.propose(attach)
        return await self._log.propose(cmd)


async def store() -> tuple[LocalCommandLog, StateReader]:
    """``pat`` may write policies (not attach them); ``draft`` and ``no-dags`` are attached to
    nobody, so writing or deleting them needs ``iam:Write`` only."""
    kv = MemoryKV(keys.SPACES)
    log, reader = LocalCommandLog(kv), StateReader(kv)
    for name, document in (("authors", AUTHOR), ("draft", {"Statement": []}), ("no-dags", NO_DAGS)):
        await log.propose(c.PutPolicy(at_ms=1, name=name, document=document))
    await log.propose(c.PutUser(at_ms=1, name="pat", password_hash="h", policies=("authors",)))
    return log, reader


def request(reader: StateReader, log: RacingLog) -> Request:
    node = SimpleNamespace(
        reader=reader,
        iam=Iam(reader),
        log=log,
        clock_ms=lambda: 10,
        audit=SimpleNamespace(record=lambda *a, **kw: None),
    )
    app = SimpleNamespace(state=SimpleNamespace(node=node))
    return Request({"type": "http", "app": app, "headers": [], "client": ("127.0.0.1", 1)})


PAT = Principal("pat", (), False)


async def test_a_policy_attached_between_the_check_and_the_write_is_not_rewritten() -> None:
    log, reader = await store()
    # The admin attaches the draft to pat while pat's rewrite of it is in flight.
    attach = c.PutUser(at_ms=5, name="pat", policies=("authors", "draft"))
    body = api.PolicyRequest(policy="draft", document=ANYTHING)
    with pytest.raises(Conflict, match="attached meanwhile"):
        await api.put_policy(body, request(reader, RacingLog(log, attach)), PAT, if_none_match=None)
    assert reader.policy("draft")["document"] == {"Statement": []}  # type: ignore[index]
    # Sent again, the API sees the attach and checks iam:AttachPolicy, which pat lacks.
    with pytest.raises(Forbidden, match="iam:AttachPolicy"):
        await api.put_policy(body, request(reader, RacingLog(log, attach)), PAT, if_none_match=None)


async def test_a_policy_attached_between_the_check_and_the_delete_is_not_deleted() -> None:
    log, reader = await store()
    attach = c.PutUser(at_ms=5, name="pat", policies=("authors", "no-dags"))
    with pytest.raises(Conflict, match="attached meanwhile"):
        await api.delete_policy("no-dags", request(reader, RacingLog(log, attach)), PAT)
    assert reader.policy("no-dags") is not None
    assert reader.user("pat")["policies"] == ["authors", "no-dags"]  # type: ignore[index]


async def test_a_write_the_caller_was_checked_for_or_that_reaches_no_one_goes_through() -> None:
    log, reader = await store()
    await log.propose(c.PutUser(at_ms=2, name="ann", password_hash="h", policies=("draft",)))
    # Checked (an admin's write): no fence, whatever was attached meanwhile.
    await log.propose(c.PutPolicy(at_ms=3, name="draft", document=NO_DAGS))
    # Unchecked but harmless: the document is the one held, or the policy is attached to nobody.
    await log.propose(c.PutPolicy(at_ms=4, name="draft", document=NO_DAGS, unchecked_attach=True))
    await log.propose(c.PutPolicy(at_ms=4, name="new", document=ANYTHING, unchecked_attach=True))
    await log.propose(c.DeleteIam(at_ms=5, what="policy", name="new", unchecked_attach=True))
    with pytest.raises(Conflict, match="attached meanwhile"):
        await log.propose(c.PutPolicy(at_ms=6, name="draft", document=ANYTHING, unchecked_attach=True))
    # Attached through a group counts as well.
    await log.propose(c.PutGroup(at_ms=7, name="g", policies=("no-dags",)))
    with pytest.raises(Conflict, match="attached meanwhile"):
        await log.propose(c.DeleteIam(at_ms=8, what="policy", name="no-dags", unchecked_attach=True))
    assert reader.policy("draft")["document"] == NO_DAGS  # type: ignore[index]


async def test_a_create_only_write_never_replaces_a_policy_made_meanwhile() -> None:
    """``If-None-Match: *`` is decided when applied: a policy of that name created between
    the API's look and the entry is not replaced."""
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    await log.propose(c.PutPolicy(at_ms=1, name="p", document=ANYTHING, create_only=True))
    with pytest.raises(Conflict, match="'p' already exists"):
        await log.propose(c.PutPolicy(at_ms=2, name="p", document=NO_DAGS, create_only=True))
    assert StateReader(kv).policy("p")["document"] == ANYTHING  # type: ignore[index]
    await log.propose(c.PutPolicy(at_ms=3, name="p", document=NO_DAGS))  # a replace says so
    assert StateReader(kv).policy("p")["document"] == NO_DAGS  # type: ignore[index]
