"""Attempt users are claimed host-wide (``kiok.worker.user_claims``): real ``flock`` claims
held by a real second process, real processes of a user killed or left alone. As root, as
CI runs; the users are numbers no account has (a claim needs only the uid)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.errors import InvalidInput
from kiok.worker import user_claims

#: uids no account has here: ``prefix-n`` is 61000 + n.
BASE = 61000


def _uid_of(name: str) -> int:
    return BASE + int(name.rsplit("-", 1)[1])


HOLDER = """
import sys
from pathlib import Path
from kiok.worker import user_claims
uid_of = lambda n: 61000 + int(n.rsplit("-", 1)[1])
names = user_claims.claim("t", int(sys.argv[2]), uid_of, Path(sys.argv[1]))
print(",".join(name for name, _ in names), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def claims(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "claims"
    yield directory
    for name in [n for n in user_claims._held if n.startswith("t-")]:
        os.close(user_claims._held.pop(name))


def _sleeping_as(uid: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], user=uid, group=uid)


def test_a_second_process_gets_the_users_the_first_does_not_hold(claims: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(claims), "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "t-1,t-2"
            # An attempt of the holder's, running as its user: not this process's to end.
            theirs = _sleeping_as(BASE + 1)
            try:
                assert user_claims.claim("t", 2, _uid_of, claims) == [("t-3", BASE + 3), ("t-4", BASE + 4)]
                assert theirs.poll() is None
            finally:
                theirs.kill()
                theirs.wait()
        finally:
            holder.kill()
    # The holder is gone, however it ended: its users are free again, and a process left
    # as one of them is no one's now, so it is killed before an attempt runs as that user.
    left = _sleeping_as(BASE + 2)
    try:
        got = user_claims.claim("t", 4, _uid_of, claims)
        assert [name for name, _ in got] == ["t-1", "t-2", "t-3", "t-4"]
        assert left.wait(10) == -9
    finally:
        left.kill()
        left.wait()


def test_the_same_process_asking_again_gets_the_users_it_holds(claims: Path) -> None:
    first = user_claims.claim("t", 3, _uid_of, claims)
    assert user_claims.claim("t", 2, _uid_of, claims) == first[:2]
    assert user_claims.claim("t", 4, _uid_of, claims) == [*first, ("t-4", BASE + 4)]


def test_a_claims_directory_others_may_write_is_refused(claims: Path) -> None:
    claims.mkdir(0o700)
    claims.chmod(0o777)  # an attempt user could take or plant claims
    with pytest.raises(InvalidInput, match="no one else may write"):
        user_claims.claim("t", 1, _uid_of, claims)
    claims.chmod(0o700)
    os.chown(claims, BASE + 1, -1)
    with pytest.raises(InvalidInput, match="must be a directory of root's"):
        user_claims.claim("t", 1, _uid_of, claims)
    claims.rmdir()
    claims.symlink_to("/tmp")
    with pytest.raises(InvalidInput, match="must be a directory"):
        user_claims.claim("t", 1, _uid_of, claims)
