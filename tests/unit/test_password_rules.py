"""What a new password may not be: short, the old one, guessable, only spaces, or holding
characters no one types (a NUL, a newline), which the API took before."""

from __future__ import annotations

import pytest

from kiok.security.passwords import password_problem


@pytest.mark.parametrize(
    ("new", "problem"),
    [
        ("short", "at least"),
        (" " * 12, "only spaces"),
        ("\t" * 12, "only spaces"),
        ("\x00" * 8, "control characters"),
        ("good-pass\nword", "control characters"),
        ("good-pass\x7fword", "control characters"),
        ("alice", "at least"),
        ("Password", "too easy"),
    ],
)
def test_a_password_no_one_types_is_refused(new: str, problem: str) -> None:
    found = password_problem(new, user="alice")
    assert found is not None and problem in found, found


@pytest.mark.parametrize("new", ["correct horse battery", "  spaced  out  ", "ünïcödé-pässwörd"])
def test_printable_passwords_with_spaces_or_unicode_pass(new: str) -> None:
    assert password_problem(new, user="alice") is None


def test_a_password_no_login_could_send_or_hash_is_refused() -> None:
    """Over the API's 4096 characters, or not text (a lone surrogate half, as JSON's
    ``"\\ud800"`` reads): refused as a new password (the bootstrap administrator's too), and
    never a match at login (hashing it raised, not a refusal)."""
    from kiok.security.passwords import hash_password, verify_password

    assert (
        password_problem("Aa1" * 2000, user="admin") == "the new password must have at most 4096 characters"
    )
    assert password_problem("abc\udcffdefgh", user="admin") == "the new password must be text"
    assert verify_password(hash_password("Good-Passw0rd"), "Good\ud800Passw0rd") is False
