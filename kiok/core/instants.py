"""Reading a point in time a caller typed into a query (``since``/``until`` of a run list),
or on the command line, where ``1h`` means an hour ago."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from kiok.dag.durations import parse_duration_ms
from kiok.errors import DagValidationError, InvalidInput


def parse_instant_ms(text: str, field: str) -> int:
    """Epoch milliseconds of an ISO-8601 time (``2024-05-01T12:00:00Z``; without an offset:
    UTC), a date (``2024-05-01``: its midnight UTC) or a whole number of epoch
    milliseconds. Anything else is refused naming ``field``."""
    value = text.strip()
    if value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(
            f"{field}: {text!r} is not a time (ISO-8601 like 2024-05-01T12:00:00Z, a date, "
            "or epoch milliseconds)"
        ) from None
    return int(moment.timestamp() * 1000)


#: ``30m``, ``1h``, ``2d``, ``1.5h``: a time that long before now (``kiok runs list --since 1h``).
_RELATIVE = re.compile(r"^\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\Z")


def parse_time_bound(text: str, field: str, now_ms: int) -> int:
    """Epoch milliseconds of a bound a person typed: a relative time (``1h``, ``2d``: that long
    before ``now_ms``, in the DAG duration grammar) or anything ``parse_instant_ms`` reads.
    ``InvalidInput`` names ``field`` and every accepted form."""
    value = text.strip()
    try:
        if _RELATIVE.match(value):
            return now_ms - parse_duration_ms(value, field)
        return parse_instant_ms(value, field)
    except (InvalidInput, DagValidationError):
        raise InvalidInput(
            f"{field}: {text!r} is not a time: use a relative time (30m, 1h, 2d), an ISO-8601 "
            "time (2024-05-01T12:00:00Z), a date (2024-05-01) or epoch milliseconds"
        ) from None
