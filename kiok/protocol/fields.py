"""Readers of one field of a wire map, each checking type, range and length and raising
``ProtocolError`` that names the message kind and the field. Pure: they only look at the map.

Missing optional fields take their default; fields a reader is not asked for are ignored,
so a newer peer may add fields without breaking an older one (forward compatibility).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kiok.core.states import TaskState
from kiok.errors import ProtocolError

#: Integers travel as msgpack int64/uint64; anything outside signed 64 bits is refused.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
#: Longest identifier (run, task, DAG, worker id, connection name, label) accepted.
ID_MAX = 1024
#: Longest free text (reasons, URLs, credentials) accepted.
TEXT_MAX = 64 * 1024
#: Most items in one list or map of a message (the frame size bounds the bytes anyway).
ITEMS_MAX = 100_000

_MISSING = object()


def _bad(kind: str, name: str, what: str) -> ProtocolError:
    return ProtocolError(f"{kind}: field {name!r} {what}")


def integer(m: Mapping[str, Any], kind: str, name: str, *, lo: int = INT_MIN, hi: int = INT_MAX) -> int:
    """A required integer in [lo, hi] (a bool is not an integer here)."""
    value = m.get(name, _MISSING)
    if value is _MISSING:
        raise _bad(kind, name, "is missing")
    return _check_int(value, kind, name, lo, hi)


def opt_integer(
    m: Mapping[str, Any],
    kind: str,
    name: str,
    default: int | None = None,
    *,
    lo: int = INT_MIN,
    hi: int = INT_MAX,
) -> int | None:
    """An optional integer; absent or nil gives ``default``."""
    value = m.get(name)
    return default if value is None else _check_int(value, kind, name, lo, hi)


def _check_int(value: object, kind: str, name: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(kind, name, f"must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise _bad(kind, name, f"must be from {lo} to {hi}")
    return value


def text(m: Mapping[str, Any], kind: str, name: str, *, max_len: int = ID_MAX, non_empty: bool = True) -> str:
    """A required string of at most ``max_len`` characters (non-empty unless told)."""
    value = m.get(name, _MISSING)
    if value is _MISSING:
        raise _bad(kind, name, "is missing")
    return check_text(value, kind, name, max_len=max_len, non_empty=non_empty)


def opt_text(m: Mapping[str, Any], kind: str, name: str, *, max_len: int = TEXT_MAX) -> str | None:
    """An optional string; absent or nil gives None."""
    value = m.get(name)
    return None if value is None else check_text(value, kind, name, max_len=max_len, non_empty=False)


def check_text(value: object, kind: str, name: str, *, max_len: int = ID_MAX, non_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise _bad(kind, name, f"must be a string, not {type(value).__name__}")
    if len(value) > max_len:
        raise _bad(kind, name, f"is longer than {max_len} characters")
    if non_empty and not value:
        raise _bad(kind, name, "is empty")
    return value


def flag(m: Mapping[str, Any], kind: str, name: str) -> bool:
    """An optional boolean, false when absent or nil."""
    value = m.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(kind, name, f"must be true or false, not {type(value).__name__}")
    return value


def blob(m: Mapping[str, Any], kind: str, name: str) -> bytes:
    """Required binary data (its size is bounded by the frame limit)."""
    value = m.get(name)
    if not isinstance(value, bytes):
        raise _bad(kind, name, "missing or not binary")
    return value


def items(m: Mapping[str, Any], kind: str, name: str, *, required: bool = False) -> list[Any]:
    """A list (absent or nil: empty unless ``required``), of at most ``ITEMS_MAX`` items."""
    value = m.get(name)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise _bad(kind, name, "must be a list")
    if len(value) > ITEMS_MAX:
        raise _bad(kind, name, f"has more than {ITEMS_MAX} items")
    return value


def texts(m: Mapping[str, Any], kind: str, name: str) -> tuple[str, ...]:
    """An optional list of identifiers."""
    return tuple(check_text(x, kind, name, non_empty=False) for x in items(m, kind, name))


def mapping(m: Mapping[str, Any], kind: str, name: str, *, required: bool = True) -> dict[str, Any]:
    """A map with string keys (absent or nil: empty unless ``required``)."""
    value = m.get(name)
    if value is None and not required:
        return {}
    return check_mapping(value, kind, name)


def check_mapping(value: object, kind: str, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(kind, name, "must be a map")
    if len(value) > ITEMS_MAX:
        raise _bad(kind, name, f"has more than {ITEMS_MAX} entries")
    for key in value:
        check_text(key, kind, f"{name} key", non_empty=False)
    return value


def records(
    m: Mapping[str, Any], kind: str, name: str, *, required: bool = True
) -> dict[str, dict[str, Any]]:
    """A map of identifier to map (task records by task id, connection values by name)."""
    out = mapping(m, kind, name, required=required)
    for key, value in out.items():
        check_mapping(value, kind, f"{name}[{key!r}]")
    return out


#: A task record's optional integer fields (``kiok.core.states.TaskRecord.to_dict``) and
#: their ranges.
#: An attempt number is small (retries, failovers and re-runs each add one): a driver's
#: record naming one near the 64-bit limit would make the next attempt unencodable.
ATTEMPT_MAX = 2**31 - 1
#: The task states a record may name.
_TASK_STATES = frozenset(s.value for s in TaskState)

_RECORD_INTEGERS = (
    ("attempt", 0, ATTEMPT_MAX),
    ("startedMs", 0, INT_MAX),
    ("endedMs", 0, INT_MAX),
    ("retryAtMs", 0, INT_MAX),
    ("exitCode", -(2**31), 2**31 - 1),
)


def task_records(m: Mapping[str, Any], kind: str, name: str) -> dict[str, dict[str, Any]]:
    """Task records by task id, each field of the type a task record has (a state name,
    integers in range, texts). What a driver reports is stored and shown as it is: a record
    that breaks one is refused here, never stored to fail every read of its run later."""
    out = records(m, kind, name)
    for tid, record in out.items():
        where = f"{name}[{tid!r}]"
        if check_text(record.get("state"), kind, f"{where}.state") not in _TASK_STATES:
            raise _bad(kind, f"{where}.state", "is not a task state")
        for field, lo, hi in _RECORD_INTEGERS:
            value = record.get(field)
            if value is not None:
                _check_int(value, kind, f"{where}.{field}", lo, hi)
        for field, max_len in (("error", TEXT_MAX), ("worker", ID_MAX)):
            value = record.get(field)
            if value is not None:
                check_text(value, kind, f"{where}.{field}", max_len=max_len, non_empty=False)
    return out
