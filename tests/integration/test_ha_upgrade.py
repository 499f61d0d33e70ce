"""Three real masters in the middle of an upgrade. A master still on the old version meets a
replicated entry written by the newer one (a command with a field it does not know): it
stops with one line saying so and exit code 1, rather than skipping the entry as a corrupt
one, which would leave its state different from the others' for good. Upgraded, it applies
the entry on start, and the three stores end up the same."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import kiok
from kiok.testing.process import MasterGroup, store_digest
from tests.integration.test_ha import FAST

pytestmark = pytest.mark.slow


def newer_kiok(root: Path) -> Path:
    """A copy of this kiok whose ``SetMaintenance`` command carries one more field: what a
    release adding a field to a command writes into the replicated log."""
    shutil.copytree(Path(kiok.__file__).parent, root / "kiok", ignore=shutil.ignore_patterns("__pycache__"))
    commands = root / "kiok" / "store" / "commands.py"
    source, n = re.subn(
        r'(class SetMaintenance\(Command\):.*?\n    by: str = ""\n)',
        r"\1    upgraded_field: int = 1\n",
        commands.read_text(),
        flags=re.S,
    )
    assert n == 1
    commands.write_text(source)
    return root


def test_a_master_older_than_the_leader_stops_rather_than_skip_what_it_cannot_apply(tmp_path: Path) -> None:
    newer = str(newer_kiok(tmp_path / "newer"))
    group = MasterGroup(tmp_path / "cluster", extra_env=FAST)
    *upgraded, old = group.masters.values()
    try:
        for m in upgraded:  # the leader is upgraded first, so that it writes the new field
            m.extra_env["PYTHONPATH"] = newer
            m.spawn()
        for m in upgraded:
            m.wait_ready(30)
        leader = group.leader(exclude="m3")
        assert old is group.masters["m3"] and leader is not old
        old.start()
        group.add_worker(leader, "w1")
        leader.wait_open()

        r = leader.api("POST", "/api/v1/admin/maintenance", json={"enabled": True})
        assert r.status_code == 200, r.text
        assert old.proc is not None
        assert old.proc.wait(30) == 1
        said = old.log_path.read_text()
        assert "set_maintenance has fields this version does not know: upgraded_field" in said, said[-2000:]
        assert "upgrade it" in said and "Traceback" not in said, said[-2000:]
        dag = leader.register("dag: {id: after}\ntasks:\n  - {id: t, script: 'true'}\n")

        old.extra_env["PYTHONPATH"] = newer  # upgraded: it applies what it had stopped at
        old.start()
        group.settle()
        assert old.api("GET", "/api/v1/admin/maintenance").json()["enabled"] is True
        assert old.api("GET", f"/api/v1/dags/{dag}").status_code == 200
    finally:
        group.stop()
    digests = {store_digest(m.data_dir, MasterGroup.MASTER_KEY) for m in group.masters.values()}
    assert len(digests) == 1
