"""Draining on the worker's status port takes the worker's status token, against real
processes: a task (which shares the host's network) can neither drain its worker nor undo an
operator's drain, nor read the token; ``kiok workers drain|undrain`` sends the token it reads
from the worker's data directory (or ``--token-file``); a wrong token is a 401; the token
file is private to kiok's user and new at each start."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import httpx

from kiok.testing.process import Standalone
from tests.integration.test_cli import assert_clean_error, cli_for, show

#: Task logs reach the master every 200 ms, so the test sees the task's progress while it runs.
LIVE_LOGS = {"KIOK_JOBLOG_WORKER_BATCH_INTERVAL_MS": "200"}

ATTACK = """\
import json, time, urllib.error, urllib.request
base = "http://127.0.0.1:{port}"
def send(method, path, headers=None):
    req = urllib.request.Request(base + path, method=method, data=b"", headers=headers or {{}})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
try:
    token = open({token_file!r}).read().strip()
    print("read: ok", flush=True)
except OSError as e:
    token = "guess"
    print("read:", type(e).__name__, flush=True)
bearer = {{"Authorization": "Bearer " + token}}
codes = {{
    "drain": send("POST", "/drain"),
    "drain with a guess": send("POST", "/drain", bearer),
    "drain as DELETE-undo": send("DELETE", "/drain"),
}}
print("drain codes", json.dumps(codes), flush=True)
deadline = time.monotonic() + 60
while not json.load(urllib.request.urlopen(base + "/status"))["draining"]:
    assert time.monotonic() < deadline, "never drained"
    time.sleep(0.1)
