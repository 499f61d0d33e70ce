"""Attempt users are claimed host-wide (``kiok.worker.user_claims``): real ``flock`` claims
held by a real second process, real processes of a user killed or left alone. As root, as
CI runs; the users are numbers no account has (a claim needs only the uid)."""

from __future__ import annotations

import contextlib
import os
import resource
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.errors import InvalidInput
from kiok.worker import user_claims

#: uids no account has here: ``prefix-n`` is 61000 + n; the spawners' (task) user 60999.
BASE = 61000
TASK = (60999, 60999)


def _uid_of(name: str) -> int:
    return BASE + int(name.rsplit("-", 1)[1])


HOLDER = """
import sys
import time
from pathlib import Path
from kiok.worker import user_claims
uid_of = lambda n: 61000 + int(n.rsplit("-", 1)[1])
names = user_claims.claim("t", int(sys.argv[2]), uid_of, (60999, 60999), Path(sys.argv[1]))
print(",".join(name for name, _ in names), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def claims(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "claims"
    yield directory
    for uid in [u for u in user_claims._held if 60990 <= u <= BASE + 100]:
        os.close(user_claims._held.pop(uid))


def _sleeping_as(uid: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], user=uid, group=uid)


@contextlib.contextmanager
def _holder(claims: Path, count: int) -> Iterator[str]:
    """Another process (a worker) holding ``count`` claims: yields the names it got, and is
    killed at the end, which lets them go."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(claims), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            yield holder.stdout.readline().strip()
        finally:
            holder.kill()


def test_a_second_process_gets_the_users_the_first_does_not_hold(claims: Path) -> None:
    with _holder(claims, 2) as held:
        assert held == "t-1,t-2"
        # An attempt of the holder's, running as its user: not this process's to end.
        theirs = _sleeping_as(BASE + 1)
        try:
            assert user_claims.claim("t", 2, _uid_of, TASK, claims) == [("t-3", BASE + 3), ("t-4", BASE + 4)]
            assert theirs.poll() is None
        finally:
            theirs.kill()
            theirs.wait()
    # The holder is gone, however it ended: its users are free again, and a process left
    # as one of them is no one's now, so it is killed before an attempt runs as that user.
    left = _sleeping_as(BASE + 2)
    try:
        got = user_claims.claim("t", 4, _uid_of, TASK, claims)
        assert [name for name, _ in got] == ["t-1", "t-2", "t-3", "t-4"]
        assert left.wait(10) == -9
    finally:
        left.kill()
        left.wait()


def test_the_same_process_asking_again_gets_the_users_it_holds(claims: Path) -> None:
    first = user_claims.claim("t", 3, _uid_of, TASK, claims)
    assert user_claims.claim("t", 2, _uid_of, TASK, claims) == first[:2]
    assert user_claims.claim("t", 4, _uid_of, TASK, claims) == [*first, ("t-4", BASE + 4)]


def test_a_claims_directory_others_may_write_is_refused(claims: Path) -> None:
    claims.mkdir(0o700)
    claims.chmod(0o777)  # an attempt user could take or plant claims
    with pytest.raises(InvalidInput, match="no one else may write"):
        user_claims.claim("t", 1, _uid_of, TASK, claims)
    claims.chmod(0o700)
    os.chown(claims, BASE + 1, -1)
    with pytest.raises(InvalidInput, match="must be a directory of root's"):
        user_claims.claim("t", 1, _uid_of, TASK, claims)
    claims.rmdir()
    claims.symlink_to("/tmp")
    with pytest.raises(InvalidInput, match="must be a directory"):
        user_claims.claim("t", 1, _uid_of, TASK, claims)


#: A chain of forks: each process forks the next and exits at once, so its pid is never
#: the same for long (what a search of ``/proc`` for the user's processes does not catch).
#: Each writes to its output as it goes (the test's pipe: at its end of file, all are gone),
#: for 300,000 steps at most.
CHAIN = "f() { printf .; [ $1 -gt 0 ] || exit 0; f $(($1 - 1)) & exit 0; }; f 300000"


def _ended_within(pipe: int, seconds: float) -> bool:
    """Whether every writer of ``pipe`` is gone (its end of file) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if select.select([pipe], [], [], left)[0] and not os.read(pipe, 65536):
            return True
    return False


def test_a_chain_of_forks_left_as_a_user_claimed_afresh_is_ended(claims: Path) -> None:
    """What a dead worker's attempt left, forking on and on under new pids, dies before an
    attempt runs as its user: one sweep as that user, which no fork outruns (eight searches
    of ``/proc``, stopping what they found, let one of four such chains live on about half the
    time here)."""
    ours, theirs = os.pipe()
    try:
        for _ in range(4):  # each caught by a search of /proc now and then: all four, hardly
            subprocess.run(
                ["/bin/bash", "-c", CHAIN], user=BASE + 1, group=BASE + 1, stdout=theirs, check=True
            )
        os.close(theirs)
        assert not _ended_within(ours, 0.3)  # it runs on by itself
        assert user_claims.claim("t", 1, _uid_of, TASK, claims) == [("t-1", BASE + 1)]
        assert _ended_within(ours, 10), "the chain outlived the claim"
    finally:
        user_claims.kill_user_processes(BASE + 1, BASE + 1)
        os.close(ours)


def test_a_user_that_is_not_an_attempt_users_is_refused_before_anything_is_killed(claims: Path) -> None:
    spawner_like = _sleeping_as(TASK[0])  # another worker's spawner runs as the task user
    try:
        with pytest.raises(InvalidInput, match="root's, the task user's or another"):
            user_claims.claim("t", 2, lambda name: {"t-1": BASE + 1, "t-2": TASK[0]}[name], TASK, claims)
        with pytest.raises(InvalidInput, match="root's, the task user's or another"):
            user_claims.claim("t", 2, lambda name: BASE + 7, TASK, claims)  # two names, one uid
        with pytest.raises(InvalidInput, match="root's"):
            user_claims.claim("t", 1, lambda name: 0, TASK, claims)
        assert spawner_like.poll() is None
    finally:
        spawner_like.kill()
        spawner_like.wait()


def test_a_worker_whose_task_user_is_another_workers_attempt_user_is_refused(claims: Path) -> None:
    with _holder(claims, 1) as held:
        assert held == "t-1"
        with pytest.raises(InvalidInput, match="attempt user of another kiok worker"):
            user_claims.claim("u", 1, lambda name: BASE + 50, (BASE + 1, BASE + 1), claims)


def test_a_user_at_its_process_limit_is_still_swept() -> None:
    """A fork bomb's user has as many processes as the limit lets it: a program started as
    that user (``kill`` run as it) would be refused at ``execve``; the sweep executes none."""
    sleepers = [_sleeping_as(BASE + 9) for _ in range(4)]
    limit = resource.getrlimit(resource.RLIMIT_NPROC)
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (2, limit[1]))  # what the user is over
        try:
            user_claims.kill_user_processes(BASE + 9, BASE + 9)
        finally:
            resource.setrlimit(resource.RLIMIT_NPROC, limit)
        assert [sleeper.wait(10) for sleeper in sleepers] == [-9] * 4
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
