"""Saved contexts: ``$XDG_CONFIG_HOME/kiok/credentials.json`` (default ``~/.config/kiok``).

A context is a name for one cluster: its master URLs, the login's tokens, the CA bundle its
certificates are checked against, and the master that answered last. One JSON file, mode 0600
in a 0700 directory::

    {"version": 2, "current": "prod",
     "contexts": {"prod": {"masters": ["https://m1:8080", "https://m2:8080"], "ca": "/…/ca.pem",
                           "active": "https://m2:8080", "user": "admin",
                           "accessToken": "…", "refreshToken": "…"}}}

A version 1 file (logins keyed by master URL, ``{"masters": {url: {user, accessToken, …}}}``)
is read as one context per URL, named after its host, and written back as version 2 on the next
change. Writes go to a temporary file that replaces the old one, so a crash never leaves half a
file; two ``kiok`` processes writing at once are not guarded against (the later write wins).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kiok.cli.client import CliError, Tokens
from kiok.cli.masters import contains, default_context_name, same_master

_VERSION = 2


def default_path(environ: Mapping[str, str]) -> Path:
    """Where the credentials file lives; a relative ``XDG_CONFIG_HOME`` is ignored, as the spec says."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "kiok" / "credentials.json"


@dataclass(frozen=True)
class SavedContext:
    """One saved context. ``tokens`` is None after ``kiok logout``; ``active`` is the master
    that answered last (tried first next time)."""

    name: str
    masters: tuple[str, ...]
    user: str | None = None
    tokens: Tokens | None = None
    ca: str | None = None
    active: str | None = None


@dataclass(frozen=True)
class _Doc:
    current: str | None
    contexts: dict[str, SavedContext]


class CredentialStore:
    """Read and write saved contexts. Every method reads the file afresh; every change
    rewrites it whole. An unreadable file raises ``CliError`` saying what to do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def contexts(self) -> list[SavedContext]:
        return sorted(self._read().contexts.values(), key=lambda c: c.name)

    def current(self) -> str | None:
        """The context ``kiok context use`` (or the last ``kiok login``) chose, if it still exists."""
        doc = self._read()
        return doc.current if doc.current in doc.contexts else None

    def get(self, name: str) -> SavedContext | None:
        return self._read().contexts.get(name)

    def for_master(self, url: str) -> SavedContext | None:
        """The context holding master ``url`` (``localhost`` matching ``127.0.0.1``): the one
        whose first master it is, else the first by name that lists it."""
        found = [c for c in self.contexts() if contains(c.masters, url)]
        first = [c for c in found if same_master(c.masters[0], url)]
        return (first or found)[0] if found else None

    def save(self, context: SavedContext, *, make_current: bool = False) -> None:
        """Save (replace) ``context``; ``make_current`` also makes it the current one."""
        doc = self._read(tolerant=True)
        doc.contexts[context.name] = context
        self._write(_Doc(context.name if make_current else doc.current, doc.contexts))

    def update(self, name: str, **changes: Any) -> None:
        """Change some fields of context ``name`` (nothing when it is gone meanwhile)."""
        doc = self._read(tolerant=True)
        if name in doc.contexts:
            doc.contexts[name] = replace(doc.contexts[name], **changes)
            self._write(doc)

    def use(self, name: str) -> SavedContext:
        doc = self._read()
        if name not in doc.contexts:
            raise CliError(f"no context named {name!r}; `kiok context list` shows the saved ones")
        self._write(_Doc(name, doc.contexts))
        return doc.contexts[name]

    def remove(self, name: str) -> bool:
        """Forget context ``name`` (and that it was current); False when there was none."""
        doc = self._read()
        if doc.contexts.pop(name, None) is None:
            return False
        self._write(_Doc(None if doc.current == name else doc.current, doc.contexts))
        return True

    def _read(self, *, tolerant: bool = False) -> _Doc:
        """The file's contents; ``tolerant`` treats an unreadable file as empty (it is about
        to be replaced whole)."""
        try:
            return _parse(self._load())
        except CliError:
            if tolerant:
                return _Doc(None, {})
            raise

    def _load(self) -> Any:
        try:
            text = self.path.read_text(encoding="utf-8")
            return json.loads(text)
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise CliError(f"cannot read {self.path}: {e.strerror}") from e
        except (ValueError, RecursionError) as e:  # not UTF-8 (UnicodeDecodeError), not JSON, too deep
            raise CliError(f"{self.path} is not valid JSON; delete it and run `kiok login`") from e

    def _write(self, doc: _Doc) -> None:
        body = {
            "version": _VERSION,
            "current": doc.current,
            "contexts": {name: _entry(c) for name, c in sorted(doc.contexts.items())},
        }
        data = json.dumps(body, indent=2).encode() + b"\n"
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)  # the umask cannot widen it, but an old file could
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise CliError(f"cannot save credentials to {self.path}: {e.strerror or e}") from e


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _tokens(entry: Mapping[str, Any]) -> Tokens | None:
    access = _str(entry.get("accessToken"))
    return Tokens(access, _str(entry.get("refreshToken"))) if access else None


def _entry(c: SavedContext) -> dict[str, Any]:
    return {
        "masters": list(c.masters),
        "ca": c.ca,
        "active": c.active,
        "user": c.user,
        "accessToken": c.tokens.access if c.tokens else None,
        "refreshToken": c.tokens.refresh if c.tokens else None,
    }


def _parse(doc: Any) -> _Doc:
    """A file's JSON as contexts, version 1 (logins keyed by URL) migrated; entries that do
    not have the expected shape are skipped rather than failing every command."""
    if not isinstance(doc, dict):
        return _Doc(None, {})
    contexts: dict[str, SavedContext] = {}
    raw = doc.get("contexts")
    for name, entry in (raw if isinstance(raw, dict) else {}).items():
        masters = entry.get("masters") if isinstance(entry, dict) else None
        if not isinstance(masters, list) or not masters or not all(isinstance(m, str) for m in masters):
            continue
        contexts[name] = SavedContext(
            name=name,
            masters=tuple(masters),
            user=_str(entry.get("user")),
            tokens=_tokens(entry),
            ca=_str(entry.get("ca")),
            active=_str(entry.get("active")),
        )
    legacy = doc.get("masters")  # version 1
    for url, entry in (legacy if isinstance(legacy, dict) else {}).items():
        if not isinstance(entry, dict) or _tokens(entry) is None:
            continue
        name = default_context_name(url)
        if name in contexts:
            name = url
        contexts.setdefault(name, SavedContext(name, (url,), _str(entry.get("user")), _tokens(entry)))
    return _Doc(_str(doc.get("current")), contexts)
