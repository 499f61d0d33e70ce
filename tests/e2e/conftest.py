"""What the browser tests share: Debian's chromium driven by Playwright (module-scoped),
where screenshots go, and a recorder of console errors."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 20_000


def chromium() -> str | None:
    candidates = (os.environ.get("CHROMIUM_PATH"), "/usr/lib/chromium/chromium", shutil.which("chromium"))
    return next((p for p in candidates if p and os.path.exists(p)), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = chromium()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing (apt-get install chromium): UI tests must run in CI")
        pytest.skip("chromium not installed (apt-get install -y --no-install-recommends chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=exe)
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("UI_SCREENSHOTS") == "1":
        return ROOT / "docs" / "ui"
    return tmp_path


def choose_new_password(page: Any, current: str, new: str) -> None:
    """Answer the forced "Choose a new password" screen (a first login, an admin's reset)."""
    page.get_by_label("Current password").fill(current)
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("New password, again").fill(new)
    page.get_by_role("button", name="Set password").click()


class Console:
    """Every console error and uncaught exception of a page; expected ones are taken out."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def take(self, pattern: str) -> None:
        found = [e for e in self.errors if re.search(pattern, e)]
        assert found, f"expected a console error matching {pattern!r}; got {self.errors}"
        self.errors.remove(found[0])
