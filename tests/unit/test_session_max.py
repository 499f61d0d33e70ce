"""A session — a login and the refreshes after it — ends ``kiok.admin.session.max.ms`` after
the login: refreshing keeps it going until then, never past it (a stolen refresh token,
refreshed every few minutes, would otherwise stay good for ever)."""

from __future__ import annotations

import pytest

from kiok.errors import Unauthenticated
from kiok.master.auth import AuthService
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

MIN = 60_000
DAY = 24 * 60 * MIN


async def test_refreshing_never_takes_a_session_past_its_maximum() -> None:
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    reader = StateReader(kv)
    now = [1_700_000_000_000]
    auth = AuthService(
        log,
        reader,
        lambda: now[0],
        access_ttl_ms=5 * MIN,
        refresh_ttl_ms=DAY,
        session_max_ms=7 * DAY,
        max_failures=5,
        window_ms=MIN,
    )
    await log.propose(
        c.Bootstrap(
            at_ms=1, admin_user="ada", password_hash="h", require_password_change=False, signing_key=b"k" * 32
        )
    )
    record = reader.user("ada")
    assert record is not None
    login_at = now[0]
    pair = auth._tokens("ada", record)  # what a login hands out
    # Refreshed twice a day for a week: each refresh works and the access tokens with it.
    while now[0] + 12 * 60 * MIN < login_at + 7 * DAY:
        now[0] += 12 * 60 * MIN
        pair = await auth.refresh(pair.refresh)
        assert auth.authenticate(f"Bearer {pair.access}").user == "ada"
    # The week is up: the last refresh token and access token stop with the session...
    now[0] = login_at + 7 * DAY
    with pytest.raises(Unauthenticated, match="expired"):
        await auth.refresh(pair.refresh)
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate(f"Bearer {pair.access}")
    # ...and a new login starts a new one.
    fresh = auth._tokens("ada", record)
    assert auth.authenticate(f"Bearer {fresh.access}").user == "ada"
    assert (await auth.refresh(fresh.refresh)).access
