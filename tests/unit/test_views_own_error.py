"""What a caller without ``logs:Read`` reads of a task's ``error``: kiok's own part, never what
the task printed or its server sent (``kiok.master.views.own_error``)."""

from __future__ import annotations

import pytest

from kiok.master.views import own_error


@pytest.mark.parametrize(
    ("error", "own"),
    [
        ("ValueError: db password hunter2 (exit code 3)", "exit code 3"),
        ("exit code 3", "exit code 3"),
        ("timed out after 2s", "timed out after 2s"),
        ("HTTP 500 from GET http://h/a", "HTTP 500 from GET http://h/a"),
        ("ConnectError: All connection attempts failed (GET http://h/a)", None),
        (
            "illegal status line: bytearray(b'ssn=123-45-6789') (RemoteProtocolError from GET http://h/a)",
            "RemoteProtocolError from GET http://h/a",
        ),
        # What the server sent may itself end like kiok's part: the last one is kiok's.
        (
            "x (Fake from GET y) ssn=1 (RemoteProtocolError from POST http://h/a?q=1)",
            "RemoteProtocolError from POST http://h/a?q=1",
        ),
        (
            "line one\nssn=1 (DecodingError from GET http://h/a%20(b)",
            "DecodingError from GET http://h/a%20(b",
        ),
        # kiok writes a URL's whitespace escaped: one ending like kiok's part cuts nothing.
        ("HTTP 503 from GET http://h/a?n=%20(Succeeded%20from%20GET%20c)", None),
        # A python task printing kiok's http form: its exit code is kiok's part.
        ("x (RemoteProtocolError from GET y) (exit code 1)", "exit code 1"),
    ],
)
def test_kiok_s_part_is_kept_the_quote_cut(error: str, own: str | None) -> None:
    assert own_error(error) == (error if own is None else own)
