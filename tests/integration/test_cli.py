"""The real ``kiok`` executable against a real ``kiok standalone``: login and saved tokens,
``--token``/``KIOK_USER_TOKEN``, registering YAML, JSON and Python DAG files, listing, pausing
and deleting DAGs, triggering with ``--wait``, run status, run lists, task and run logs (also
followed while the task runs), cancelling, an unreachable master, and the first-login password
change. Every ``kiok`` call is a subprocess with its own config directory; no mocks."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone, free_port, kiok_executable

CLI_TIMEOUT_S = 30

PY_DAGS = """\
from kiok import Dag, secret

dag = Dag("pydag", schedule=None, catchup=False, default_timeout="5m")
a = dag.task("a", script="echo hi")
dag.task("b", script="print('b')", task_type="python", requires=["a"])

other = Dag("pydag2", schedule=None)
other.task("only", script="echo two")

TOKEN_REF = secret("unused")  # referenced by no task: the import and the helper just work
"""


@dataclass
class KiokCli:
    """Runs the ``kiok`` executable for one master with one private config directory."""

    master: str
    config_home: Path
    #: The ``kiok`` program; None: the one next to this Python.
    executable: str | None = None

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIOK_")}
        env.update(KIOK_MASTER=self.master, XDG_CONFIG_HOME=str(self.config_home))
        env.update(extra or {})
        return env

    def argv(self, args: tuple[str, ...]) -> list[str]:
        return [self.executable or kiok_executable(), *args]

    def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = CLI_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(args),
            env=self.env(env),
            cwd=self.config_home.parent,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """stdout of a command that must exit 0."""
        done = self(*args, env=env)
        assert done.returncode == 0, show(done)
        return done.stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(args),
            env=self.env(),
            cwd=self.config_home.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def show(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


def assert_clean_error(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 1, ``error: ...`` on stderr naming every ``expected`` text, and no traceback."""
    assert done.returncode == 1, show(done)
    assert done.stderr.startswith("error: "), show(done)
    for text in expected:
        assert text in done.stderr, show(done)
    assert "Traceback" not in done.stderr + done.stdout, show(done)


def cli_for(node: Standalone, config_home: Path) -> KiokCli:
    return KiokCli(f"127.0.0.1:{node.admin_port}", config_home)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    """A standalone shipping log batches every 200 ms, so a followed log moves while its task runs."""
    env = {"KIOK_WORKER_TASK_SLOTS": "8", "KIOK_JOBLOG_WORKER_BATCH_INTERVAL_MS": "200"}
    standalone = Standalone(tmp_path_factory.mktemp("cli") / "kiok", env)
    standalone.start()
    yield standalone
    standalone.stop()


@pytest.fixture(scope="module")
def cli(node: Standalone, tmp_path_factory: pytest.TempPathFactory) -> KiokCli:
    """``kiok`` logged in as admin through ``kiok login`` (the saved session is used after)."""
    logged_in = cli_for(node, tmp_path_factory.mktemp("cli-user") / "config")
    logged_in.ok("login", "--user", "admin", "--password", ADMIN_PASSWORD)
    return logged_in


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def register(cli: KiokCli, tmp_path: Path, yaml_text: str, name: str = "dag.yaml") -> None:
    done = cli("dags", "register", str(write(tmp_path, name, yaml_text)))
    assert done.returncode == 0 and done.stdout.startswith("registered "), show(done)


def trigger(cli: KiokCli, dag_id: str, *args: str) -> str:
    run_id = cli.ok("trigger", dag_id, *args).strip()
    assert run_id and "\n" not in run_id
    return run_id


def task_state(node: Standalone, run_id: str, task_id: str) -> str | None:
    task = node.run(run_id)["tasks"].get(task_id)
    return task.get("state") if isinstance(task, dict) else None


def wait_task_running(node: Standalone, run_id: str, task_id: str) -> None:
    node.wait_for(lambda: task_state(node, run_id, task_id) == "RUNNING", 20, f"{task_id} RUNNING", 0.02)


