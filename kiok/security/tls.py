"""Optional TLS for the admin HTTP and the internal protocol, from three settings.

- ``kiok.tls.cert`` + ``kiok.tls.key`` on a process make every port it serves TLS (the
  admin HTTP, the internal protocol, the worker status port).
- ``kiok.tls.ca`` on a process makes it a verifying TLS client: a worker connects to the
  masters over TLS and checks their certificate against that CA (host name included), and
  presents its own ``cert``/``key`` when it has them.
- A master with all three asks every peer on the internal protocol for a certificate signed
  by that CA (mutual TLS); the admin HTTP never asks (browsers and scripts have none).

Files are read when a context is made, so a certificate renewed on disk is picked up on
the next restart. A bad path or a key that does not match its certificate fails at start
with a message that says which setting is wrong.
"""

from __future__ import annotations

import functools
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from kiok.config import Settings
from kiok.errors import InvalidInput


@dataclass(frozen=True)
class TlsFiles:
    cert: str
    key: str
    ca: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TlsFiles:
        files = cls(
            settings.get_str("kiok.tls.cert"),
            settings.get_str("kiok.tls.key"),
            settings.get_str("kiok.tls.ca"),
        )
        if bool(files.cert) != bool(files.key):
            raise InvalidInput("kiok.tls.cert and kiok.tls.key go together: set both or neither")
        for name, path in (
            ("kiok.tls.cert", files.cert),
            ("kiok.tls.key", files.key),
            ("kiok.tls.ca", files.ca),
        ):
            if path and not Path(path).is_file():
                raise InvalidInput(f"{name}: no such file {path!r}")
        if files.serves_tls:
            files._load_chain(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
        if files.ca:
            try:
                ssl.create_default_context(cafile=files.ca)
            except ssl.SSLError as e:
                raise InvalidInput(f"kiok.tls.ca cannot be loaded: {e}") from None
        return files

    @property
    def serves_tls(self) -> bool:
        return bool(self.cert)

    def server_context(self, *, require_client_cert: bool) -> ssl.SSLContext | None:
        """For a server socket; None when this process serves plain TCP."""
        if not self.serves_tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load_chain(ctx)
        if require_client_cert and self.ca:
            ctx.load_verify_locations(cafile=self.ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext | None:
        """For connecting to a master; None when this process speaks plain TCP."""
        if not self.ca:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.serves_tls:
            self._load_chain(ctx)
        return ctx

    def _load_chain(self, ctx: ssl.SSLContext) -> None:
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as e:
            raise InvalidInput(f"kiok.tls.cert/kiok.tls.key cannot be loaded: {e}") from None


def client_verify(url: str, ca_file: str | None = None) -> ssl.SSLContext | bool:
    """What an HTTP client should verify ``url`` with: the CA bundle ``ca_file``, or the
    system's. A plain ``http://`` URL has nothing to verify, and building the system's context
    loads its whole CA bundle (~25 ms here), so it is not built for one; a context is built
    once per bundle (and again when the file changes)."""
    if not url.startswith("https:"):
        return False
    return _context(ca_file, os.stat(ca_file).st_mtime_ns if ca_file else 0)


@functools.lru_cache(maxsize=8)
def _context(ca_file: str | None, _version: int) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)
