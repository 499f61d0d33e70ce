"""Creating an access key of one's own asks for the current password (re-authentication):
checked as a login is, against the same limits, so a stolen token can neither mint a key nor
guess the password through this door faster than through the login."""

from __future__ import annotations

from typing import Any

import pytest

from kiok.errors import Forbidden, RateLimited, Unauthenticated
from kiok.master.auth import AuthService
from kiok.security import actions
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

PW = "Reauth-Password-1"


async def service() -> tuple[AuthService, list[dict[str, Any]]]:
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    auth = AuthService(
        log,
        StateReader(kv),
        lambda: 1_700_000_000_000,
        access_ttl_ms=60_000,
        refresh_ttl_ms=600_000,
        max_failures=2,
        window_ms=60_000,
    )
    audited: list[dict[str, Any]] = []
    auth.audit = lambda actor, action, target, address, **kw: audited.append(
        {"actor": actor, "action": action, **kw}
    )
    boot = c.Bootstrap(
        at_ms=1,
        admin_user="vic",
        password_hash=await auth.hashes.hash(PW, shed=False),
        require_password_change=False,
        signing_key=b"k" * 32,
    )
    await log.propose(boot)
    return auth, audited


async def test_the_password_is_checked_audited_and_limited_as_a_login() -> None:
    auth, audited = await service()
    await auth.confirm_password("vic", PW, "10.0.0.1", actions.CREATE_ACCESS_KEY)
    with pytest.raises(Forbidden, match="wrong password"):  # not a 401: the session is fine
        await auth.confirm_password("vic", "guess-1", "10.0.0.1", actions.CREATE_ACCESS_KEY)
    assert audited[-1] == {
        "actor": "vic",
        "action": actions.CREATE_ACCESS_KEY,
        "success": False,
        "detail": "wrong password",
    }
    with pytest.raises(Unauthenticated):
        await auth.login("vic", "guess-2", "10.0.0.1")
    # Two failures, one through each door: both are closed now, even to the right password.
    with pytest.raises(RateLimited):
        await auth.confirm_password("vic", PW, "10.0.0.1", actions.CREATE_ACCESS_KEY)
    with pytest.raises(RateLimited):
        await auth.login("vic", PW, "10.0.0.1")
    await auth.confirm_password("vic", PW, "10.0.0.2", actions.CREATE_ACCESS_KEY)  # elsewhere
    auth.hashes.close()