def task_rows(status: str) -> dict[str, list[str]]:
    """The task table of ``kiok runs status`` (after the blank line), split into cells by task id."""
    _, _, tasks = status.partition("\n\n")
    lines = tasks.splitlines()
    assert lines and lines[0].split() == ["TASK", "STATE", "ATTEMPT", "DURATION", "EXIT", "DETAIL"], status
    return {line.split()[0]: line.split() for line in lines[1:]}


# --- login and tokens -------------------------------------------------------------------------


def test_login_saves_a_session_that_later_commands_use(node: Standalone, tmp_path: Path) -> None:
    cli = cli_for(node, tmp_path / "config")
    assert_clean_error(cli("dags", "list"), "not logged in", "kiok login")

    done = cli("login", "--user", "admin", "--password", "wrong-password")
    assert_clean_error(done)
    assert not (tmp_path / "config" / "kiok" / "credentials.json").exists()

    out = cli.ok("login", "--user", "admin", "--password", ADMIN_PASSWORD)
    assert (
        out
        == f"logged in to http://127.0.0.1:{node.admin_port} as admin (context localhost:{node.admin_port})\n"
    )
    saved = tmp_path / "config" / "kiok" / "credentials.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    entry = json.loads(saved.read_text())["contexts"][f"localhost:{node.admin_port}"]
    assert entry["masters"] == [f"http://127.0.0.1:{node.admin_port}"]
    assert entry["user"] == "admin" and entry["accessToken"] and entry["refreshToken"]
    assert ADMIN_PASSWORD not in saved.read_text()

    assert "dags" in json.loads(cli.ok("--json", "dags", "list"))

    context = f"localhost:{node.admin_port} (http://127.0.0.1:{node.admin_port})"
    assert cli.ok("logout") == f"logged out of {context}\n"
    assert_clean_error(cli("dags", "list"), "not logged in")


def test_token_option_and_environment_variable(node: Standalone, tmp_path: Path) -> None:
    cli = cli_for(node, tmp_path / "config")  # nothing saved: only the given token authenticates
    token = node.token
    assert "dags" in json.loads(cli.ok("--token", token, "--json", "dags", "list"))
    assert "dags" in json.loads(cli.ok("--json", "dags", "list", env={"KIOK_USER_TOKEN": token}))
    assert_clean_error(cli("--token", "not-a-jwt", "dags", "list"), "invalid token")
    assert_clean_error(cli("dags", "list", env={"KIOK_USER_TOKEN": "not-a-jwt"}), "invalid token")
    assert not (tmp_path / "config" / "kiok" / "credentials.json").exists()


def test_unreachable_master(tmp_path: Path) -> None:
    cli = KiokCli(f"127.0.0.1:{free_port()}", tmp_path / "config")  # nothing listens there
    for args in (("dags", "list"), ("login", "--password", "x"), ("runs", "status", "r1")):
        assert_clean_error(cli(*args), "cannot reach")


def test_default_admin_must_change_password_first(standalone_factory: Any, tmp_path: Path) -> None:
    fresh: Standalone = standalone_factory("fresh", env={"KIOK_IAM_ADMIN_PASSWORD": ""})
    cli = cli_for(fresh, tmp_path / "config")
    out = cli.ok("login", "--user", "admin", "--password", "admin")
    assert "password change required" in out and "kiok change-password" in out

    assert_clean_error(cli("dags", "list"), "password", "kiok change-password")
    assert_clean_error(cli("change-password", "--old", "admin", "--new", "short"), "at least")

    new_password = "A-much-better-pw-42"
    assert cli.ok("change-password", "--old", "admin", "--new", new_password) == "password changed\n"
    assert cli.ok("dags", "list") == "no DAGs registered\n"  # the saved session was renewed

    out = cli.ok("login", "--password", new_password)
    assert "password change required" not in out
    assert_clean_error(cli("login", "--password", "admin"))
    assert cli.ok("dags", "list") == "no DAGs registered\n"


# --- DAGs -------------------------------------------------------------------------------------


