"""The real ``kiok`` executable against three real ``kiok master`` processes (issue 17 §2):
``kiok login`` saves a context holding all three masters; with the first of them (the leader)
killed, commands through the context still work (a refused connection tries the next master,
a 503 during the election is retried) and the context remembers the master that answered;
``localhost`` reaches the same masters as ``127.0.0.1`` with the same login."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.testing.process import ADMIN_PASSWORD, MasterGroup, WorkerProcess
from tests.integration.test_cli import KiokCli, assert_clean_error, show

pytestmark = pytest.mark.slow

FAST = {"KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": "3000", "KIOK_WORKER_HEARTBEAT_INTERVAL_MS": "300"}


@pytest.fixture
def group(tmp_path: Path) -> Iterator[MasterGroup]:
    g = MasterGroup(tmp_path / "cluster", extra_env=FAST)
    yield g
    g.stop()


def test_a_context_fails_over_when_its_first_master_dies(group: MasterGroup, tmp_path: Path) -> None:
    group.start()
    leader = group.leader()
    worker: WorkerProcess = group.add_worker(leader, "w1")
    try:
        for m in group.masters.values():
            m.wait_open()
        # The leader first: killing it costs the CLI a refused connection and an election.
        ordered = [leader, *group.followers(leader)]
        urls = [f"http://127.0.0.1:{m.admin_port}" for m in ordered]
        config = tmp_path / "config"
        login = KiokCli(",".join(f"127.0.0.1:{m.admin_port}" for m in ordered), config)
        out = login.ok("login", "--context", "prod", "--user", "admin", "--password", ADMIN_PASSWORD)
        assert out == f"logged in to {urls[0]} as admin (context prod)\n"
        saved = json.loads((config / "kiok" / "credentials.json").read_text())
        assert saved["current"] == "prod" and saved["contexts"]["prod"]["masters"] == urls

        prod = KiokCli("prod", config)
        dag = tmp_path / "dag.yaml"
        dag.write_text("dag: {id: ctx}\ntasks:\n  - {id: t, script: 'echo through the context'}\n")
        assert prod.ok("dags", "register", str(dag)).startswith("registered ")

        leader.kill9()
        done = prod("trigger", "ctx", "--wait", timeout=120)
        assert done.returncode == 0, show(done)
        saved = json.loads((config / "kiok" / "credentials.json").read_text())
        assert saved["contexts"]["prod"]["active"] in urls[1:]
        runs = json.loads(prod.ok("--json", "runs", "list", "--dag", "ctx"))
        assert [r["state"] for r in runs["runs"]] == ["SUCCESS"], runs

        # A master named by address uses the context's login, however localhost is spelled;
        # the dead one is reported with what to change.
        alive = ordered[1].admin_port
        assert "ctx" in KiokCli(f"localhost:{alive}", config).ok("dags", "list")
        dead = KiokCli(f"127.0.0.1:{leader.admin_port}", config)
        assert_clean_error(dead("dags", "list"), "cannot reach", "--master or KIOK_MASTER")
    finally:
        worker.stop()
