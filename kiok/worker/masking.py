"""Secret masking: every connection value a run received is replaced by ``***`` in what
leaves the worker (task output, error messages).

Values shorter than ``MIN_MASKED`` are not masked: masking every "1" or "on" would shred
the logs and protect nothing. Output is masked in batches: ``Masker.mask_batch`` masks every
whole secret first and only then keeps back a trailing piece that could be the start of a
secret the next write completes, so no cut can fall inside a secret.

What masking cannot catch: a secret the task transforms before printing it (base64, hex,
URL-encoding, reversed, one character per line, split across stdout and a file). Masking
is a safety net for accidents, not a boundary against a task that means to leak.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MIN_MASKED = 3
MASK = b"***"


def _as_printed(secret: str) -> set[str]:
    """The secret and the forms kiok's own placement of it can turn it into: placed in a
    python script, ``\r\n`` and a lone ``\r`` read as ``\n`` (Python's source newlines), so
    a PEM key pasted with CRLF endings prints without them (found by the security probe of
    session 27: printed whole and unmasked)."""
    return {secret, secret.replace("\r\n", "\n").replace("\r", "\n")}


class Masker:
    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for s in secrets for form in _as_printed(s)}
        values = sorted({s.encode() for s in forms if len(s) >= MIN_MASKED}, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(re.escape(v) for v in values)) if values else None
        self._values = values
        #: Every proper prefix of a secret: what a batch may end with and must keep back.
        self._prefixes = {v[:n] for v in values for n in range(1, len(v))}
        self._longest = max((len(v) for v in values), default=1)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, data: bytes) -> bytes:
        return self._pattern.sub(MASK, data) if self._pattern is not None else data

    def mask_batch(self, data: bytes, *, final: bool) -> tuple[bytes, bytes]:
        """(what may leave now, masked; what to keep for the next batch, raw). Whole secrets
        are masked first; then, unless ``final``, the shortest-starting tail after the last
        masked secret that is the beginning of some secret is kept back whole."""
        if self._pattern is None:
            return data, b""
        pieces: list[bytes] = []
        pos = 0
        for m in self._pattern.finditer(data):
            pieces.append(data[pos : m.start()])
            pieces.append(MASK)
            pos = m.end()
        keep_from = len(data)
        if not final:
            for start in range(max(pos, len(data) - self._longest + 1), len(data)):
                if data[start:] in self._prefixes:
                    keep_from = start
                    break
        pieces.append(data[pos:keep_from])
        return b"".join(pieces), data[keep_from:]

    def mask_fragment(self, data: bytes) -> bytes:
        """Mask ``data`` that was cut from a longer stream at both ends (an output tail):
        a leading end or trailing start of a secret is masked as well."""
        if self._pattern is None:
            return data
        masked, kept = self.mask_batch(data, final=False)
        if kept:
            masked += MASK
        for value in self._values:
            for n in range(len(value) - 1, 0, -1):
                if masked.startswith(value[-n:]):
                    return MASK + masked[n:]
        return masked

    def mask_text(self, text: str | None) -> str | None:
        return None if text is None else self.mask_str(text)

    def mask_str(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self.mask(text.encode()).decode(errors="replace")