def test_register_yaml_json_and_python_files(cli: KiokCli, node: Standalone, tmp_path: Path) -> None:
    yaml_file = write(
        tmp_path,
        "ydag.yaml",
        "dag: {id: ydag, params: {who: nobody}}\ntasks:\n  - {id: t, script: 'echo y ${params.who}'}\n",
    )
    json_file = write(
        tmp_path,
        "jdag.json",
        json.dumps({"dag": {"id": "jdag"}, "tasks": [{"id": "t", "script": "echo j"}]}),
    )
    py_file = write(tmp_path, "pydags.py", PY_DAGS)
    out = cli.ok("dags", "register", str(yaml_file), str(json_file), str(py_file))
    assert out.splitlines() == ["registered ydag", "registered jdag", "registered pydag", "registered pydag2"]

    listed = {d["dagId"]: d for d in json.loads(cli.ok("--json", "dags", "list"))["dags"]}
    assert {"ydag", "jdag", "pydag", "pydag2"} <= set(listed)
    pydag = json.loads(cli.ok("--json", "dags", "show", "pydag"))
    assert pydag["tasks"] == 2 and [t["id"] for t in pydag["spec"]["tasks"]] == ["a", "b"]
    assert pydag["spec"]["tasks"][1]["requires"] == ["a"] and pydag["spec"]["tasks"][1]["type"] == "python"

    run_id = cli.ok("trigger", "pydag", "--wait", "--interval", "0.1").splitlines()[0]
    assert cli.ok("runs", "logs", run_id, "a") == "hi\n"
    assert cli.ok("runs", "logs", run_id, "b") == "b\n"
    run_id = cli.ok("trigger", "ydag", "--arg", "who=json-and-yaml", "--wait", "--interval", "0.1")
    assert cli.ok("runs", "logs", run_id.splitlines()[0], "t") == "y json-and-yaml\n"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("typ.yaml", "dag: {id: typ}\ntasks:\n  - {id: a, type: spark, script: x}\n", "spark"),
        ("syntax.yaml", "dag: {id: syn}\ntasks:\n  - {id: a, script: [unclosed\n", "line"),
        ("dangling.json", json.dumps({"dag": {"id": "dj"}, "tasks": [{"id": "a", "requires": ["zz"]}]}),
         "zz"),
        ("notjson.json", "{not json", "JSON"),
        ("cycle.py", "from kiok import Dag\nd = Dag('cyc')\nd.task('a', 'true', requires='b')\n"
         "d.task('b', 'true', requires='a')\n", "cycle"),
        ("raises.py", "from kiok import Dag\nd = Dag('boom')\nraise RuntimeError('no config here')\n",
         "no config here"),
        ("empty.py", "x = 1\n", "no module-level Dag"),
    ],
)  # fmt: skip
def test_invalid_dag_file_is_refused_without_traceback(
    cli: KiokCli, tmp_path: Path, name: str, text: str, expected: str
) -> None:
    bad = write(tmp_path, name, text)
    done = cli("dags", "register", str(bad))
    assert_clean_error(done, str(bad), expected)
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert "kiok.compile" not in done.stderr  # the user ran `kiok`, not an internal module


