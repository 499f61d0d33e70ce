"""The UI's files are in the built wheel, sub-folders included (``ui/static/**/*``): the
assets read from the wheel are exactly those of the source tree (same version hash)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from kiok.ui import assets

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_carries_every_ui_file(tmp_path: Path) -> None:
    # Build from a copy: the build leaves build/ and *.egg-info behind in the tree it runs in.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "kiok", src / "kiok", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = out.glob("kiok-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "installed", [n for n in names if n.startswith("kiok/ui/static/")])
    for vendored in ("preact.mjs", "hooks.mjs", "htm.mjs", "dagre.esm.js", "LICENSE.dagre.txt", "VENDOR.md"):
        assert f"kiok/ui/static/vendor/{vendored}" in names
    assert "kiok/ui/static/js/views/run.js" in names
    from_wheel = assets.load(tmp_path / "installed" / "kiok" / "ui" / "static")
    from_tree = assets.load()
    assert from_wheel.version == from_tree.version
    assert from_wheel.files.keys() == from_tree.files.keys()
