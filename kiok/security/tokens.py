"""JWT access and refresh tokens (HS256, signed with the cluster's key from the store).

A token names its user and the moment that user's password last changed (``pv``): after a
password change every older token stops working. A token issued while a password change is
required carries ``pwc`` and can do nothing but change the password.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from kiok.errors import Unauthenticated

ALGORITHM = "HS256"


@dataclass(frozen=True)
class TokenClaims:
    user: str
    kind: str  # "access" | "refresh"
    password_version: int
    password_change_required: bool


class TokenIssuer:
    def __init__(self, key: bytes, *, access_ttl_ms: int, refresh_ttl_ms: int) -> None:
        self._key = key
        self._ttl = {"access": access_ttl_ms, "refresh": refresh_ttl_ms}

    def issue(self, claims: TokenClaims, now_ms: int) -> str:
        payload = {
            "sub": claims.user,
            "typ": claims.kind,
            "pv": claims.password_version,
            "pwc": claims.password_change_required,
            "iat": now_ms // 1000,
            "exp": (now_ms + self._ttl[claims.kind]) // 1000,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)

    def verify(self, token: str, kind: str, now_ms: int) -> TokenClaims:
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "typ", "exp"], "verify_exp": False},
            )
        except jwt.PyJWTError as e:
            raise Unauthenticated(f"invalid token: {e}") from None
        if payload.get("typ") != kind:
            raise Unauthenticated(f"expected an {kind} token")
        if int(payload["exp"]) * 1000 <= now_ms:
            raise Unauthenticated("token expired; log in again or refresh it")
        return TokenClaims(
            str(payload["sub"]), kind, int(payload.get("pv", 0)), bool(payload.get("pwc", False))
        )
