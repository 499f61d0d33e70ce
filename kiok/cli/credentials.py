"""Saved logins: ``$XDG_CONFIG_HOME/kiok/credentials.json`` (default ``~/.config/kiok``).

One JSON file, mode 0600 in a 0700 directory, keyed by master base URL
(``{"version": 1, "masters": {"http://localhost:8080": {"user", "accessToken", "refreshToken"}}}``).
Writes go to a temporary file that replaces the old one, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiok.cli.client import CliError, Tokens

_VERSION = 1


def default_path(environ: Mapping[str, str]) -> Path:
    """Where the credentials file lives; a relative ``XDG_CONFIG_HOME`` is ignored, as the spec says."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "kiok" / "credentials.json"


@dataclass(frozen=True)
class SavedLogin:
    user: str | None
    tokens: Tokens


class CredentialStore:
    """Read and write saved logins. Not safe against two ``kiok`` processes writing at once
    (the later write wins), which is acceptable for one user's config file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, master: str) -> SavedLogin | None:
        entry = self._masters().get(master)
        if not isinstance(entry, dict) or not isinstance(entry.get("accessToken"), str):
            return None
        refresh = entry.get("refreshToken")
        user = entry.get("user")
        return SavedLogin(
            user=user if isinstance(user, str) else None,
            tokens=Tokens(entry["accessToken"], refresh if isinstance(refresh, str) else None),
        )

    def save(self, master: str, login: SavedLogin) -> None:
        """Save (replace) the login for ``master``; an unreadable file is replaced whole."""
        try:
            masters = self._masters()
        except CliError:
            masters = {}
        masters[master] = {
            "user": login.user,
            "accessToken": login.tokens.access,
            "refreshToken": login.tokens.refresh,
        }
        self._write(masters)

    def remove(self, master: str) -> bool:
        """Forget the login for ``master``; False when there was none."""
        masters = self._masters()
        if masters.pop(master, None) is None:
            return False
        self._write(masters)
        return True

    def _masters(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise CliError(f"cannot read {self.path}: {e.strerror}") from e
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise CliError(f"{self.path} is not valid JSON; delete it and run `kiok login`") from e
        masters = doc.get("masters") if isinstance(doc, dict) else None
        return dict(masters) if isinstance(masters, dict) else {}

    def _write(self, masters: dict[str, Any]) -> None:
        data = json.dumps({"version": _VERSION, "masters": masters}, indent=2).encode() + b"\n"
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
