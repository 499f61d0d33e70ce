"""docs/cluster.md's "Starting" steps, run as written from a fresh data directory (issue 13 §7).

The first ``sh`` block under "## Starting" is read from the file and carried out line by
line with bash, as one shell session would: ``export`` and ``NAME=$(...)`` carry over, a
line ending in ``kiok master``/``kiok worker`` starts that process and waits for it, and
password prompts get their answers on stdin. What the doc cannot know is substituted: free
ports for 8080/19999, 127.0.0.1 for ``master-host``, temporary directories for
``/var/lib/kiok`` and ``/etc/kiok`` (certificates from a throw-away CA). No password is
preset: the master starts with the default admin/admin, as a new cluster does."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kiok.testing.process import free_port
from kiok.testing.tls import TestCA

DOC = Path(__file__).resolve().parents[2] / "docs" / "cluster.md"
NEW_PASSWORD = "Docs-Walkthrough-Pw-42"
#: Answers to the prompts of the commands that ask (login: password; change-password: old,
#: new, new again).
PROMPTS = {"kiok login": "admin\n", "kiok change-password": f"admin\n{NEW_PASSWORD}\n{NEW_PASSWORD}\n"}
COMMAND_TIMEOUT_S = 60


def starting_steps(doc: str) -> list[str]:
    """The commands of the first ``sh`` block after "## Starting": comments and blank lines
    dropped, ``\\`` continuations and here-documents kept with their command."""
    section = doc.split("\n## Starting\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    steps: list[str] = []
    lines = iter(block.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        step = line
        while step.endswith("\\"):
            step = step[:-1] + next(lines)
        heredoc = re.search(r"<<'?(\w+)'?", step)
        if heredoc:
            for body in lines:
                step += "\n" + body
                if body == heredoc.group(1):
                    break
        steps.append(step)
    return steps


class Session:
    """One shell session that runs the doc's steps; long-running ones become processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.admin_port, self.internal_port, self.status_port = free_port(), free_port(), free_port()
        self.certs = root / "etc-kiok"
        ca = TestCA(self.certs, name="ca")  # writes ca.pem
        ca.issue("master")
        ca.issue("worker-1")
        self.ca = ca.cert
        self.cwd = root / "cli"
        self.cwd.mkdir()
        self.vars: dict[str, str] = {}
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def substitute(self, step: str) -> str:
        for doc_value, ours in (
            ("/var/lib/kiok", str(self.root / "var-lib-kiok")),
            ("/etc/kiok/", f"{self.certs}/"),
            ("master-host:8080", f"127.0.0.1:{self.admin_port}"),
            ("master-host:19999", f"127.0.0.1:{self.internal_port}"),
        ):
            step = step.replace(doc_value, ours)
        assert "master-host" not in step, f"a host or port the test does not know: {step}"
        return step

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIOK_")}
        env.update(
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            XDG_CONFIG_HOME=str(self.root / "config"),
            # the doc's default ports, moved out of the way of other tests
            KIOK_MASTER_ADMIN_PORT=str(self.admin_port),
            KIOK_MASTER_INTERNAL_PORT=str(self.internal_port),
            KIOK_WORKER_STATUS_PORT=str(self.status_port),
        )
        env.update(self.vars)
        return env

    def run(self, step: str) -> None:
        step = self.substitute(step)
        words = step.split()
        if words[0] == "export":
            for exported in shlex.split(step)[1:]:
                name, _, value = exported.partition("=")
                self.vars[name] = value
            return
        assignment = re.fullmatch(r"(\w+)=\$\((.*)\)", step)
        if assignment:
            self.vars[assignment.group(1)] = self.shell(assignment.group(2)).strip()
            return
        if words[-2:] in (["kiok", "master"], ["kiok", "worker"]):
            self.start(step, words[-1])
            return
        self.shell(step)

    def shell(self, command: str) -> str:
        answers = next((text for prefix, text in PROMPTS.items() if command.startswith(prefix)), "")
        done = subprocess.run(
            ["bash", "-c", command],
            input=answers,
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            start_new_session=True,  # no terminal: prompts read their answers from stdin
        )
        assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self, command: str, kind: str) -> None:
        log_path = self.root / f"{kind}.log"
        machine = self.root / kind
        machine.mkdir(exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                ["bash", "-c", command],
                env=self.env,
                cwd=machine,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append((proc, log_path))
        url = (
            f"https://127.0.0.1:{self.admin_port}/healthz"
            if kind == "master"
            else f"https://127.0.0.1:{self.status_port}/ready"
        )
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"{command} exited:\n{log_path.read_text()[-3000:]}"
            try:
                if httpx.get(url, verify=str(self.ca), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{command} not up:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.05)

    def stop(self) -> None:
        for proc, _ in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait(5)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    s = Session(tmp_path)
    yield s
    s.stop()


def test_the_starting_steps_of_docs_cluster_md_work_as_written(session: Session) -> None:
    steps = starting_steps(DOC.read_text())
    commands = [s.split()[-2:] for s in steps]
    assert ["kiok", "master"] in commands and ["kiok", "worker"] in commands
    assert any(s.startswith("kiok change-password") for s in steps), "a new cluster's admin must"
    for step in steps:
        session.run(step)
    master_log = (session.root / "master.log").read_text()
    assert "without TLS" not in master_log  # the doc's master serves TLS
    health = httpx.get(
        f"https://127.0.0.1:{session.admin_port}/cluster/health", verify=str(session.ca), timeout=5
    ).json()
    assert health["status"] == "healthy" and health["connectedWorkers"] == 1
    login = httpx.post(
        f"https://127.0.0.1:{session.admin_port}/api/v1/auth/login",
        json={"user": "admin", "password": NEW_PASSWORD},
        verify=str(session.ca),
    )
    assert login.status_code == 200 and login.json()["requirePasswordChange"] is False


def test_a_new_cluster_admin_can_change_password_and_refresh_before_it_opens(session: Session) -> None:
    """The 503 gate lets a fresh admin/admin reach change-password and refresh, and join-token
    creation once the password is changed; everything else stays closed until a worker."""
    session.vars.update(
        KIOK_TLS_CERT=str(session.certs / "master.crt"), KIOK_TLS_KEY=str(session.certs / "master.key")
    )
    session.start("kiok master", "master")
    base = f"https://127.0.0.1:{session.admin_port}/api/v1"
    with httpx.Client(base_url=base, verify=str(session.ca), timeout=10) as client:
        first = client.post("/auth/login", json={"user": "admin", "password": "admin"}).json()
        assert first["requirePasswordChange"] is True
        header = {"Authorization": f"Bearer {first['accessToken']}"}
        refused = client.post("/admin/join-tokens", json={"role": "worker"}, headers=header)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "password_change_required"
        refreshed = client.post("/auth/refresh", json={"refreshToken": first["refreshToken"]})
        assert refreshed.status_code == 200, refreshed.text
        changed = client.post(
            "/auth/change-password",
            json={"oldPassword": "admin", "newPassword": NEW_PASSWORD},
            headers={"Authorization": f"Bearer {refreshed.json()['accessToken']}"},
        )
        assert changed.status_code == 200, changed.text
        header = {"Authorization": f"Bearer {changed.json()['accessToken']}"}
        assert client.post("/admin/join-tokens", json={"role": "worker"}, headers=header).status_code == 201
        closed = client.get("/dags", headers=header)
        assert closed.status_code == 503 and closed.json()["error"]["code"] == "not_ready"
