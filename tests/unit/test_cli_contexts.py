"""Contexts (issue 17 §2): ``kiok login`` saves a named context with one or several masters,
the token and the CA; ``--master``/``KIOK_MASTER`` pick a context or masters; ``localhost``
is ``127.0.0.1``; a context fails over between its masters and remembers the one that
answered; ``kiok context list|use|remove``; logins saved by URL (version 1 files) keep working."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiok.cli.masters import canonical, default_context_name, master_urls, same_master, try_order
from tests.unit.test_cli_harness import FakeMaster, reply

LOGIN = {"accessToken": "acc-1", "refreshToken": "ref-1"}


class Cluster(FakeMaster):
    """A fake master answering on several host names, some of them down (connection refused)."""

    def __init__(self, config_home: Path) -> None:
        super().__init__(config_home)
        self.down: set[str] = set()
        self.hosts: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        if request.url.host in self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return super().handle(request)


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    c = Cluster(tmp_path / "config")
    c.on("POST", "/api/v1/auth/login", reply(200, LOGIN))
    c.on("GET", "/api/v1/dags", reply(200, {"dags": []}))
    return c


def saved(c: FakeMaster) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(c.credentials_file.read_text())
    return doc


def ok(c: FakeMaster, *args: str, env: dict[str, str | None] | None = None) -> str:
    result = c.invoke(list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


# --- the pure parts ---------------------------------------------------------------------------


def test_loopback_names_are_one_master() -> None:
    assert same_master("http://localhost:8080", "http://127.0.0.1:8080")
    assert same_master("http://[::1]:8080", "http://LOCALHOST:8080/")
    assert not same_master("http://localhost:8080", "https://localhost:8080")
    assert not same_master("http://localhost:8080", "http://localhost:8081")
    assert canonical("https://Kiok.Example") == "https://kiok.example:443"
    assert master_urls("m1, m2:9000,127.0.0.1:8080,localhost:8080") == (
        "http://m1:8080",
        "http://m2:9000",
        "http://127.0.0.1:8080",
    )


def test_default_context_names() -> None:
    assert default_context_name("http://127.0.0.1:8080") == "localhost"
    assert default_context_name("https://kiok.example:8080") == "kiok.example"
    assert default_context_name("https://kiok.example:9443") == "kiok.example:9443"
    assert try_order(("a", "b", "c"), "b") == ("b", "a", "c")
    assert try_order(("a", "b"), None) == ("a", "b")


# --- login, pick, fail over -------------------------------------------------------------------


def test_login_saves_a_context_and_localhost_is_127_0_0_1(cluster: Cluster, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by the mock transport")
    out = ok(cluster, "--master", "127.0.0.1:8080", "--ca", str(ca), "login", "--password", "pw")
    assert out == "logged in to http://127.0.0.1:8080 as admin (context localhost)\n"
    doc = saved(cluster)
    assert doc["version"] == 2 and doc["current"] == "localhost"
    assert doc["contexts"]["localhost"]["ca"] == str(ca)
    # Spelled either way, with or without the port, it is the same master and the same login.
    for master in ("localhost:8080", "http://localhost:8080/", "127.0.0.1", "localhost"):
        ok(cluster, "--master", master, "dags", "list")
        assert cluster.requests[-1].headers["authorization"] == "Bearer acc-1", master


def test_a_context_with_several_masters_fails_over_and_remembers(cluster: Cluster) -> None:
    cluster.down = {"m1"}
    out = ok(cluster, "--master", "m1:8080,m2:8080,m3:8080", "login", "--context", "prod", "--password", "p")
    assert out == "logged in to http://m2:8080 as admin (context prod)\n"
    prod = saved(cluster)["contexts"]["prod"]
    assert prod["masters"] == ["http://m1:8080", "http://m2:8080", "http://m3:8080"]
    assert prod["active"] == "http://m2:8080"

    cluster.hosts.clear()
    ok(cluster, "dags", "list")  # the current context; the master that answered last goes first
    assert cluster.hosts == ["m2"]

    cluster.down = {"m1", "m2"}
    cluster.hosts.clear()
    ok(cluster, "--master", "prod", "dags", "list")
    assert cluster.hosts == ["m2", "m1", "m3"]
    assert cluster.requests[-1].headers["authorization"] == "Bearer acc-1"
    assert saved(cluster)["contexts"]["prod"]["active"] == "http://m3:8080"

    cluster.down = {"m1", "m2", "m3"}
    result = cluster.invoke(["dags", "list"], env={"KIOK_MASTER": "prod"})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach any kiok master (http://m3:8080: ")
    assert "http://m1:8080: [Errno 111] Connection refused" in result.stderr
    assert result.stderr.endswith("(context 'prod'; check --master or KIOK_MASTER)\n")


def test_an_explicit_master_of_a_context_uses_its_login_but_only_that_master(cluster: Cluster) -> None:
    ok(cluster, "--master", "m1:8080,m2:8080", "login", "--context", "prod", "--password", "p")
    cluster.down = {"m1"}
    cluster.hosts.clear()
    result = cluster.invoke(["--master", "m1:8080", "dags", "list"])
    assert result.exit_code == 1 and cluster.hosts == ["m1"]
    assert "cannot reach kiok master at http://m1:8080" in result.stderr
    ok(cluster, "--master", "m2:8080", "dags", "list")
    assert cluster.requests[-1].headers["authorization"] == "Bearer acc-1"
    # Logging in again through one of its masters renews the context, keeping its masters.
    ok(cluster, "--master", "m2:8080", "login", "--password", "p")
    assert saved(cluster)["contexts"]["prod"]["masters"] == ["http://m1:8080", "http://m2:8080"]


def test_context_list_use_remove(cluster: Cluster) -> None:
    assert ok(cluster, "context", "list") == "no contexts saved; `kiok login` saves one\n"
    ok(cluster, "login", "--password", "p")
    ok(cluster, "--master", "m1,m2", "login", "--context", "prod", "--password", "p")
    lines = ok(cluster, "context", "list").splitlines()
    assert lines[0].split() == ["NAME", "MASTERS", "USER", "CA"]
    assert lines[1].split() == ["localhost", "http://localhost:8080", "admin", "-"]
    assert lines[2].split() == ["*", "prod", "http://m1:8080,http://m2:8080", "admin", "-"]

    assert ok(cluster, "context", "use", "localhost") == "using context localhost (http://localhost:8080)\n"
    cluster.hosts.clear()
    ok(cluster, "dags", "list")
    assert cluster.hosts == ["localhost"]
    doc = json.loads(ok(cluster, "context", "list", "--json"))
    assert doc["current"] == "localhost"
    assert [(c["name"], c["current"], c["loggedIn"]) for c in doc["contexts"]] == [
        ("localhost", True, True),
        ("prod", False, True),
    ]
    assert "acc-1" not in json.dumps(doc)  # tokens are never shown

    assert ok(cluster, "context", "remove", "localhost") == "removed context localhost\n"
    assert json.loads(ok(cluster, "context", "list", "--json"))["current"] is None
    result = cluster.invoke(["context", "use", "nope"])
    assert result.exit_code == 1
    assert result.stderr == "error: no context named 'nope'; `kiok context list` shows the saved ones\n"
    assert cluster.invoke(["context", "remove", "nope"]).exit_code == 1


def test_logins_saved_by_url_keep_working(cluster: Cluster) -> None:
    """A version 1 file (logins keyed by master URL) is read as contexts, and migrated on write."""
    cluster.credentials_file.parent.mkdir(parents=True)
    v1 = {
        "version": 1,
        "masters": {
            "http://127.0.0.1:8080": {"user": "admin", "accessToken": "local", "refreshToken": "r"},
            "https://kiok.example:9443": {"user": "bob", "accessToken": "remote", "refreshToken": None},
        },
    }
    cluster.credentials_file.write_text(json.dumps(v1))
    ok(cluster, "dags", "list")
    ok(cluster, "--master", "https://kiok.example:9443", "dags", "list")
    ok(cluster, "--master", "kiok.example:9443", "dags", "list")  # its migrated context's name
    assert [r.headers["authorization"] for r in cluster.requests] == [
        "Bearer local",
        "Bearer remote",
        "Bearer remote",
    ]
    ok(cluster, "context", "use", "localhost")
    doc = saved(cluster)
    assert doc["version"] == 2 and "masters" not in doc
    assert doc["contexts"]["kiok.example:9443"]["accessToken"] == "remote"
    assert doc["contexts"]["localhost"]["masters"] == ["http://127.0.0.1:8080"]