def test_one_bad_file_fails_the_command_but_the_good_one_registers(cli: KiokCli, tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", "dag: {id: mixed_good}\ntasks:\n  - {id: a, script: 'true'}\n")
    bad = write(tmp_path, "bad.yaml", "dag: {id: mixed_bad}\ntasks: []\n")
    done = cli("dags", "register", str(bad), str(good))
    assert done.returncode == 1, show(done)
    assert done.stdout == "registered mixed_good\n"
    assert done.stderr.startswith(f"error: {bad}: ") and "Traceback" not in done.stderr
    assert "mixed_good" in cli.ok("dags", "list")


def test_register_a_directory_tries_every_dag_file_under_it(cli: KiokCli, tmp_path: Path) -> None:
    root = tmp_path / "dags"
    write(
        root / "a",
        "one.yaml",
        "dag: {id: dir_one, schedule: '@daily'}\ntasks:\n  - {id: a, script: 'true'}\n",
    )
    write(
        root / "a" / "deeper",
        "two.json",
        '{"dag": {"id": "dir_two"}, "tasks": [{"id": "a", "script": "true"}]}',
    )
    write(root, "README.md", "not a DAG")
    write(root / ".hidden", "x.yaml", "dag: {id: dir_hidden}\ntasks: []\n")
    write(
        root, "bad.yaml", "dag: {id: dir_bad, schedule: '@every 1h'}\ntasks:\n  - {id: a, script: 'true'}\n"
    )
    done = cli("dags", "register", str(root))
    assert done.returncode == 1, show(done)
    assert done.stdout == "registered dir_two\nregistered dir_one\n"  # path order: a/deeper/ < a/one.yaml
    assert "bad.yaml" in done.stderr and "unsupported schedule '@every 1h'" in done.stderr
    listed = cli.ok("dags", "list")
    assert "dir_hidden" not in listed and "0 0 * * *" in listed


def test_list_pause_unpause_and_delete(cli: KiokCli, tmp_path: Path) -> None:
    register(
        cli, tmp_path, "dag: {id: lifecycle, schedule: '0 3 * * *'}\ntasks:\n  - {id: a, script: 'true'}\n"
    )
    table = cli.ok("dags", "list").splitlines()
    assert table[0].split() == ["ID", "SCHEDULE", "PAUSED", "TASKS"]
    rows = [line.split() for line in table[1:]]
    assert ["lifecycle", "0", "3", "*", "*", "*", "no", "1"] in rows

    def paused() -> bool:
        dags = {d["dagId"]: d for d in json.loads(cli.ok("dags", "list", "--json"))["dags"]}
        return bool(dags["lifecycle"]["paused"])

    assert cli.ok("dags", "pause", "lifecycle") == "paused lifecycle\n"
    assert paused()
    assert_clean_error(cli("trigger", "lifecycle"), "paused")
    assert cli.ok("dags", "unpause", "lifecycle") == "unpaused lifecycle\n"
    assert not paused()
    assert cli.ok("dags", "delete", "lifecycle") == "deleted lifecycle\n"
    assert "lifecycle" not in json.dumps(json.loads(cli.ok("--json", "dags", "list")))
    assert_clean_error(cli("dags", "show", "lifecycle"))
    assert_clean_error(cli("trigger", "lifecycle"))


# --- runs -------------------------------------------------------------------------------------


def test_trigger_wait_status_list_and_logs(cli: KiokCli, node: Standalone, tmp_path: Path) -> None:
    register(
        cli,
        tmp_path,
        """
dag: {id: cli_chain, params: {who: nobody, n: "0"}}
tasks:
  - {id: first, script: 'printf "hello %s\\n" "${params.who}"; printf "n=%s no newline" "${params.n}"'}
  - {id: second, requires: [first], type: python, script: 'print("second", "ünïcode")'}
""",
    )
    done = cli(
        "trigger", "cli_chain", "--arg", "who=cli user", "--arg", "n=a=b", "--wait", "--interval", "0.1"
    )
    assert done.returncode == 0, show(done)
    run_id = done.stdout.splitlines()[0]
    assert run_id.startswith("cli_chain")
    assert "state:     SUCCESS" in done.stdout

    status = cli.ok("runs", "status", run_id)
    assert f"run:       {run_id}" in status and "dag:       cli_chain" in status
    assert "state:     SUCCESS" in status and "args:      who=cli user n=a=b" in status
    rows = task_rows(status)
    assert set(rows) == {"first", "second"}
    assert all(row[1] == "SUCCESS" and row[2] == "1" for row in rows.values())

    doc = json.loads(cli.ok("runs", "status", run_id, "--json"))  # --json after the command works too
    assert doc == json.loads(cli.ok("--json", "runs", "status", run_id))
    assert doc["runId"] == run_id and doc["state"] == "SUCCESS"
    assert doc["args"] == {"who": "cli user", "n": "a=b"}
    assert {t: v["state"] for t, v in doc["tasks"].items()} == {"first": "SUCCESS", "second": "SUCCESS"}

    assert cli.ok("runs", "logs", run_id, "first") == "hello cli user\nn=a=b no newline"
    assert cli.ok("runs", "logs", run_id, "second") == "second ünïcode\n"
    assert cli.ok("runs", "logs", run_id, "second") == node.log(run_id, "second")
    run_log = cli.ok("runs", "logs", run_id, "__run__")
    assert "first attempt 1 started" in run_log and "run finished SUCCESS" in run_log
    page = json.loads(cli.ok("--json", "runs", "logs", run_id, "first"))
    assert page["data"] == "hello cli user\nn=a=b no newline" and page["complete"] is True

    other = trigger(cli, "cli_chain")
    node.wait_run(other)
    listed = cli.ok("runs", "list", "--dag", "cli_chain").splitlines()
    assert listed[0].split()[:5] == ["RUN", "DAG", "STATE", "TRIGGER", "CREATED"]
    assert [line.split()[0] for line in listed[1:]] == [other, run_id]  # newest first
    assert all(line.split()[1:3] == ["cli_chain", "SUCCESS"] for line in listed[1:])
    runs = json.loads(cli.ok("--json", "runs", "list", "--dag", "cli_chain"))["runs"]
    assert [r["runId"] for r in runs] == [other, run_id]
    assert cli.ok("runs", "list", "--dag", "no_such_dag_here") == "no runs\n"


def test_trigger_wait_fails_for_a_failing_dag(cli: KiokCli, tmp_path: Path) -> None:
    register(
        cli,
        tmp_path,
        """
dag: {id: cli_fails}
tasks:
  - {id: boom, script: 'echo about to fail; exit 3'}
  - {id: after, requires: [boom], script: 'echo never'}
""",
    )
    done = cli("trigger", "cli_fails", "--wait", "--interval", "0.1")
    assert done.returncode == 1, show(done)
    run_id = done.stdout.splitlines()[0]
    assert "state:     FAILED" in done.stdout and "Traceback" not in done.stderr
    doc = json.loads(cli.ok("--json", "runs", "status", run_id))
    assert doc["state"] == "FAILED"
    assert doc["tasks"]["boom"]["state"] == "FAILED" and doc["tasks"]["boom"]["exitCode"] == 3
    assert doc["tasks"]["after"]["state"] == "SKIPPED"
    rows = task_rows(cli.ok("runs", "status", run_id))
    assert {t: row[1] for t, row in rows.items()} == {"boom": "FAILED", "after": "SKIPPED"}
    assert rows["boom"][4] == "3"  # TASK STATE ATTEMPT DURATION EXIT
    assert cli.ok("runs", "logs", run_id, "boom") == "about to fail\n"
    assert json.loads(cli.ok("--json", "runs", "list", "--dag", "cli_fails", "--state", "failed"))["runs"]


def test_logs_follow_a_running_task_until_it_ends(cli: KiokCli, node: Standalone, tmp_path: Path) -> None:
    register(
        cli,
        tmp_path,
        "dag: {id: cli_follow}\ntasks:\n  - {id: slow, script: 'echo first; sleep 1; echo second'}\n",
    )
    run_id = trigger(cli, "cli_follow")
    wait_task_running(node, run_id, "slow")
    # Follow from the moment the first line is stored: the task is still sleeping, so the
    # command has to keep polling for the second line and then notice the log is complete.
    node.wait_for(lambda: node.log(run_id, "slow").startswith("first\n"), 10, "the first line", 0.02)
    with cli.popen("runs", "logs", run_id, "slow", "--follow") as proc:
        try:
            out, err = proc.communicate(timeout=15)  # it must stop by itself once the task is done
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("`kiok runs logs --follow` did not stop after the task ended")
    assert proc.returncode == 0, err
    assert out == "first\nsecond\n"
    assert node.run(run_id)["tasks"]["slow"]["state"] == "SUCCESS"


def test_cancel_a_running_run(cli: KiokCli, node: Standalone, tmp_path: Path) -> None:
    register(
        cli, tmp_path, "dag: {id: cli_cancel}\ntasks:\n  - {id: long, script: 'echo started; sleep 60'}\n"
    )
    run_id = trigger(cli, "cli_cancel")
    wait_task_running(node, run_id, "long")
    assert cli.ok("runs", "cancel", run_id) == f"cancel requested for {run_id}\n"
    run = node.wait_run(run_id, 20)
    assert run["state"] == "CANCELLED" and run["tasks"]["long"]["state"] == "CANCELLED"
    assert "state:     CANCELLED" in cli.ok("runs", "status", run_id)
    assert_clean_error(cli("runs", "status", "no-such-run"))
