"""Secret masking: every connection value a run received is replaced by ``***`` in what
leaves the worker (task output, error messages).

Values shorter than ``MIN_MASKED`` are not masked: masking every "1" or "on" would shred
the logs and protect nothing. Output is masked in batches, so ``Masker.hold_back`` says how
many trailing bytes a batch must keep for the next one: a secret split across two batches
is still caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MIN_MASKED = 3
MASK = b"***"


class Masker:
    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s.encode() for s in secrets if len(s) >= MIN_MASKED}, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(re.escape(v) for v in values)) if values else None
        self.hold_back = max((len(v) for v in values), default=1) - 1

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, data: bytes) -> bytes:
        return self._pattern.sub(MASK, data) if self._pattern is not None else data

    def mask_text(self, text: str | None) -> str | None:
        if text is None or self._pattern is None:
            return text
        return self.mask(text.encode()).decode(errors="replace")
