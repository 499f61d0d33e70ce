"""The UI's files are in the built wheel, sub-folders included (``ui/static/**/*``): the
assets read from the wheel are exactly those of the source tree (same version hash)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from kiok.ui import assets
from tests.wheel_build import build_wheel


def test_wheel_carries_every_ui_file(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
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
