"""Three real masters and writes larger than PySyncObj can carry in one entry (its path for
such entries loses their end and stops replication for good). A DAG of 30,000 tasks (a
1.9 MB document whose command, with the compiled spec, is 3.7 MB: over the 1.9 MiB an
entry holds) travels compressed (0.46 MB) and reaches every master. A document of 3.5 MiB
of hardly compressible text (a DAG source may have 4 MiB) is refused with 413 naming the
entry's limit before it is proposed, and the cluster goes on replicating."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from kiok.testing.process import MasterGroup
from tests.integration.test_ha import FAST

pytestmark = pytest.mark.slow

YAML = {"Content-Type": "application/yaml"}


def test_large_dags_travel_compressed_and_one_too_large_is_refused(tmp_path: Path) -> None:
    group = MasterGroup(tmp_path, extra_env=FAST)
    try:
        group.start()
        leader = group.leader()
        worker = group.add_worker(leader, "w1")
        leader.wait_open()
        follower = group.followers(leader)[0]
        many = "dag: {id: many}\ntasks:\n" + "".join(
            f"  - {{id: t{i}, script: 'echo step {i}'" + (f", requires: [t{i - 1}]}}\n" if i else "}\n")
            for i in range(30_000)
        )
        r = follower.api("POST", "/api/v1/dags", content=many, headers=YAML, timeout=120)
        assert r.status_code in (200, 201), r.text[:500]
        group.settle()
        for m in group.masters.values():
            assert m.api("GET", "/api/v1/dags/many").json()["tasks"] == 30_000

        # Under the 4 MiB a DAG source may have, and compressed still over an entry's 1.9 MiB.
        noise = base64.b64encode(os.urandom(3 << 20)).decode()[: 7 << 19]  # 3.5 MiB: ~2.6 compressed
        huge = "dag: {id: huge}\ntasks:\n  - {id: t, script: 'echo " + noise + "'}\n"
        # Through a follower: forwarded to the leader, whose answer comes back as is.
        r = follower.api("POST", "/api/v1/dags", content=huge, headers=YAML, timeout=60)
        assert r.status_code == 413, r.text[:500]
        error = r.json()["error"]
        assert error["code"] == "payload_too_large"
        assert "MiB" in error["message"] and "one entry" in error["message"], error
        assert leader.api("GET", "/api/v1/dags/huge").status_code == 404

        after = leader.register("dag: {id: after}\ntasks:\n  - {id: t, script: 'echo after'}\n")
        run_id = follower.trigger(after)
        assert leader.wait_run(run_id, 30)["state"] == "SUCCESS"
        group.settle()
        for m in group.masters.values():
            assert m.run(run_id)["state"] == "SUCCESS"
            assert m.log(run_id, "t") == "after\n"
        worker.stop()
    finally:
        group.stop()
