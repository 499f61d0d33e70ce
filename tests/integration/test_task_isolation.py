"""A task cannot read what kiok holds (issue 13 §2). Real ``kiok standalone`` and
``kiok master`` + ``kiok worker`` processes, running as root as CI does: a task tries to read
the master key, the data directory, the worker credential, kiok's ``/proc`` entries and the
admin socket, and a task's script (with a resolved secret in it) is looked for in every
command line and in its working directory. The data directories sit in a directory anyone
may enter, so what stops the task is kiok's isolation, not pytest's private tmp_path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.testing.process import Master, Standalone, WorkerProcess, store_digest

SECRET = "zz-isolation-secret-4711"

#: Prints "denied <what>" or "LEAK <what>" for each attempt on what kiok holds. Paths and
#: pids arrive as params (KIOK_PARAM_*), the same text on the old code and the new.
PROBE = r"""
probe() { what=$1; shift; if "$@" >/dev/null 2>&1; then echo "LEAK $what"; else echo "denied $what"; fi; }
D=$KIOK_PARAM_DATA; P=$KIOK_PARAM_PID
echo "uid $(id -u)"
probe master.key cat "$D/master.key"
probe data-dir ls "$D"
probe state cat "$D/state/CURRENT"
probe credential cat "$KIOK_PARAM_CREDENTIAL"
probe environ cat "/proc/$P/environ"
probe cmdline cat "/proc/$P/cmdline"
mem() {
  a=$(head -n 1 "/proc/$P/maps" | cut -d- -f1) || return 1
  [ "$(dd if="/proc/$P/mem" bs=1 count=1 skip=$((0x$a)) | wc -c)" -eq 1 ]
}
probe mem mem
secrets() { cat /proc/[0-9]*/environ 2>/dev/null | tr "\0" "\n" | grep -q "^KIOK_IAM\|^KIOK_WORKER_JOIN"; }
probe any-kiok-environ secrets
"""

#: The admin socket, from a python task: connecting must fail.
SOCKET_PROBE = """
import os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(os.environ["KIOK_PARAM_SOCKET"])
    s.sendall(b'{"op": "reset-password", "user": "admin"}\\n')
    print("LEAK admin-socket", s.makefile().readline().strip())
except OSError as e:
    print("denied admin-socket", type(e).__name__)
"""


def dag(dag_id: str) -> str:
    return f"""
dag: {{id: {dag_id}, params: {{data: "", pid: "", credential: "", socket: ""}}}}
tasks:
  - id: probe
    script: |
{_indent(PROBE, 6)}
  - id: socket
    type: python
    script: |
{_indent(SOCKET_PROBE, 6)}
"""


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.strip().splitlines())


def outcomes(log: str) -> dict[str, str]:
    """{what: "denied" | "LEAK"} from a probe's log."""
    found = {}
    for line in log.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in ("denied", "LEAK"):
            found[rest.split()[0]] = verdict
    return found


@pytest.fixture
def open_root(task_tmp_path: Path) -> Path:
    """Where the data directories go: a directory any user may enter."""
    return task_tmp_path


@pytest.fixture
def standalone(open_root: Path) -> Iterator[Standalone]:
    node = Standalone(open_root / "kiok")
    node.start()
    yield node
    node.stop()


def test_a_task_cannot_reach_what_standalone_kiok_holds(standalone: Standalone) -> None:
    k = standalone
    assert k.proc is not None and (k.data_dir / "master.key").exists()
    assert k.http("GET", k.status_url + "/status").json()["taskIsolation"] == "user+pidns"
    assert k.http("GET", k.url + "/cluster/health").json()["taskIsolation"] == "user+pidns"
    k.register(dag("iso_standalone"))
    run_id = k.trigger(
        "iso_standalone",
        {
            "data": str(k.data_dir),
            "pid": str(k.proc.pid),
            "credential": str(k.data_dir / "master.key"),
            "socket": str(k.data_dir / "admin.sock"),
        },
    )
    run = k.wait_run(run_id, 30)
    assert run["state"] == "SUCCESS", run
    log = k.log(run_id, "probe")
    assert int(log.split("uid ", 1)[1].split()[0]) != 0, log
    found = outcomes(log) | outcomes(k.log(run_id, "socket"))
    assert set(found) == {
        "master.key",
        "data-dir",
        "state",
        "credential",
        "environ",
        "cmdline",
        "mem",
        "any-kiok-environ",
        "admin-socket",
    }, log
    assert {what for what, verdict in found.items() if verdict != "denied"} == set(), log


