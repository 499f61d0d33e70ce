"""The UI's static files, read once from the installed package: their bytes, a gzip copy
where that is smaller, their content type, and one version hash over all of them (asset URLs
carry it, so a browser may cache them for good and still sees a new release at once)."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

#: Where the version hash goes in ``index.html`` (the app shell).
VERSION_PLACEHOLDER = b"{{version}}"
SHELL = "index.html"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}
_COMPRESSIBLE = frozenset({".html", ".js", ".mjs", ".css", ".svg", ".txt", ".md"})


@dataclass(frozen=True)
class Asset:
    body: bytes
    #: The gzip-compressed body, or None where compressing does not pay.
    gzipped: bytes | None
    content_type: str


@dataclass(frozen=True)
class Assets:
    #: By path relative to ``static/`` with ``/`` separators (``js/main.js``).
    files: Mapping[str, Asset]
    #: 12 hex digits of SHA-256 over every file's path and bytes.
    version: str

    @property
    def shell(self) -> Asset:
        return self.files[SHELL]


def load(root: Traversable | None = None) -> Assets:
    """Read every file under ``root`` (default: this package's ``static/``); the shell gets
    the version hash put into its asset URLs."""
    root = root if root is not None else resources.files(__package__ or "kiok.ui") / "static"
    raw = dict(sorted(_walk(root, "")))
    digest = hashlib.sha256()
    for path, body in raw.items():
        digest.update(b"%s\0%d\0%s" % (path.encode(), len(body), body))
    version = digest.hexdigest()[:12]
    if SHELL in raw:
        raw[SHELL] = raw[SHELL].replace(VERSION_PLACEHOLDER, version.encode())
    return Assets({path: _asset(path, body) for path, body in raw.items()}, version)


def _walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, bytes]]:
    for entry in folder.iterdir():
        if entry.name.startswith((".", "__")):
            continue
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry.read_bytes()


def _asset(path: str, body: bytes) -> Asset:
    suffix = path[path.rfind(".") :] if "." in path else ""
    gzipped = None
    if suffix in _COMPRESSIBLE and len(body) > 512:
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        gzipped = packed if len(packed) < len(body) * 0.9 else None
    return Asset(body, gzipped, _TYPES.get(suffix, "application/octet-stream"))
