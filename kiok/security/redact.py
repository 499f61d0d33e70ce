"""What an error about a request kiok built from a DAG's placeholders may show.

Masking replaces whole connection values; an error that quotes a *piece* of one goes
through. httpx's URL errors do: ``Invalid port: 'Sup3rS3cretPw'`` for a URL
``http://svc:${conn.h1.pw}@host/`` whose password holds a ``#`` (found by the security
probe of session 27, in an http task's error and in a webhook's delivery error). Such an
error keeps what kind of problem it is and drops what it quotes, and all after it.
"""

from __future__ import annotations

import re

_QUOTE = re.compile("['\"]")


def unquoted(message: str) -> str:
    """``message`` up to the first quote, then ``'…'``: nothing after it is shown (a quoted
    piece may hold quotes of its own, escaped: ``'Ab\\'c"De'``, found by the re-probe)."""
    first = _QUOTE.search(message)
    return message if first is None else message[: first.start()] + "'…'"


__all__ = ["unquoted"]
