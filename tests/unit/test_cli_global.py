"""Global options anywhere, access keys, ``--json`` errors, ``--version``, retrying a 503 with
``Retry-After``, and error lines that say only what went wrong."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import pytest

from kiok.cli.client import Tokens
from kiok.cli.credentials import CredentialStore, SavedContext
from kiok.cli.main import cli
from tests.unit.test_cli_harness import FakeMaster, fail, reply

BASE = "http://localhost:8080"


@pytest.fixture
def master(tmp_path: Path) -> FakeMaster:
    return FakeMaster(tmp_path / "config")


def not_ready() -> httpx.Response:
    return httpx.Response(
        503,
        json={"error": {"code": "not_ready", "message": "cluster not ready: no worker is connected"}},
        headers={"Retry-After": "1"},
    )


def test_version(master: FakeMaster) -> None:
    result = master.invoke(["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("kiok ") and result.stdout.strip() != "kiok"


def test_global_options_after_the_command(master: FakeMaster, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    master.on("GET", "/api/v1/dags", reply(200, {"dags": []}))
    result = master.invoke(["dags", "list", "--master", "m9:9000", "--token", "t9", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"dags": []}
    (req,) = master.requests
    assert str(req.url) == "http://m9:9000/api/v1/dags"
    assert req.headers["authorization"] == "Bearer t9"
    # after the command wins over before it
    master.invoke(["--master", "m1", "runs", "list", "--master", "m2:1"])
    assert str(master.requests[-1].url).startswith("http://m2:1/")
    bad = master.invoke(["dags", "list", "--ca", str(tmp_path / "missing.pem")])
    assert bad.exit_code == 2


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The command line of every command that runs something (no group), under ``command``."""
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path


def test_every_client_command_takes_the_global_options_after_its_name(master: FakeMaster) -> None:
    """`kiok config show --json` and `kiok admin reset-password --json` were usage errors
    ("No such option"), though the global options go before or after the command. The
    server commands take none of them (they print no answer; a client option is nothing
    to them)."""
    lacking = [
        " ".join(path)
        for path in _commands(cli)
        if path[0] not in ("standalone", "master", "worker")
        and master.invoke([*path, "--json", "--timeout", "5", "--help"]).exit_code != 0
    ]
    assert lacking == []


def test_config_show_json_after_the_command(master: FakeMaster) -> None:
    result = master.invoke(["config", "show", "--json"], env={"KIOK_WORKER_LABELS": "gpu"})
    assert result.exit_code == 0, result.output
    row = {"key": "kiok.worker.labels", "value": "gpu", "source": "env", "from": "KIOK_WORKER_LABELS"}
    assert row in json.loads(result.stdout)


def test_reset_password_json_prints_the_answer_and_errors_as_json(master: FakeMaster) -> None:
    directory = tempfile.mkdtemp(prefix="kiok-", dir="/tmp")  # a socket path has 107 bytes at most
    path = os.path.join(directory, "admin.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(10)  # a command that never connects fails the test, not hangs it

    def answer() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.makefile("rb").readline()
                conn.sendall(b'{"ok": true, "user": "ops", "password": "Gen3rated!pw"}\n')

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        result = master.invoke(["admin", "reset-password", "--user", "ops", "--socket", path, "--json"])
    finally:
        thread.join(10)
        listener.close()
        shutil.rmtree(directory)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"user": "ops", "password": "Gen3rated!pw"}
    failed = master.invoke(["admin", "reset-password", "--socket", path, "--json"])
    assert failed.exit_code == 1 and failed.stdout == "", failed.output
    assert "cannot reach the master's admin socket" in json.loads(failed.stderr)["error"]["message"]


def test_access_key_from_option_or_environment(master: FakeMaster) -> None:
    CredentialStore(master.credentials_file).save(
        SavedContext("localhost", (BASE,), "admin", Tokens("saved", "r"))
    )
    master.on("GET", "/api/v1/dags", reply(200, {"dags": []}))
    assert master.invoke(["--access-key", "AK1:s3c:ret", "dags", "list"]).exit_code == 0
    assert master.invoke(["dags", "list"], env={"KIOK_ACCESS_KEY": "AK2:x"}).exit_code == 0
    assert master.invoke(["dags", "list", "--access-key", "AK3:y"]).exit_code == 0
    assert [r.headers["authorization"] for r in master.requests] == [
        "AccessKey AK1:s3c:ret",
        "AccessKey AK2:x",
        "AccessKey AK3:y",
    ]


def test_command_line_credential_beats_the_environment_and_two_are_refused(master: FakeMaster) -> None:
    master.on("GET", "/api/v1/dags", reply(200, {"dags": []}))
    master.invoke(["--token", "t1", "dags", "list"], env={"KIOK_ACCESS_KEY": "AK:x"})
    master.invoke(["dags", "list", "--access-key", "AK:y"], env={"KIOK_USER_TOKEN": "t2"})
    assert [r.headers["authorization"] for r in master.requests] == ["Bearer t1", "AccessKey AK:y"]
    both = master.invoke(["--token", "t", "--access-key", "AK:x", "dags", "list"])
    assert both.exit_code == 2 and "use one" in both.stderr
    both_env = master.invoke(["dags", "list"], env={"KIOK_USER_TOKEN": "t", "KIOK_ACCESS_KEY": "AK:x"})
    assert both_env.exit_code == 2 and "KIOK_ACCESS_KEY" in both_env.stderr
    malformed = master.invoke(["--access-key", "no-secret", "dags", "list"])
    assert malformed.exit_code == 2 and "<accessKeyId>:<secretAccessKey>" in malformed.stderr
    assert len(master.requests) == 2


