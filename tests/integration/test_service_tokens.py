"""Service bearer tokens: an accepted list and a token file reloaded without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from kiok.testing.process import Standalone


def test_token_list_and_hot_reloaded_token_file(standalone_factory: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("file-token-one\n")
    k: Standalone = standalone_factory(
        env={
            "KIOK_INTERNAL_AUTH_TOKENS": "listed-a,listed-b",
            "KIOK_INTERNAL_AUTH_TOKEN_FILE": str(token_file),
            "KIOK_INTERNAL_AUTH_RELOAD_INTERVAL_SECONDS": "1",
        }
    )

    def status(token: str) -> int:
        return httpx.get(k.url + "/api/v1/dags", headers={"Authorization": f"Bearer {token}"}).status_code

    assert status("listed-b") == 200 and status("file-token-one") == 200
    assert status("not-a-token") == 401
    token_file.write_text("file-token-two\n")  # rotate: the new one in, the old one out
    k.wait_for(lambda: status("file-token-two") == 200, 10, "the token file to be reloaded")
    assert status("file-token-one") == 401
    assert status("listed-a") == 200
