"""``TokenIssuer.verify`` checks a token's signature once, but its expiry and kind on every
call: a cached token still expires, is still refused as the wrong kind, and a token signed
with another key (or altered) is refused however often it is sent."""

from __future__ import annotations

import pytest

from kiok.errors import Unauthenticated
from kiok.security.tokens import TokenClaims, TokenIssuer

NOW = 1_700_000_000_000


def issuer(key: bytes = b"k" * 32) -> TokenIssuer:
    return TokenIssuer(key, access_ttl_ms=60_000, refresh_ttl_ms=600_000)


def test_a_verified_token_still_expires_and_keeps_its_kind() -> None:
    tokens = issuer()
    token = tokens.issue(TokenClaims("ada", "access", 7, False), NOW)
    for _ in range(2):  # the second call is answered from what the first verified
        assert tokens.verify(token, "access", NOW + 1_000) == TokenClaims("ada", "access", 7, False)
        with pytest.raises(Unauthenticated, match=r"^expected a refresh token$"):
            tokens.verify(token, "refresh", NOW + 1_000)
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(token, "access", NOW + 60_000)
    refresh = tokens.issue(TokenClaims("ada", "refresh", 7, False), NOW)
    with pytest.raises(Unauthenticated, match=r"^expected an access token$"):
        tokens.verify(refresh, "access", NOW + 1_000)


def test_a_token_not_signed_with_the_key_is_refused_every_time() -> None:
    token = issuer(b"x" * 32).issue(TokenClaims("ada", "access", 0, False), NOW)
    tokens = issuer()
    for candidate in (token, token, token[:-2] + "AA"):
        with pytest.raises(Unauthenticated, match="invalid token"):
            tokens.verify(candidate, "access", NOW)


def test_a_token_signed_with_another_key_is_refused_saying_so_without_jargon() -> None:
    """After a restore the cluster signs with a new key: a token from before is refused with
    a message a user can act on, not the JWT library's words."""
    token = issuer(b"x" * 32).issue(TokenClaims("ada", "refresh", 0, False), NOW)
    with pytest.raises(Unauthenticated) as refused:
        issuer().verify(token, "refresh", NOW)
    assert refused.value.message == (
        "invalid token: not signed with this cluster's signing key, which a restore renews"
    )
