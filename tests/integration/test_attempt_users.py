"""Attempts on one worker cannot reach each other: each runs as an attempt user of its own
(``kiok.worker.task.users``). Real ``kiok standalone`` as root (as CI runs), one spawner so
that every attempt shares its pid namespace and private ``/tmp``: a victim run of one DAG
holds a token in its working directory and its environment while an attacker run of another
DAG, on the same worker at the same time, shell and forked python attempts both, tries to
read the files, find the token in ``/proc`` and signal the victim's processes."""

from __future__ import annotations

import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.testing.process import Standalone
from tests.integration.test_task_isolation import _indent, outcomes

TOKEN = "zz-victim-token-9917"

#: Until both attackers are done (at most a minute): the victims' processes stay up.
_WAIT_SH = """
n=0
while [ ! -e "$M/done-sh" ] || [ ! -e "$M/done-py" ]; do
  sleep 0.02; n=$((n+1)); [ $n -gt 3000 ] && exit 3
done
"""

VICTIM_SH = (
    """
M=$KIOK_PARAM_MEET
echo "$KIOK_PARAM_TOKEN" > mine.txt
echo "uid $(id -u) user $USER"
pwd > "$M/dir-sh"; echo $$ > "$M/pid-sh"; touch "$M/up-sh"
"""
    + _WAIT_SH
    + 'echo "kept $(cat mine.txt)"\n'
)

VICTIM_PY = """
import os, pathlib, time
m = pathlib.Path(os.environ["KIOK_PARAM_MEET"])
pathlib.Path("mine.txt").write_text(os.environ["KIOK_PARAM_TOKEN"])
print("uid", os.getuid(), "user", os.environ["USER"])
(m / "dir-py").write_text(os.getcwd())
(m / "pid-py").write_text(str(os.getpid()))
(m / "up-py").touch()
deadline = time.monotonic() + 60
while not ((m / "done-sh").exists() and (m / "done-py").exists()):
    if time.monotonic() > deadline:
        raise SystemExit(3)
    time.sleep(0.02)
print("kept", pathlib.Path("mine.txt").read_text())
"""

#: Prints "denied <what>" or "LEAK <what>"; then says it is done (``done-$1``).
PROBE = r"""
M=$KIOK_PARAM_MEET; T=zz-victim-token
n=0
while [ ! -e "$M/up-sh" ] || [ ! -e "$M/up-py" ]; do sleep 0.02; n=$((n+1)); [ $n -gt 3000 ] && exit 3; done
echo "uid $(id -u)"
probe() { what=$1; shift; if "$@" >/dev/null 2>&1; then echo "LEAK $what"; else echo "denied $what"; fi; }
files() { for d in "$M"/dir-*; do grep -q "$T" "$(cat "$d")/mine.txt" && return 0; done; return 1; }
listing() { for d in "$M"/dir-*; do ls "$(cat "$d")" && return 0; done; return 1; }
writing() { for d in "$M"/dir-*; do touch "$(cat "$d")/planted" && return 0; done; return 1; }
environ() { cat /proc/[0-9]*/environ 2>/dev/null | tr "\0" "\n" | grep -q "$T"; }
signal() { for p in "$M"/pid-*; do kill -0 "$(cat "$p")" && return 0; done; return 1; }
probe files files
probe listing listing
probe writing writing
probe environ environ
probe signal signal
touch "$M/done-$1"
"""

ATTACKER_PY = f"""
import subprocess, sys
sys.stdout.flush()
subprocess.run(["/bin/sh", "-c", {PROBE!r}, "probe", "py"], check=True)
"""


VICTIM_DAG = f"""
dag: {{id: victim, params: {{meet: "", token: ""}}}}
tasks:
  - id: sh
    script: |
{_indent(VICTIM_SH, 6)}
  - id: py
    type: python
    script: |
{_indent(VICTIM_PY, 6)}
"""

ATTACKER_DAG = f"""
dag: {{id: attacker, params: {{meet: ""}}}}
tasks:
  - id: sh
    script: |
      set -- sh
{_indent(PROBE, 6)}
  - id: py
    type: python
    script: |
{_indent(ATTACKER_PY, 6)}
"""