def test_a_task_cannot_reach_the_worker_credential_or_join_token(open_root: Path) -> None:
    master = Master(open_root / "master")
    worker: WorkerProcess | None = None
    try:
        master.start()
        worker = WorkerProcess(
            open_root / "worker",
            master.internal_address,
            "iso-worker",
            {"KIOK_WORKER_JOIN_TOKEN": master.join_token()},
        )
        worker.start()
        master.wait_open()
        credential = worker.data_dir / "worker-credential"
        assert credential.exists() and worker.proc is not None
        assert worker.status()["taskIsolation"] == "user+pidns"
        health = master.http("GET", master.url + "/cluster/health").json()
        assert health["taskIsolation"] == "user+pidns", health
        master.register(dag("iso_cluster"))
        run_id = master.trigger(
            "iso_cluster",
            {
                "data": str(master.data_dir),  # on this host too: its key, its store
                "pid": str(worker.proc.pid),
                "credential": str(credential),
                "socket": str(master.data_dir / "admin.sock"),
            },
        )
        run = master.wait_run(run_id, 30)
        assert run["state"] == "SUCCESS", run
        log = master.log(run_id, "probe")
        found = outcomes(log) | outcomes(master.log(run_id, "socket"))
        assert len(found) == 9 and {w for w, v in found.items() if v != "denied"} == set(), log
    finally:
        if worker is not None:
            worker.stop()
        master.stop()


def test_a_script_with_a_secret_is_in_no_command_line_and_no_file(standalone: Standalone) -> None:
    k = standalone
    r = k.api("POST", "/api/v1/connections", json={"connectionId": "iso", "properties": {"value": SECRET}})
    assert r.status_code == 201, r.text
    k.register(
        """
dag: {id: iso_secret}
tasks:
  - id: sh
    script: |
      S="${secret.iso}"
      for p in /proc/[0-9]*; do
        if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -qF -- "$S"; then echo "LEAK cmdline $p"; fi
      done
      if grep -rqF -- "$S" . 2>/dev/null; then echo "LEAK workdir"; fi
      echo "files [$(ls -A)] home [$HOME]"
  - id: py
    type: python
    script: |
      import json, os
      s = "${secret.iso}"
      def cmdline(pid):
          try:
              return open(f"/proc/{pid}/cmdline", "rb").read()
          except FileNotFoundError:  # its parent (template, spawner): hidden from an attempt
              return b""
      leaks = [c.decode() for c in map(cmdline, (os.getpid(), os.getppid())) if s.encode() in c]
      print(json.dumps({"leaks": leaks, "files": os.listdir(".")}))
"""
    )
    run = k.wait_run(k.trigger("iso_secret"), 30)
    assert run["state"] == "SUCCESS", run
    sh = k.log(run_id := run["runId"], "sh")
    assert "LEAK" not in sh and sh.startswith("files [] home [/"), sh
    assert json.loads(k.log(run_id, "py")) == {"leaks": [], "files": []}
    # Nothing of the secret on disk either, where the test (root) can look.
    for root in (k.data_dir, Path(sh.split("home [", 1)[1].split("]")[0]).parent):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert SECRET.encode() not in path.read_bytes(), path


def test_without_root_or_with_isolation_off_kiok_says_so(open_root: Path) -> None:
    k = Standalone(open_root / "off", {"KIOK_WORKER_TASK_ISOLATION": "none"})
    try:
        k.start()
        assert k.http("GET", k.status_url + "/status").json()["taskIsolation"] == "none"
        assert k.http("GET", k.url + "/cluster/health").json()["taskIsolation"] == "none"
        warnings = [line for line in k.read_log().splitlines() if "WARNING" in line and "isolation" in line]
        assert len(warnings) == 1, k.read_log()
    finally:
        k.stop()
    # Asking for user isolation where it cannot be had (here: a bad setting) stops kiok with
    # one line, no traceback.
    bad = Standalone(open_root / "bad", {"KIOK_WORKER_TASK_ISOLATION": "strict"})
    with pytest.raises(RuntimeError):
        bad.start(timeout_s=15)
    refusal = "kiok.worker.task.isolation (KIOK_WORKER_TASK_ISOLATION): expected one of auto, user, none"
    assert refusal in bad.read_log()
    assert "Traceback" not in bad.read_log()


def test_the_master_key_can_come_from_a_private_file(open_root: Path) -> None:
    key_file = open_root / "master-key"
    key_file.write_text("kiok-isolation-test-master-key-0123456789\n")
    key_file.chmod(0o644)
    lax = Standalone(open_root / "lax", {"KIOK_KMS_MASTER_KEY_FILE": str(key_file)})
    with pytest.raises(RuntimeError):
        lax.start(timeout_s=15)
    assert "is readable by others than its owner (mode 644): chmod 600 it" in lax.read_log()
    assert "Traceback" not in lax.read_log()
    key_file.chmod(0o600)
    k = Standalone(open_root / "filed", {"KIOK_KMS_MASTER_KEY_FILE": str(key_file)})
    try:
        k.start()
        assert not (k.data_dir / "master.key").exists()  # no generated key: the file's was used
        assert "KIOK_MASTER_KEY is not set" not in k.read_log()
    finally:
        k.stop()
    store_digest(k.data_dir, "kiok-isolation-test-master-key-0123456789")  # it opens with that key
