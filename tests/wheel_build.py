"""Building kiok's wheel from a copy of the source tree, for the tests that check what the
wheel holds (tests/e2e/test_ui_wheel.py) and that it installs and runs
(tests/integration/test_wheel_install.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(work: Path) -> Path:
    """Build ``kiok-*.whl`` under ``work`` and return its path. The build runs on a copy
    (``pyproject.toml``, ``README.md``, ``kiok/``): it leaves build/ and *.egg-info behind in
    the tree it runs in."""
    src = work / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "kiok", src / "kiok", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = work / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = out.glob("kiok-*.whl")
    return wheel