@pytest.fixture
def standalone(task_tmp_path: Path) -> Iterator[Standalone]:
    node = Standalone(task_tmp_path / "kiok", {"KIOK_WORKER_SPAWNERS": "1"})
    node.start()
    yield node
    node.stop()


def _uid(log: str) -> int:
    return int(log.split("uid ", 1)[1].split()[0])


def _victim_and_attacker(on: Standalone, against: Standalone, task_tmp_path: Path) -> tuple[str, str]:
    """A victim run on ``on`` and an attacker run on ``against`` at the same time, meeting
    in a directory both may write; (victim, attacker) run ids, both ended SUCCESS."""
    meet = task_tmp_path / "meet"
    meet.mkdir()
    meet.chmod(0o1777)
    on.register(VICTIM_DAG)
    against.register(ATTACKER_DAG)
    victim = on.trigger("victim", {"meet": str(meet), "token": TOKEN})
    attacker = against.trigger("attacker", {"meet": str(meet)})
    done = against.wait_run(attacker, 90)
    assert done["state"] == "SUCCESS", against.log(attacker, "sh") + against.log(attacker, "py")
    assert on.wait_run(victim, 90)["state"] == "SUCCESS", on.log(victim, "sh") + on.log(victim, "py")
    return victim, attacker


def test_attempts_on_one_worker_cannot_read_signal_or_write_into_each_other(
    standalone: Standalone, task_tmp_path: Path
) -> None:
    k = standalone
    assert k.http("GET", k.status_url + "/status").json()["taskIsolation"] == "user+pidns"
    victim, attacker = _victim_and_attacker(k, k, task_tmp_path)

    for task in ("sh", "py"):
        log = k.log(attacker, task)
        found = outcomes(log)
        assert set(found) == {"files", "listing", "writing", "environ", "signal"}, log
        assert {what for what, verdict in found.items() if verdict != "denied"} == set(), log
        assert f"kept {TOKEN}" in k.log(victim, task)  # untouched, and the victims ran alongside

    uids = [_uid(k.log(run, task)) for run in (victim, attacker) for task in ("sh", "py")]
    task_user = pwd.getpwnam("kiok-task")
    assert len(set(uids)) == 4 and task_user.pw_uid not in uids and 0 not in uids, uids
    for uid in uids:
        entry = pwd.getpwuid(uid)
        assert entry.pw_name.startswith("kiok-task-") and entry.pw_gid == task_user.pw_gid
    assert f"user {pwd.getpwuid(uids[0]).pw_name}" in k.log(victim, "sh")  # USER is its own


def test_workers_on_one_host_never_run_attempts_as_the_same_user(task_tmp_path: Path) -> None:
    """Two workers on one host (two standalones, both as root) each claim attempt users no
    other holds: the attacker on one cannot read, list or write into the victim's working
    directories on the other, as it could when both numbered their users from 1."""
    env = {"KIOK_WORKER_SPAWNERS": "1", "KIOK_WORKER_TASK_SLOTS": "2"}
    first = Standalone(task_tmp_path / "first", env).start()
    try:
        second = Standalone(task_tmp_path / "second", env).start()
        try:
            victim, attacker = _victim_and_attacker(first, second, task_tmp_path)
            for task in ("sh", "py"):
                log = second.log(attacker, task)
                # Another pid namespace: the victims' pids are not the attacker's to look for.
                found = {
                    what: v for what, v in outcomes(log).items() if what in ("files", "listing", "writing")
                }
                assert found == dict.fromkeys(("files", "listing", "writing"), "denied"), log
                assert f"kept {TOKEN}" in first.log(victim, task)
            uids = [_uid(first.log(victim, task)) for task in ("sh", "py")]
            uids += [_uid(second.log(attacker, task)) for task in ("sh", "py")]
            assert len(set(uids)) == 4, uids
        finally:
            second.stop()
    finally:
        first.stop()
