"""A cold python attempt (``COLD_MAIN``: ``<python> -u -c COLD_MAIN``, the script at
descriptor 3) prints what ``python -u /dev/fd/3`` prints for a script that fails."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kiok.worker.executors.python import COLD_MAIN


def _run(argv: list[str], script: str) -> tuple[int, str]:
    fd = os.memfd_create("script")
    try:
        os.write(fd, script.encode())
        os.lseek(fd, 0, os.SEEK_SET)
        done = subprocess.run(
            argv,
            pass_fds=(fd, 3),  # 3 kept open once the script is made it
            preexec_fn=lambda: os.dup2(fd, 3),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(fd)
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    "script",
    [
        "print('hi')\nx = (1,\ny = 2\n",  # a SyntaxError: no traceback
        "if True:\nprint(1)\n",  # an IndentationError
        "def f():\n    raise ValueError('bad input')\nf()\n",  # a traceback from the script's frame
        "compile('x = (', 'inner', 'exec')\n",  # a SyntaxError the script raised: its frame kept
    ],
)
def test_a_failing_script_prints_as_the_interpreter_does(script: str) -> None:
    """The security re-probe of session 28: a cold attempt's SyntaxError showed
    ``Traceback ... File "<string>", line 14, in <module>``, kiok's own frame."""
    cold = _run([sys.executable, "-u", "-c", COLD_MAIN], script)
    plain = _run([sys.executable, "-u", "/dev/fd/3"], script)
    assert cold == plain, (cold, plain)