def test_503_with_retry_after_is_retried_until_it_succeeds(master: FakeMaster) -> None:
    master.on("POST", "/api/v1/dags/etl/runs", not_ready(), not_ready(), reply(201, {"runId": "r1"}))
    result = master.invoke(["--token", "t", "trigger", "etl"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "r1\n"
    assert len(master.sent("POST", "/api/v1/dags/etl/runs")) == 3
    assert master.sleeps == [1.0, 1.0]
    assert result.stderr == "cluster not ready: no worker is connected; retrying for up to 30s\n"


def test_a_login_shed_by_the_busy_hash_pool_is_sent_again(master: FakeMaster) -> None:
    overloaded = httpx.Response(
        503,
        json={"error": {"code": "overloaded", "message": "too many password checks are waiting"}},
        headers={"Retry-After": "1"},
    )
    tokens = reply(200, {"accessToken": "acc", "refreshToken": "ref"})
    master.on("POST", "/api/v1/auth/login", overloaded, tokens)
    result = master.invoke(["login", "--password", "pw"])
    assert len(master.sent("POST", "/api/v1/auth/login")) == 2, result.output
    assert master.sleeps == [1.0]


def test_503_retries_are_bounded(master: FakeMaster) -> None:
    master.on("GET", "/api/v1/dags", not_ready())
    result = master.invoke(["--token", "t", "dags", "list"])
    assert result.exit_code == 1
    assert sum(master.sleeps) == 30
    assert result.stderr.splitlines()[-1] == (
        "error: cluster not ready: no worker is connected (still so after retrying for 30s)"
    )
    quiet = master.invoke(["--token", "t", "dags", "list", "--json"])
    assert json.loads(quiet.stderr)["error"]["code"] == "not_ready"

    # Only a 503 not_ready/not_leader that says Retry-After is retried: not a bare 503, not
    # another code (maintenance mode lasts), not a 429.
    master.sleeps.clear()
    master.requests.clear()
    master.on("GET", "/api/v1/dags", fail(503, "not_ready", "starting"))
    limited = httpx.Response(
        429, json={"error": {"code": "rate_limited", "message": "too many"}}, headers={"Retry-After": "5"}
    )
    master.on("POST", "/api/v1/auth/login", limited)
    maintenance = httpx.Response(
        503, json={"error": {"code": "maintenance_mode", "message": "m"}}, headers={"Retry-After": "30"}
    )
    master.on("POST", "/api/v1/dags/etl/runs", maintenance)
    assert master.invoke(["--token", "t", "dags", "list"]).exit_code == 1
    assert master.invoke(["login", "--password", "x"]).exit_code == 1
    assert master.invoke(["--token", "t", "trigger", "etl"]).stderr == "error: m\n"
    assert master.sleeps == []
    assert len(master.requests) == 3


def test_a_wrong_password_says_only_that(master: FakeMaster) -> None:
    master.on("POST", "/api/v1/auth/login", fail(401, "unauthenticated", "wrong user or password"))
    assert master.invoke(["login", "--password", "nope"]).stderr == "error: wrong user or password\n"

    CredentialStore(master.credentials_file).save(
        SavedContext("localhost", (BASE,), "admin", Tokens("acc", "ref"))
    )
    master.on(
        "POST", "/api/v1/auth/change-password", fail(401, "unauthenticated", "the old password is wrong")
    )
    master.on("POST", "/api/v1/auth/refresh", reply(200, {"accessToken": "acc2", "refreshToken": "ref2"}))
    result = master.invoke(["change-password", "--old", "bad", "--new", "N3w-password-1"])
    assert result.stderr == "error: the old password is wrong\n"


def test_unreachable_master_with_json_is_a_json_error(master: FakeMaster) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    result = master.invoke(["dags", "list", "--json"], transport=httpx.MockTransport(refuse))
    assert result.exit_code == 1 and result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "unreachable"
    assert "--master or KIOK_MASTER" in error["message"]


def test_reset_password_sends_no_password_to_a_listener_of_another_user(master: FakeMaster) -> None:
    """The security re-probe of session 28: with the socket path in a directory others may
    write, another user's process listening there was sent the new password and its answer
    was printed as the master's. The CLI now asks the listener's uid (SO_PEERCRED) first."""
    directory = tempfile.mkdtemp(prefix="kiok-", dir="/tmp")
    os.chmod(directory, 0o1777)
    path = os.path.join(directory, "admin.sock")
    ready, done = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # a listener as nobody: what it receives goes back through the pipe
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
                listener.bind(path)
                listener.listen(1)
                os.write(ready[1], b"1")
                listener.settimeout(10)
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(2)
                    got = b""
                    with contextlib.suppress(OSError):
                        got = conn.recv(4096)
                    os.write(done[1], got or b"-")
        finally:
            os._exit(0)
    try:
        assert os.read(ready[0], 1) == b"1"
        result = master.invoke(
            [
                "admin",
                "reset-password",
                "--user",
                "admin",
                "--new-password",
                "N3w-Admin-Passw0rd!",
                "--socket",
                path,
            ]
        )
        received = os.read(done[0], 4096)
    finally:
        os.waitpid(pid, 0)
        shutil.rmtree(directory, ignore_errors=True)
    assert result.exit_code == 1 and "runs as uid 65534" in result.stderr, result.output
    assert b"N3w-Admin" not in received, received
