"""Reading a point in time a caller typed into a query (``since``/``until`` of a run list)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from kiok.errors import InvalidInput


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
