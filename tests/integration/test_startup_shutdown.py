"""Start-up and shutdown from outside (issue 17 §1), on real processes: a refusal to start is
one line and a non-zero exit (the data directory in use, a port in use: bound before anything
is announced or bootstrapped); an unknown ``KIOK_`` variable is a warning with a suggestion;
Ctrl-C drains with progress and a second Ctrl-C stops at once, the run resuming after a
restart; ``kiok config show`` names where each setting came from and hides secrets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from kiok.testing.process import Master, Standalone, WorkerProcess, kiok_executable

pytestmark = pytest.mark.slow

EXIT_TIMEOUT_S = 30


def refused(node: Standalone) -> list[str]:
    """Run ``node`` until it exits by itself; the lines it printed (it must have failed)."""
    node.spawn()
    assert node.proc is not None
    code = node.proc.wait(EXIT_TIMEOUT_S)
    out = node.read_log()
    assert code != 0, out
    assert "Traceback" not in out, out
    return [line for line in out.splitlines() if line.strip()]


@pytest.fixture
def occupied() -> Iterator[Callable[[], int]]:
    """Listening sockets on free loopback ports, held for the test."""
    held: list[socket.socket] = []

    def take() -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        held.append(s)
        port: int = s.getsockname()[1]
        return port

    yield take
    for s in held:
        s.close()


def test_a_data_directory_in_use_refuses_the_second_process_in_one_line(
    kiok: Standalone, tmp_path: Path
) -> None:
    second = Standalone(kiok.data_dir)
    second.log_path = tmp_path / "second.log"
    lines = refused(second)
    assert len(lines) == 1, lines
    assert str(kiok.data_dir) in lines[0] and "in use" in lines[0], lines
    assert kiok.api("GET", "/api/v1/dags").status_code == 200  # the first one is unharmed


@pytest.mark.parametrize(
    ("kind", "port_attr", "setting"),
    [
        ("standalone", "admin_port", "kiok.master.admin.port"),
        ("standalone", "status_port", "kiok.worker.status.port"),
        ("standalone", "internal_port", "kiok.master.internal.port"),
        ("master", "admin_port", "kiok.master.admin.port"),
        ("master", "internal_port", "kiok.master.internal.port"),
        ("worker", "status_port", "kiok.worker.status.port"),
    ],
)
def test_a_port_in_use_refuses_in_one_line_before_anything_is_announced_or_bootstrapped(
    kind: str, port_attr: str, setting: str, tmp_path: Path, occupied: Callable[[], int]
) -> None:
    node: Standalone
    if kind == "standalone":
        node = Standalone(tmp_path / "kiok")
    elif kind == "master":
        node = Master(tmp_path / "kiok")
    else:
        node = WorkerProcess(tmp_path / "kiok", f"127.0.0.1:{occupied()}", "w1")
    port = occupied()
    setattr(node, port_attr, port)
    lines = refused(node)
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{port}" in lines[0] and setting in lines[0] and "in use" in lines[0], lines
    # nothing bootstrapped, nor written (README): no kiok.lock, worker-id, status token
    assert list(node.data_dir.iterdir()) == []


def test_an_unknown_kiok_variable_is_a_warning_with_a_suggestion(
    standalone_factory: Callable[..., Standalone],
) -> None:
    node = standalone_factory(
        env={
            "KIOK_WORKER_TASK_SLOT": "4",
            # the CLI's own variables are known: not reported
            "KIOK_MASTER": "localhost:1",
            "KIOK_USER_TOKEN": "x",
            "KIOK_ADMIN_SOCKET": "/nonexistent",
        }
    )
    warnings = [line for line in node.read_log().splitlines() if "unknown environment variable" in line]
    assert len(warnings) == 1, node.read_log()
    assert "KIOK_WORKER_TASK_SLOT " in warnings[0] and "did you mean KIOK_WORKER_TASK_SLOTS" in warnings[0]


def _log_has(node: Standalone, text: str, timeout_s: float = 30) -> str:
    def found() -> str | None:
        log = node.read_log()
        return log if text in log else None

    result: str = node.wait_for(found, timeout_s, f"{text!r} in the log")
    return result


def test_ctrl_c_drains_with_progress_and_a_second_ctrl_c_stops_at_once(
    standalone_factory: Callable[..., Standalone], task_tmp_path: Path
) -> None:
    node = standalone_factory()
    marker = task_tmp_path / "ran-once"
    started = task_tmp_path / "started"
    dag = node.register(
        f"""
dag: {{id: slowone}}
tasks:
  - id: long
    script: 'touch {started}; if [ -f {marker} ]; then exit 0; fi; touch {marker}; exec sleep 600'
