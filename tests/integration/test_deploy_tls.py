"""What of the deployment files can run without Docker (issue 17 §5): ``deploy/make-ca.sh``
makes certificates a real ``kiok standalone`` serves TLS with; the Dockerfile's HEALTHCHECK
command, run as Docker would, passes against it only when it verifies with the CA, and fails
when nothing answers; the CLI logs in over https with ``--ca`` and keeps the CA in the context."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone, free_port
from tests.integration.test_cli import KiokCli, show

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def health_check(url: str, ca: Path | None) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK command (exec form), with this Python for the image's."""
    line = next(x for x in (ROOT / "Dockerfile").read_text().splitlines() if x.startswith("HEALTHCHECK "))
    match = re.search(r" CMD (\[.*\])$", line)
    assert match is not None, line
    argv = json.loads(match[1])
    assert argv[0] == "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOK_")}
    env["HEALTHCHECK_URL"] = url
    if ca is not None:
        env["KIOK_TLS_CA"] = str(ca)
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=30)


def test_make_ca_certificates_serve_tls_health_check_and_cli(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    made = subprocess.run(
        ["bash", str(ROOT / "deploy" / "make-ca.sh"), "-d", str(certs), "kiok1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, show(made)
    assert (certs / "kiok1.key").stat().st_mode & 0o077 == (0 if os.geteuid() == 0 else 0o044)
    ca = certs / "ca.pem"
    tls = {
        "KIOK_TLS_CERT": str(certs / "kiok1.crt"),
        "KIOK_TLS_KEY": str(certs / "kiok1.key"),
        "KIOK_TLS_CA": str(ca),
    }
    node = Standalone(tmp_path / "kiok", tls).start()
    try:
        assert node.url.startswith("https://127.0.0.1:")
        assert health_check(node.url + "/healthz", ca).returncode == 0
        # The certificate is verified, not trusted blindly: without the CA the check fails.
        assert health_check(node.url + "/healthz", None).returncode != 0
        assert health_check(f"http://127.0.0.1:{free_port()}/healthz", None).returncode != 0

        config = tmp_path / "config"
        login = KiokCli(f"https://localhost:{node.admin_port}", config)
        out = login.ok("--ca", str(ca), "login", "--context", "tls", "--password", ADMIN_PASSWORD)
        assert out.startswith(f"logged in to https://localhost:{node.admin_port} as admin")
        # Later commands through the context verify against the CA it saved.
        assert "dags" in json.loads(KiokCli("tls", config).ok("--json", "dags", "list"))
        contexts = json.loads(KiokCli("tls", config).ok("context", "list", "--json"))["contexts"]
        assert [(c["name"], c["ca"]) for c in contexts] == [("tls", str(ca))]
    finally:
        node.stop()