codes = {{
    "undrain": send("POST", "/undrain"),
    "undrain with a guess": send("POST", "/undrain", bearer),
    "delete drain": send("DELETE", "/drain"),
}}
print("undrain codes", json.dumps(codes), flush=True)
"""


def _indented(script: str) -> str:
    return "\n".join("      " + line for line in script.splitlines())


def _codes(log: str, prefix: str) -> dict[str, int]:
    line = next(line for line in log.splitlines() if line.startswith(prefix))
    codes: dict[str, int] = json.loads(line[len(prefix) :])
    return codes


def _draining(node: Standalone) -> bool:
    return bool(httpx.get(node.status_url + "/status", timeout=5).json()["draining"])


def test_a_task_can_neither_drain_nor_undrain_its_worker(standalone_factory: object) -> None:
    node: Standalone = standalone_factory(env=LIVE_LOGS)  # type: ignore[operator]
    script = ATTACK.format(port=node.status_port, token_file=str(node.status_token_file))
    node.register(
        f"dag: {{id: evil}}\ntasks:\n  - id: t\n    type: python\n    script: |\n{_indented(script)}\n"
    )
    node.register("dag: {id: victim}\ntasks: [{id: v, script: 'echo hi'}]\n")
    evil = node.trigger("evil")

    log = node.wait_for(lambda: "drain codes" in (text := node.log(evil, "t")) and text, 60, "the attempts")
    assert "read: ok" not in log, log
    assert set(_codes(log, "drain codes ").values()) == {401}, log
    assert not _draining(node)
    assert node.wait_run(node.trigger("victim"))["state"] == "SUCCESS"  # it still takes runs

    # the operator drains; the task, still running, tries to undo it
    r = httpx.post(node.status_url + "/drain", headers=node.status_auth, timeout=5)
    assert r.status_code == 200 and r.json()["draining"] is True, r.text
    assert node.wait_run(evil, 60)["state"] == "SUCCESS"
    log = node.log(evil, "t")
    assert set(_codes(log, "undrain codes ").values()) == {401}, log
    assert _draining(node)
    waiting = node.trigger("victim")
    node.wait_for(lambda: "draining" in str(node.run(waiting).get("waiting")), 30, "the run to wait")
    r = httpx.delete(node.status_url + "/drain", headers=node.status_auth, timeout=5)
    assert r.status_code == 200 and r.json()["draining"] is False, r.text
    assert node.wait_run(waiting)["state"] == "SUCCESS"


def test_drain_without_the_token_is_a_401_naming_the_problem(kiok: Standalone) -> None:
    drain = kiok.status_url + "/drain"
    token = kiok.status_auth["Authorization"].removeprefix("Bearer ")
    for headers, why in (
        ({}, "no status token"),
        ({"Authorization": "Bearer wrong"}, "wrong status token"),
        ({"Authorization": "Bearer " + token + "x"}, "wrong status token"),
        ({"Authorization": "Basic " + token}, "no status token"),
        ({"Authorization": token}, "no status token"),
    ):
        for method, path in (("POST", "/drain"), ("POST", "/undrain"), ("DELETE", "/drain")):
            r = httpx.request(method, kiok.status_url + path, headers=headers, timeout=5)
            assert r.status_code == 401, (method, path, headers, r.text)
            error = r.json()["error"]
            assert error["code"] == "unauthenticated" and why in error["message"], (headers, error)
            assert token not in r.text
            assert r.headers["www-authenticate"] == "Bearer"
    assert not _draining(kiok)
    # the Origin check still holds with the token (a page cannot have it, but still)
    r = httpx.post(drain, headers={**kiok.status_auth, "Origin": "http://evil.example"}, timeout=5)
    assert r.status_code == 403 and not _draining(kiok)
    # the probes and the status stay open
    for path in ("/health", "/ready", "/status", "/cluster/health"):
        assert httpx.get(kiok.status_url + path, timeout=5).status_code == 200, path


def test_the_token_file_is_private_and_new_at_each_start(kiok: Standalone) -> None:
    path = kiok.status_token_file
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.getuid(), oct(info.st_mode)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    old = kiok.status_auth
    assert len(old["Authorization"]) > len("Bearer ") + 40
    kiok.stop()
    kiok.start()
    assert kiok.status_auth != old
    assert httpx.post(kiok.status_url + "/drain", headers=old, timeout=5).status_code == 401
    assert httpx.post(kiok.status_url + "/drain", headers=kiok.status_auth, timeout=5).status_code == 200


def test_the_cli_drains_and_undrains_with_the_workers_token(kiok: Standalone, tmp_path: Path) -> None:
    cli = cli_for(kiok, tmp_path / "config")
    address = f"127.0.0.1:{kiok.status_port}"
    as_the_worker = {"KIOK_BASE_DATA_DIR": str(kiok.data_dir)}  # the worker's settings

    out = cli.ok("workers", "drain", address, env=as_the_worker)
    assert out == f"worker at http://{address} is draining (0 runs active; they carry on to their end)\n"
    assert _draining(kiok)
    out = cli.ok("workers", "undrain", address, env=as_the_worker)
    assert out == f"worker at http://{address} takes runs again (0 runs active)\n"
    assert not _draining(kiok)

    # --token-file: a copy elsewhere (e.g. fetched from the worker's host)
    copy = tmp_path / "token"
    shutil.copy(kiok.status_token_file, copy)
    assert json.loads(cli.ok("workers", "drain", address, "--token-file", str(copy), "--json")) == {
        "draining": True,
        "activeRuns": 0,
    }
    assert cli.ok("workers", "undrain", address, "--token-file", str(copy)).endswith(
        "takes runs again (0 runs active)\n"
    )
    assert not _draining(kiok)

    # a wrong token: the worker's 401, on one line
    copy.write_text("not-the-token\n")
    done = cli("workers", "drain", address, "--token-file", str(copy))
    assert_clean_error(done, "wrong status token")
    assert len(done.stderr.splitlines()) == 1, show(done)
    assert not _draining(kiok)

    # no token to read: no worker data directory here, a missing file, a directory
    done = cli("workers", "drain", address)  # KIOK_BASE_DATA_DIR unset: ./data, nothing there
    assert_clean_error(done, "cannot read the worker's status token", "status-token", "--token-file")
    assert len(done.stderr.splitlines()) == 1, show(done)
    for path in (tmp_path / "missing", tmp_path):
        done = cli("workers", "undrain", address, "--token-file", str(path))
        assert_clean_error(done, "cannot read the worker's status token", str(path))
        assert len(done.stderr.splitlines()) == 1, show(done)
    empty = tmp_path / "empty"
    empty.write_text("")
    assert_clean_error(cli("workers", "drain", address, "--token-file", str(empty)), "is empty")
    assert not _draining(kiok)


def test_an_unknown_path_or_method_on_the_status_port_is_a_json_error(shared_kiok: Standalone) -> None:
    """The status port answers what it has no route for as every kiok port does: the error
    shape clients parse, not a framework's plain text."""
    missing = shared_kiok.http("GET", shared_kiok.status_url + "/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "no such endpoint"}}
    wrong = shared_kiok.http("PUT", shared_kiok.status_url + "/health")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["allow"]
    drain = shared_kiok.http("PUT", shared_kiok.status_url + "/drain")  # POST drains, DELETE undoes
    assert drain.status_code == 405 and set(drain.headers["allow"].split(", ")) == {"POST", "DELETE"}
    # A path with a trailing slash is unknown too: no redirect built from the Host header,
    # before any token check, that a 307 would follow with its method and body.
    for path in ("/drain/", "/status/", "/health/", "/cluster/health/"):
        r = shared_kiok.http("POST", shared_kiok.status_url + path, headers={"Host": "evil.example"})
        assert r.status_code in (404, 405) and "location" not in r.headers, (path, r.status_code, r.headers)
