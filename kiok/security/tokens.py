"""JWT access and refresh tokens (HS256, signed with the cluster's key from the store).

A token names its user and the moment that user's password last changed (``pv``): after a
password change every older token stops working. A token issued while a password change is
required carries ``pwc`` and can do nothing but change the password. A session — a login and
the refreshes after it — ends ``session_max_ms`` after the login (``auth_time``, carried from
refresh token to refresh token): no token of it outlives that, however often it is refreshed,
so a stolen refresh token cannot be kept alive for good.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import jwt

from kiok.errors import Unauthenticated

ALGORITHM = "HS256"
#: Tokens whose signature this issuer checked, kept so that a client polling every 50 ms
#: (the UI, ``kiok runs status --wait``) does not pay a JWT decode and HMAC per request.
_VERIFIED_MAX = 1024


@dataclass(frozen=True)
class TokenClaims:
    user: str
    kind: str  # "access" | "refresh"
    password_version: int
    password_change_required: bool
    #: When the session began (its login, seconds since the epoch; 0: now). Not part of the
    #: token's identity as principals are cached by (``compare=False``).
    session_started_s: int = field(default=0, compare=False)


#: A session's longest life when the issuer is not told (``kiok.admin.session.max.ms``).
DEFAULT_SESSION_MAX_MS = 30 * 86_400_000


class TokenIssuer:
    def __init__(
        self,
        key: bytes,
        *,
        access_ttl_ms: int,
        refresh_ttl_ms: int,
        session_max_ms: int = DEFAULT_SESSION_MAX_MS,
    ) -> None:
        self._key = key
        self._ttl = {"access": access_ttl_ms, "refresh": refresh_ttl_ms}
        self._session_max_s = session_max_ms // 1000
        self._verified: OrderedDict[str, tuple[object, int, TokenClaims]] = OrderedDict()

    def issue(self, claims: TokenClaims, now_ms: int) -> str:
        started = claims.session_started_s or now_ms // 1000
        payload = {
            "sub": claims.user,
            "typ": claims.kind,
            "pv": claims.password_version,
            "pwc": claims.password_change_required,
            "iat": now_ms // 1000,
            "auth_time": started,
            "exp": min((now_ms + self._ttl[claims.kind]) // 1000, started + self._session_max_s),
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)

    def verify(self, token: str, kind: str, now_ms: int) -> TokenClaims:
        """The claims of ``token``, an unexpired token of ``kind`` signed with this issuer's
        key; ``Unauthenticated`` otherwise. Expiry and kind are checked on every call; the
        signature once per token (a token is immutable and the key is this issuer's)."""
        known = self._verified.get(token)
        if known is None:
            known = self._decode(token)
            self._verified[token] = known
            if len(self._verified) > _VERIFIED_MAX:
                self._verified.popitem(last=False)
        payload_kind, exp_s, claims = known
        if payload_kind != kind:
            raise Unauthenticated(f"expected {'an' if kind == 'access' else 'a'} {kind} token")
        if exp_s * 1000 <= now_ms:
            raise Unauthenticated("token expired; log in again or refresh it")
        return claims

    def _decode(self, token: str) -> tuple[object, int, TokenClaims]:
        """(its ``typ``, its ``exp`` in seconds, its claims), once its signature is checked."""
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "typ", "exp"], "verify_exp": False},
            )
        except jwt.InvalidSignatureError:
            # Well formed, but not signed with this cluster's key: a restore renews the key
            # (every session from before it ends), or the token is another cluster's.
            raise Unauthenticated(
                "invalid token: not signed with this cluster's signing key, which a restore renews"
            ) from None
        except jwt.PyJWTError as e:
            raise Unauthenticated(f"invalid token: {e}") from None
        kind = payload.get("typ")
        claims = TokenClaims(
            str(payload["sub"]),
            str(kind),
            int(payload.get("pv", 0)),
            bool(payload.get("pwc", False)),
            int(payload.get("auth_time", payload.get("iat", 0))),  # older tokens: from their issue
        )
        return kind, int(payload["exp"]), claims
