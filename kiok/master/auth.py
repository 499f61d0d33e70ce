"""Authentication on the master: bootstrap, login, refresh, password change, and turning a
request's ``Authorization`` header into a ``Principal``.

Authorisation is a separate step (``authorize``) that every API route calls with its
action from ``kiok.security.actions``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from kiok.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Overloaded,
    PasswordChangeRequired,
    RateLimited,
    Unauthenticated,
)
from kiok.master.auth_cache import EpochCache, IamEpoch
from kiok.security.passwords import HashPool, password_problem
from kiok.security.policy import ADMINS_GROUP, ADMINS_POLICY, FULL_ACCESS
from kiok.security.ratelimit import FailureLimiter
from kiok.security.service_tokens import ServiceTokens
from kiok.security.tokens import DEFAULT_SESSION_MAX_MS, TokenClaims, TokenIssuer
from kiok.store import commands as c
from kiok.store.commandlog import CommandLog
from kiok.store.reader import StateReader, access_key_is_current

DEFAULT_ADMIN_PASSWORD = "admin"
#: The principal a service bearer token acts as (member of ``admins``).
SERVICE_PRINCIPAL = "service"


@dataclass(frozen=True)
class Principal:
    user: str
    groups: tuple[str, ...]
    password_change_required: bool


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    password_change_required: bool

    def to_json(self) -> dict[str, object]:
        return {
            "accessToken": self.access,
            "refreshToken": self.refresh,
            "requirePasswordChange": self.password_change_required,
            "tokenType": "Bearer",
        }


class AuthService:
    def __init__(
        self,
        log: CommandLog,
        reader: StateReader,
        clock_ms: Callable[[], int],
        *,
        access_ttl_ms: int,
        refresh_ttl_ms: int,
        session_max_ms: int = DEFAULT_SESSION_MAX_MS,
        max_failures: int,
        window_ms: int,
        max_failures_per_address: int = 50,
        hash_concurrency: int = 0,
        hash_queue_max: int = 64,
        epoch: IamEpoch | None = None,
    ) -> None:
        """``epoch``: the master's IAM epoch; with it, what a token or an access key resolves
        to is kept until the next IAM change (``kiok.master.auth_cache``)."""
        self._log = log
        self._reader = reader
        self._clock = clock_ms
        self._ttls = (access_ttl_ms, refresh_ttl_ms, session_max_ms)
        self._issuer: TokenIssuer | None = None
        #: Moves on every ``forget_signing_key`` (from any thread): an issuer made from a key
        #: read before it moved is used once, never kept.
        self._forgets = itertools.count(1)
        self._forgotten = 0
        #: Failed logins per (user, address), and per address whatever the user names.
        self._limiter = FailureLimiter(max_failures, window_ms)
        self._address_limiter = FailureLimiter(max_failures_per_address, window_ms)
        #: Every password hash and check runs here, off the event loop (bounded: past
        #: ``hash_queue_max`` waiting, a request is refused with ``Overloaded``).
        self.hashes = HashPool(hash_concurrency, hash_queue_max)
        self._dummy_hash: asyncio.Future[str] | None = None
        #: Counting a user's access keys and adding one, one request at a time.
        self._access_key_lock = asyncio.Lock()
        #: Where logins and password changes are recorded (the master's audit log).
        self.audit: Callable[..., None] = lambda *a, **k: None
        #: Service-to-service bearer tokens (a JWT always has dots; these have none).
        self.service_tokens: ServiceTokens | None = None
        #: The principal of a token's claims and of an access key, until an IAM change.
        self._principals: EpochCache[TokenClaims | str, Principal] | None = (
            None if epoch is None else EpochCache(epoch)
        )

    async def bootstrap(self, admin_user: str, admin_password: str) -> bool:
        """Create the admin and the signing key on the very first bootstrap only. Never
        again afterwards, whatever the IAM store holds (the marker decides)."""
        if self._reader.bootstrapped():
            return False
        password = admin_password or DEFAULT_ADMIN_PASSWORD
        result = await self._log.propose(
            c.Bootstrap(
                at_ms=self._clock(),
                admin_user=admin_user,
                password_hash=await self.hashes.hash(password, shed=False),
                require_password_change=not admin_password,
                signing_key=secrets.token_bytes(32),
            )
        )
        return bool(result["bootstrapped"])

    async def seal_signing_key(self) -> bool:
        """Retire a plaintext signing key left by an older kiok (``c.SealSigningKey``): a new
        random key replaces it, stored encrypted. Whether this call did it (a no-op on a store
        without one; two masters racing seal once: the later command finds nothing to do)."""
        if not self._reader.has_legacy_signing_key():
            return False
        result = await self._log.propose(
            c.SealSigningKey(at_ms=self._clock(), signing_key=secrets.token_bytes(32))
        )
        return bool(result["sealed"])

    def forget_signing_key(self) -> None:
        """The store's signing key changed under this cache (a restore, a snapshot install,
        ``SealSigningKey``): read it again. Safe from the thread that applies entries."""
        self._forgotten = next(self._forgets)
        self._issuer = None

    @property
    def issuer(self) -> TokenIssuer:
        issuer = self._issuer
        if issuer is None:
            forgotten = self._forgotten
            key = self._reader.signing_key()
            if key is None:
                raise Unauthenticated("the cluster is not bootstrapped yet")
            access, refresh, session = self._ttls
            issuer = TokenIssuer(key, access_ttl_ms=access, refresh_ttl_ms=refresh, session_max_ms=session)
            if forgotten == self._forgotten:  # else the key may have changed since it was read
                self._issuer = issuer
        return issuer

    def _tokens(self, user: str, record: dict[str, object], session_started_s: int = 0) -> TokenPair:
        """A new pair: of a new session (a login, a password change), or of the one a
        refresh token began at ``session_started_s``."""
        now = self._clock()
        pv = int(record.get("passwordChangedMs") or 0)  # type: ignore[call-overload]
        pwc = bool(record.get("requirePasswordChange"))
        return TokenPair(
            self.issuer.issue(TokenClaims(user, "access", pv, pwc, session_started_s), now),
            self.issuer.issue(TokenClaims(user, "refresh", pv, pwc, session_started_s), now),
            pwc,
        )

    def _begin_password_check(self, user: str, address: str, now: int) -> str:
        """Admit one check of ``user``'s password from ``address`` (a login, or the old
        password of a change: one limit for both), or raise RateLimited; returns its key.
        Counted as failed until ``_password_checked``, so concurrent attempts cannot all slip
        past the limits while the first ones are still being checked."""
        key = f"{user}\x00{address}"
        wait_ms = max(
            self._limiter.retry_after_ms(key, now), self._address_limiter.retry_after_ms(address, now)
        )
        if wait_ms:
            raise RateLimited(
                f"too many failed password checks; try again in {wait_ms / 1000:.0f}s", wait_ms / 1000
            )
        self._limiter.failed(key, now)
        self._address_limiter.failed(address, now)
        return key

    def _password_checked(self, key: str, address: str, now: int) -> None:
        self._limiter.succeeded(key)
        self._address_limiter.forgive(address, now)

    async def _check_password(self, key: str, address: str, now: int, stored: str, password: str) -> bool:
        """``stored`` checked against ``password``. A check the hash pool sheds (Overloaded)
        was never made: it is taken back from both counts, or a flood from elsewhere would
        lock out the users it crowds out."""
        try:
            return await self.hashes.verify(stored, password)
        except Overloaded:
            self._limiter.forgive(key, now)
            self._address_limiter.forgive(address, now)
            raise

    async def login(self, user: str, password: str, address: str) -> TokenPair:
        now = self._clock()
        key = self._begin_password_check(user, address, now)
        record = self._reader.user(user)
        # Hash even for an unknown user so timing does not reveal which users exist.
        stored = record["passwordHash"] if record else await self._dummy()
        ok = await self._check_password(key, address, now, stored, password) and record is not None
        if not ok or record is None:
            self.audit(user, "auth:Login", user, address, success=False, detail="wrong user or password")
            raise Unauthenticated("wrong user or password")
        self._password_checked(key, address, now)
        self.audit(user, "auth:Login", user, address)
        return self._tokens(user, record)

    async def _dummy(self) -> str:
        """A hash of a random password, checked for unknown users (same cost as a real one);
        made once, however many logins ask for it at the same time (never shed: it is one
        hash whatever the flood, and made again if it failed)."""
        made = self._dummy_hash
        if made is None or (made.done() and (made.cancelled() or made.exception() is not None)):
            made = asyncio.ensure_future(self.hashes.hash(secrets.token_hex(16), shed=False))
            self._dummy_hash = made
        return await asyncio.shield(made)

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = self.issuer.verify(refresh_token, "refresh", self._clock())
        record = self._current_user(claims)
        return self._tokens(claims.user, record, claims.session_started_s)

    async def change_password(self, principal: Principal, old: str, new: str, address: str) -> TokenPair:
        """Limited like a login: a token is no oracle for its user's password."""
        now = self._clock()
        key = self._begin_password_check(principal.user, address, now)
        record = self._reader.user(principal.user)
        if record is None or not await self._check_password(key, address, now, record["passwordHash"], old):
            self.audit(
                principal.user,
                "auth:ChangePassword",
                principal.user,
                address,
                success=False,
                detail="wrong old password",
            )
            raise Unauthenticated("the old password is wrong")
        self._password_checked(key, address, now)
        problem = password_problem(new, user=principal.user, old=old)
        if problem:
            raise InvalidInput(problem)
        await self._log.propose(
            c.SetPassword(at_ms=self._clock(), user=principal.user, password_hash=await self.hashes.hash(new))
        )
        self.audit(principal.user, "auth:ChangePassword", principal.user, address)
        updated = self._reader.user(principal.user)
        assert updated is not None
        return self._tokens(principal.user, updated)

    async def confirm_password(self, user: str, password: str, address: str, action: str) -> None:
        """Re-authentication for ``action`` (sudo mode): ``password`` must be ``user``'s current
        one, checked and limited as a login (one count for both), so a stolen token is no
        oracle for it either. A wrong one is ``Forbidden``, not ``Unauthenticated``: the
        caller's session is valid, and a 401 would end it in the UI."""
        now = self._clock()
        key = self._begin_password_check(user, address, now)
        record = self._reader.user(user)
        if record is None or not await self._check_password(
            key, address, now, record["passwordHash"], password
        ):
            self.audit(user, action, user, address, success=False, detail="wrong password")
            raise Forbidden(f"{action}: wrong password (the field 'password' must be your current password)")
        self._password_checked(key, address, now)

    async def reset_password(self, user: str, new: str | None) -> str:
        """Set ``user``'s password (generated when ``new`` is None) and force a change at the
        next login; returns the password. For the local admin socket only."""
        if self._reader.user(user) is None:
            raise NotFound(f"user {user!r} not found")
        password = new if new is not None else secrets.token_urlsafe(18)
        problem = password_problem(password, user=user)
        if problem:
            raise InvalidInput(problem)
        await self._log.propose(
            c.SetPassword(
                at_ms=self._clock(),
                user=user,
                password_hash=await self.hashes.hash(password, shed=False),  # the local operator
                require_password_change=True,
            )
        )
        self._limiter.succeeded_all(user)
        return password

    async def restore_admin(self, user: str) -> str:
        """Give ``user`` full access again, and no one else: the ``full-access`` policy that
        bootstrap made (made again when it was deleted; when its document was changed, a
        copy ``full-access-restored`` is made instead, so its other holders keep the rights
        they were given), attached to the user directly. Returns the policy's name. For the
        local admin socket only: the way back for an operator whose administrators all lost
        their rights (removed from ``admins``, the group deleted, its policy detached or
        rewritten). An explicit ``Deny`` in the user's other policies or its groups' still
        wins, as it does for anyone: ``denying`` names them."""
        record = self._reader.user(user)
        if record is None:
            raise NotFound(f"user {user!r} not found")
        name = ADMINS_POLICY
        for n in itertools.count(1):
            found = self._reader.policy(name)
            if found is None or found.get("document") == FULL_ACCESS:
                break
            name = f"{ADMINS_POLICY}-restored" + (f"-{n}" if n > 1 else "")
        at = self._clock()
        if found is None:  # fenced: refused should it be attached to anyone meanwhile
            await self._log.propose(
                c.PutPolicy(
                    at_ms=at, name=name, document=FULL_ACCESS, unchecked_attach=True, create_only=True
                )
            )
        policies = list(record.get("policies") or [])
        if name not in policies:
            groups = tuple(record.get("groups") or [])
            await self._log.propose(
                c.PutUser(
                    at_ms=at,
                    name=user,
                    groups=groups,
                    policies=(*policies, name),
                    expect_existing=True,
                    expect_groups=groups,
                    expect_policies=tuple(policies),
                )
            )
        return name

    def denying(self, user: str) -> list[str]:
        """The policies of ``user`` (its own and its groups') with a ``Deny`` statement."""
        record = self._reader.user(user) or {}
        names = list(record.get("policies") or [])
        for group in record.get("groups") or []:
            names += list((self._reader.group(group) or {}).get("policies") or [])
        found = []
        for name in dict.fromkeys(names):
            document = (self._reader.policy(name) or {}).get("document") or {}
            if any(
                st.get("Effect") == "Deny" for st in document.get("Statement") or [] if isinstance(st, dict)
            ):
                found.append(name)
        return found

    def _current_user(self, claims: TokenClaims) -> dict[str, object]:
        record = self._reader.user(claims.user)
        if record is None:
            raise Unauthenticated(f"user {claims.user!r} no longer exists")
        if int(record.get("passwordChangedMs") or 0) != claims.password_version:
            raise Unauthenticated("the password changed since this token was issued; log in again")
        return record

    def _cached(self, key: TokenClaims | str, compute: Callable[[], Principal]) -> Principal:
        return compute() if self._principals is None else self._principals.resolve(key, compute)

    def _access_key_principal(self, credential: str) -> Principal:
        key_id, _, secret = credential.partition(":")
        record = self._reader.access_key(key_id) if key_id and secret else None
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if record is None or not hmac.compare_digest(record["secretHash"], digest):
            raise Unauthenticated("invalid access key")
        user = self._reader.user(record["user"])
        if not access_key_is_current(record, user):
            raise Unauthenticated("invalid access key: its user no longer exists")
        assert user is not None
        if user.get("requirePasswordChange"):
            raise PasswordChangeRequired(
                f"access keys of {record['user']!r} work again once the user has changed the password"
            )
        return Principal(record["user"], tuple(str(g) for g in user.get("groups") or ()), False)

    def _token_principal(self, claims: TokenClaims) -> Principal:
        record = self._current_user(claims)
        groups = record.get("groups") or ()
        assert isinstance(groups, list | tuple)
        pwc = bool(record.get("requirePasswordChange"))
        return Principal(claims.user, tuple(str(g) for g in groups), pwc)

    async def create_access_key(self, user: str, *, max_keys: int | None = None) -> tuple[str, str]:
        """A new access key for ``user``: (id, secret). The secret is shown once, kept hashed.
        Conflict when ``user`` already holds ``max_keys`` live keys (counted and created one
        at a time, so concurrent requests cannot slip past the limit together)."""
        key_id = "AK" + secrets.token_hex(8).upper()
        secret = secrets.token_urlsafe(30)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        async with self._access_key_lock:
            if max_keys is not None and len(self._reader.access_keys(user)) >= max_keys:
                raise Conflict(
                    f"user {user!r} already holds {max_keys} access keys "
                    "(kiok.iam.access.keys.max.per.user): delete one first"
                )
            await self._log.propose(
                c.PutAccessKey(at_ms=self._clock(), key_id=key_id, user=user, secret_hash=digest)
            )
        return key_id, secret

    def authenticate(self, header: str | None, *, allow_password_change: bool = False) -> Principal:
        """The principal behind an ``Authorization`` header (``Bearer <jwt>`` or ``Token <jwt>``)."""
        if not header:
            raise Unauthenticated(
                "authentication required: send 'Authorization: Bearer <token>' (POST /api/v1/auth/login)"
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "accesskey":
            # The whole credential is the key: the same string carries the same secret.
            credential = token.strip()
            return self._cached(credential, lambda: self._access_key_principal(credential))
        if scheme.lower() not in ("bearer", "token"):
            raise Unauthenticated(
                "unsupported Authorization scheme; use 'Bearer <token>' or 'AccessKey <id>:<secret>'"
            )
        if not token.strip():
            raise Unauthenticated(f"the Authorization header has no token after {scheme!r}")
        if (
            self.service_tokens is not None
            and "." not in token
            and self.service_tokens.accepts(token.strip())
        ):
            return Principal(SERVICE_PRINCIPAL, (ADMINS_GROUP,), False)
        # Signature and expiry are checked on every request (the issuer keeps the signature's).
        claims = self.issuer.verify(token.strip(), "access", self._clock())
        principal = self._cached(claims, lambda: self._token_principal(claims))
        if principal.password_change_required and not allow_password_change:
            raise PasswordChangeRequired(
                "this account must change its password first: POST /api/v1/auth/change-password"
            )
        return principal
