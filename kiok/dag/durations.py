"""Duration values in DAG documents: ``"500ms"``, ``"10s"``, ``"1.5h"``, or a plain int of ms.

One grammar for every duration field (timeouts, retry delays) so a DAG author learns it once;
the kiok-style ``...Ms`` fields go through the same parser, where a plain int is the norm.
"""

from __future__ import annotations

import re
from decimal import Decimal

from kiok.errors import DagValidationError

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
#: ASCII only: ``\d`` alone would take any Unicode digit (``'١٢s'`` read as 12 seconds).
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)\s*\Z", re.ASCII)
#: The longest duration kiok accepts (timeouts, retry delays): longer ones are typos, and
#: past the platform's time range they would break the timers that enforce them.
MAX_DURATION_MS = 365 * _UNIT_MS["d"]
_FORMS = "a string <number><unit> with unit ms, s, m, h or d (e.g. '500ms', '10s', '1.5h') or an int of ms"


def parse_duration_ms(value: object, field: str) -> int:
    """Milliseconds for ``value``; ``DagValidationError`` naming ``field`` and the accepted forms.

    A fractional result (``'0.5ms'``) is refused rather than rounded: the scheduler works in
    whole milliseconds and silent rounding would hide a typo such as ``'0.001s'``. Longer
    than ``MAX_DURATION_MS`` (365 days) is refused.
    """
    ms = _parse(value, field)
    if ms > MAX_DURATION_MS:
        raise DagValidationError(
            f"duration {_short(value)} is longer than the maximum of 365 days ({MAX_DURATION_MS}ms)",
            field=field,
        )
    return ms


def _parse(value: object, field: str) -> int:
    if isinstance(value, bool):  # bool is an int subclass; 'true' is never a duration
        raise DagValidationError(f"expected a duration, got {value!r}; use {_FORMS}", field=field)
    if isinstance(value, int):
        if value < 0:
            raise DagValidationError(f"duration must not be negative, got {value}", field=field)
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            ms = Decimal(m.group(1)) * _UNIT_MS[m.group(2)]
            if ms != ms.to_integral_value():
                raise DagValidationError(f"duration {value!r} is not a whole number of ms", field=field)
            return int(ms)
    raise DagValidationError(f"invalid duration {_short(value)}; use {_FORMS}", field=field)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:30] + "..." + text[-6:]