"""
    )
    run_id = node.trigger(dag)
    node.wait_for(started.exists, 30, "the task to start")
    assert node.proc is not None
    os.kill(node.proc.pid, signal.SIGINT)
    log = _log_has(node, "press Ctrl-C again to stop now")
    assert "waiting for 1 running task of 1 run, up to 60 s" in log, log
    assert node.proc.poll() is None  # draining: the task still runs
    t0 = time.monotonic()
    os.kill(node.proc.pid, signal.SIGINT)
    code = node.proc.wait(15)
    assert time.monotonic() - t0 < 10
    log = node.read_log()
    assert code == 0 and "Traceback" not in log, log
    assert "stopping now" in log, log
    started.unlink()
    node.start()
    run = node.wait_run(run_id)
    assert run["state"] == "SUCCESS", run
    assert started.exists()  # it ran again after the restart


def test_readyz_is_503_shutting_down_while_a_sigterm_drains_and_healthz_stays_200(
    standalone_factory: Callable[..., Standalone], task_tmp_path: Path
) -> None:
    """A load balancer polling ``/readyz`` sent traffic for the whole drain window (200 until
    the port closed): from the first SIGTERM it is 503 with the reason, the process alive."""
    node = standalone_factory()
    started = task_tmp_path / "started"
    dag = node.register(
        f"dag: {{id: drains}}\ntasks:\n  - {{id: t, script: 'touch {started}; exec sleep 600'}}\n"
    )
    node.trigger(dag)
    node.wait_for(started.exists, 30, "the task to start")
    assert node.proc is not None
    assert httpx.get(node.url + "/readyz").status_code == 200
    os.kill(node.proc.pid, signal.SIGTERM)
    _log_has(node, "press Ctrl-C again to stop now")
    ready = httpx.get(node.url + "/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json() == {"status": "unhealthy", "ready": False, "reason": "shutting down: draining"}
    assert httpx.get(node.url + "/healthz").status_code == 200
    assert node.proc.poll() is None  # still draining: the task runs
    os.kill(node.proc.pid, signal.SIGTERM)  # the second one stops at once
    assert node.proc.wait(15) == 0


def _catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has a handler for SIGTERM (its ``SigCgt`` mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_sigterm_during_start_up_ends_it_with_one_line(
    standalone_factory: Callable[..., Standalone], fmt: str
) -> None:
    """SIGTERM in the first second of start-up ended the process without a word (the
    default action: its drain handlers were not in place yet). Sent as soon as the process
    catches SIGTERM at all, it still ends by the signal (nothing ran yet), saying so in a
    line of kiok's log format (it was Python's bare last-resort line: the signal came before
    the settings had set up the log)."""
    node = standalone_factory(env={"KIOK_LOG_FORMAT": fmt}, start=False)
    node.spawn()
    assert node.proc is not None
    node.wait_for(lambda: _catches_sigterm(node.proc.pid), 30, "a SIGTERM handler", poll_s=0.002)
    os.kill(node.proc.pid, signal.SIGTERM)
    code = node.proc.wait(EXIT_TIMEOUT_S)
    log = node.read_log()
    assert code == -signal.SIGTERM, log
    assert "Traceback" not in log and "kiok standalone: admin API" not in log, log  # not serving
    (line,) = [line for line in log.splitlines() if line.strip()]
    if fmt == "json":
        record = json.loads(line)
        assert (record["level"], record["logger"], record["service"]) == (
            "WARNING",
            "kiok.start",
            "standalone",
        )
        assert record["msg"] == "stopped during start-up (SIGTERM)", record
    else:
        assert line.endswith(" WARNING kiok.start: stopped during start-up (SIGTERM)"), line
    node.start()  # and the next start is an ordinary one


def test_config_show_names_each_source_and_hides_secrets(tmp_path: Path) -> None:
    config = tmp_path / "kiok.yaml"
    config.write_text("kiok:\n  worker:\n    labels: gpu\n  master.admin.port: 9000\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOK_")}
    env |= {
        "KIOK_WORKER_TASK_SLOTS": "3",
        "KIOK_MASTER_ADMIN_PORT": "9100",
        "KIOK_IAM_ADMIN_PASSWORD": "Very-Secret-Pw-123",
        "KIOK_WORKER_TASK_SLOT": "4",
    }

    def show(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [kiok_executable(), *args, "config", "show", "--config", str(config), "--data-dir", "/srv/kiok"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=EXIT_TIMEOUT_S)
        assert out.returncode == 0, out.stderr
        assert "Very-Secret-Pw-123" not in out.stdout + out.stderr
        return out

    out = show()
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in out.stdout.splitlines()[1:]}
    assert rows["kiok.base.data.dir"] == ["/srv/kiok", "flag --data-dir"]
    assert rows["kiok.worker.task.slots"] == ["3", "env KIOK_WORKER_TASK_SLOTS"]
    assert rows["kiok.master.admin.port"] == ["9100", "env KIOK_MASTER_ADMIN_PORT"]
    assert rows["kiok.worker.labels"] == ["gpu", f"file {config}"]
    assert rows["kiok.scheduler.catchup.max.runs"] == ["24", "default"]
    assert rows["kiok.iam.admin.password"] == ["(redacted)", "env KIOK_IAM_ADMIN_PASSWORD"]
    assert "did you mean KIOK_WORKER_TASK_SLOTS" in out.stderr

    shown = {s["key"]: s for s in json.loads(show("--json").stdout)}
    assert shown["kiok.worker.task.slots"] == {
        "key": "kiok.worker.task.slots",
        "value": 3,
        "source": "env",
        "from": "KIOK_WORKER_TASK_SLOTS",
    }
    assert shown["kiok.worker.labels"]["source"] == "file"
    assert shown["kiok.scheduler.catchup.max.runs"] == {
        "key": "kiok.scheduler.catchup.max.runs",
        "value": 24,
        "source": "default",
        "from": "",
    }
    assert shown["kiok.iam.admin.password"]["value"] == "(redacted)"
    assert shown["kiok.master.key"]["value"] == ""  # not set: nothing to hide
