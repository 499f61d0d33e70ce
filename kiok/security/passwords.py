"""Password hashing with argon2id (argon2-cffi's defaults: 64 MiB, 3 passes)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()

MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_problem(new: str, *, user: str, old: str | None = None) -> str | None:
    """Why ``new`` is not acceptable, or None."""
    if len(new) < MIN_PASSWORD_LENGTH:
        return f"the new password must have at least {MIN_PASSWORD_LENGTH} characters"
    if new == old:
        return "the new password must differ from the old one"
    if new.lower() in {"admin", "password", user.lower()}:
        return "the new password is too easy to guess"
    return None
