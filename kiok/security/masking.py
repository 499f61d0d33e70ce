"""Secret masking: every connection value a run received is replaced by ``***`` in what
leaves the worker (task output, error messages), and every connection value a notification
used in what its failure says (``kiok.master.notify``): one masker for both.

Values shorter than ``MIN_MASKED`` are not masked: masking every "1" or "on" would shred
the logs and protect nothing. Output is masked in batches: ``Masker.mask_batch`` cuts a
batch before a trailing piece that could be the start of a secret the next write completes
(and before any secret found across that cut), so no cut falls inside a secret and output
masked in batches reads as masked at once.

What masking cannot catch: a secret the task transforms before printing it (base64, hex,
URL-encoding, reversed, one character per line, split across stdout and a file). Masking
is a safety net for accidents, not a boundary against a task that means to leak.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import re
from collections.abc import Iterable

MIN_MASKED = 3
MASK = b"***"
#: How much of a secret's start is searched for when a batch may end inside it.
_ANCHOR = 64
#: Secrets (printed forms) longer than this are masked without the pattern (``Masker``).
_PATTERN_MAX = 1024


#: A backslash escape in a Python string literal (what ``\\<newline>`` and unknown ones,
#: kept as they are, aside).
_PY_ESCAPE = re.compile(
    r"\\(N\{[^}]*\}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|[0-7]{1,3}|[\\'\"abfnrtv\n])"
)
#: What a backslash escapes inside a shell's double quotes, and in an unquoted heredoc.
_SHELL_DOUBLE_QUOTED = re.compile(r'\\([\\"$`\n])')
_SHELL_HEREDOC = re.compile(r"\\([\\$`\n])")


def _as_printed(secret: str) -> set[str]:
    """The secret and the forms kiok's own placement of it (as it is, in a script, a header,
    a body) can turn it into, found by the security probes of session 27 printed whole and
    unmasked: in a python script ``\r\n`` and a lone ``\r`` read as ``\n`` (source
    newlines: a PEM key pasted with CRLF endings), inside a string literal its backslash
    escapes are read (``CORP\\new_svc`` prints a line break), and in an f-string ``{{``
    and ``}}`` too; in a shell script's double quotes or an unquoted heredoc a backslash
    before what it escapes is dropped; in a JSON string (an http task's headers and body)
    its escapes are read (``\\/`` is ``/``). What a shell's ``$`` expands to is not known
    here. A form that is no text (a lone surrogate half) is left out: it cannot be printed.
    And the value quoted, as a program prints what holds it (a dict, a list, ``json.dumps``)
    and as an exception quotes it (``repr``: its backslashes doubled, its quotes, line breaks
    and control characters escaped)."""
    lines = secret.replace("\r\n", "\n").replace("\r", "\n")
    python = _PY_ESCAPE.sub(_python_escape, lines)
    forms = {
        secret,
        lines,
        python,
        python.replace("{{", "{").replace("}}", "}"),
        _SHELL_DOUBLE_QUOTED.sub(_shell_escape, secret),
        _SHELL_HEREDOC.sub(_shell_escape, secret),
        *_quoted(secret),
    }
    with contextlib.suppress(ValueError):
        forms.add(json.loads(f'"{secret}"'))
    return {secret} | {form for form in (_text(f) for f in forms) if form is not None}


def _quoted(secret: str) -> set[str]:
    """``secret`` inside the quotes a program commonly prints a value in: ``json.dumps``
    (ASCII-only and not; and a JSON text holding it dumped again, as a queue message's body),
    and inside those ``repr`` and ``ascii`` put around it, around its UTF-8 bytes, and around
    either JSON form (``print(response.content)``); a shell's single quotes as ``bash -x``
    and ``shlex.quote`` write a ``'`` inside them (``'it'\\''s'``, ``'it'"'"'s'``), and a CSV
    field's doubled ``"`` (found by the security re-probe of session 28)."""
    as_json = {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms = as_json | {json.dumps(form)[1:-1] for form in as_json}
    for text in (secret, *as_json):
        raw = text.encode("utf-8", "surrogatepass")
        # Inside a longer text that holds a ``"`` too, ``repr`` quotes with ``'`` and
        # escapes the value's own as ``\'`` (found by the security probe of session 28).
        forms |= {repr(text)[1:-1], repr('"' + text)[2:-1], repr(raw)[2:-1], repr(b'"' + raw)[3:-1]}
        forms |= {ascii(text)[1:-1], ascii('"' + text)[2:-1]}
    forms |= {secret.replace("'", "'\\''"), secret.replace("'", "'\"'\"'"), secret.replace('"', '""')}
    return forms


def _python_escape(match: re.Match[str]) -> str:
    try:
        return codecs.decode(match[0], "unicode_escape")
    except (UnicodeDecodeError, ValueError):  # \N{no such name}: Python refuses the script
        return match[0]


def _shell_escape(match: re.Match[str]) -> str:
    return "" if match[1] == "\n" else match[1]


def _text(form: str) -> str | None:
    """``form`` with its surrogate pairs joined (``\\ud83d\\ude00``, decoded one escape at a
    time, is two halves), or None when a half is left alone."""
    try:
        return form.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        return None


class Masker:
    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for s in secrets for form in _as_printed(s)}
        # surrogatepass: a value stored with a lone surrogate half never stops a run's driver.
        values = sorted(
            {s.encode("utf-8", "surrogatepass") for s in forms if len(s) >= MIN_MASKED}, key=len, reverse=True
        )
        self._values = values
        # Compiling a pattern of long literals costs ~3 ms a KiB (a certificate bundle: a
        # quarter of a second, on the event loop): those are replaced one by one instead.
        self._long = [v for v in values if len(v) > _PATTERN_MAX]
        short = [v for v in values if len(v) <= _PATTERN_MAX]
        self._pattern = re.compile(b"|".join(re.escape(v) for v in short)) if short else None

    def __bool__(self) -> bool:
        return bool(self._values)

    def mask(self, data: bytes) -> bytes:
        for value in self._long:  # longest first, as the pattern's alternatives
            data = data.replace(value, MASK)
        return self._pattern.sub(MASK, data) if self._pattern is not None else data

    def mask_batch(self, data: bytes, *, final: bool) -> tuple[bytes, bytes]:
        """(what may leave now, masked; what to keep for the next batch, raw). Unless
        ``final``, the batch is cut before the earliest tail that could begin a secret, and
        before any secret found across that cut (a shorter one inside the start of a longer:
        ``etl`` in ``etl_Pa55w0rd!``, cut after ``etl_Pa``, let the rest go out in the next
        batch, found by the security re-probe of session 28); what is before the cut is
        masked whole, what is after it waits. So a stream masked in batches reads as the
        whole stream masked at once."""
        if not self._values:
            return data, b""
        if final:
            return self.mask(data), b""
        cut = self._tail_start(data)
        moved = cut < len(data)
        while moved:
            moved = False
            for value in self._values:
                start = data.find(value, max(0, cut - len(value) + 1))
                if 0 <= start < cut:  # found across the cut
                    cut, moved = start, True
        return self.mask(data[:cut]), data[cut:]

    def _tail_start(self, data: bytes) -> int:
        """Where the longest end of ``data`` that begins some secret starts (``len(data)``:
        none). Each secret's first bytes (up to ``_ANCHOR``) are searched for (in C), and
        only where they are is the rest compared; an end shorter than that is compared at
        each of its few places. A set of every prefix of every secret, which this replaced,
        took memory by the square of a secret's length (a 32 KiB certificate bundle: 1.6 GB),
        and looking at every place a secret's first byte is took a second a batch for output
        of that byte (both found by the security re-probes of session 28)."""
        view, end = memoryview(data), len(data)
        best = end
        for value in self._values:
            anchor = value[:_ANCHOR]
            start = max(0, end - len(value) + 1)
            # Ends at least as long as the anchor: where the anchor is.
            found = data.find(anchor, start, end)
            while 0 <= found < best:
                if view[found:] == memoryview(value)[: end - found]:
                    best = found
                    break
                found = data.find(anchor, found + 1, end)
            # Shorter ends: a few places, each compared whole.
            for place in range(max(start, end - len(anchor) + 1), min(best, end)):
                if value.startswith(data[place:]):
                    best = place
                    break
        return best

    def mask_cut(self, data: bytes) -> bytes:
        """Mask ``data`` whose stream was cut after it for good (a log at its size cap): a
        trailing start of a secret is masked as well (``MIN_MASKED`` bytes of it or more: one
        or two letters, shown, tell nothing, and every error ending in a letter some secret
        begins with would lose it)."""
        masked, kept = self.mask_batch(data, final=False)
        return masked + (MASK if len(kept) >= MIN_MASKED else self.mask(kept))

    def mask_fragment(self, data: bytes) -> bytes:
        """Mask ``data`` that was cut from a longer stream at both ends (an output tail):
        every secret in it, the longest end of a secret it begins with, and the start of one
        it ends with. All three are found on the fragment as it is and masked together: an
        end masked first hid a whole secret that began inside it (a secret starting with the
        letter another ends with), and a shorter secret masked first hid the end it was part
        of (found by the security re-probes of session 28)."""
        if not self._values:
            return data
        # A piece of a secret too short to mask whole (as a value: ``MIN_MASKED``) is shown.
        spans = [(0, self._leading_end(data)), (self._tail_start(data), len(data))]
        spans = [(first, last) for first, last in spans if last - first >= MIN_MASKED]
        for value in self._values:
            found = data.find(value)
            while found != -1:
                spans.append((found, found + len(value)))
                found = data.find(value, found + 1)
        pieces: list[bytes] = []
        shown = 0  # where the part not masked yet starts
        for first, last in sorted(span for span in spans if span[0] < span[1]):
            if first > shown:
                pieces += [data[shown:first], MASK]
            elif not pieces or pieces[-1] != MASK:
                pieces.append(MASK)
            shown = max(shown, last)
        pieces.append(data[shown:])
        return b"".join(pieces)

    def _leading_end(self, data: bytes) -> int:
        """How many bytes at the start of ``data`` are the end of some secret (the longest
        such end; all of ``data`` when it lies wholly within one)."""
        best = 0
        for value in self._values if data else ():
            start = value.find(data[:1], 1)
            while start != -1 and len(value) - start > best:
                if value.startswith(data[: len(value) - start], start):
                    best = min(len(value) - start, len(data))
                    break
                start = value.find(data[:1], start + 1)
        return best

    def mask_text(self, text: str | None) -> str | None:
        return None if text is None else self.mask_str(text)

    def mask_str(self, text: str) -> str:
        if not self._values:
            return text
        # surrogatepass: an exception's text may hold a lone surrogate half; masking keeps it.
        return self.mask(text.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")
