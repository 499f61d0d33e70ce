"""``kiok login``/``change-password``/``logout``, the credentials file, and refresh on 401."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiok.cli.client import Tokens
from kiok.cli.credentials import CredentialStore, SavedContext, default_path
from tests.unit.test_cli_harness import FakeMaster, body, fail, reply

BASE = "http://localhost:8080"
LOGIN = {"accessToken": "acc-1", "refreshToken": "ref-1", "requirePasswordChange": False}


@pytest.fixture
def master(tmp_path: Path) -> FakeMaster:
    return FakeMaster(tmp_path / "config")


def saved(master: FakeMaster) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(master.credentials_file.read_text())
    return doc


def save_login(master: FakeMaster, access: str = "old", refresh: str | None = "ref-1") -> None:
    login = SavedContext("localhost", (BASE,), "admin", Tokens(access, refresh))
    CredentialStore(master.credentials_file).save(login)


def entry(master: FakeMaster, name: str = "localhost") -> dict[str, Any]:
    found: dict[str, Any] = saved(master)["contexts"][name]
    return found


def test_login_prompts_hidden_and_saves_tokens_0600(master: FakeMaster) -> None:
    master.on("POST", "/api/v1/auth/login", reply(200, LOGIN))
    result = master.invoke(["login"], input="s3cret\n")
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output  # hidden input is not echoed
    assert result.stdout.endswith(f"logged in to {BASE} as admin (context localhost)\n")
    (req,) = master.requests
    assert body(req) == {"user": "admin", "password": "s3cret"}
    assert "authorization" not in req.headers
    assert stat.S_IMODE(master.credentials_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(master.credentials_file.parent.stat().st_mode) == 0o700
    assert saved(master)["current"] == "localhost"
    assert entry(master) == {
        "masters": [BASE],
        "ca": None,
        "active": BASE,
        "user": "admin",
        "accessToken": "acc-1",
        "refreshToken": "ref-1",
    }


def test_login_names_the_context_after_the_host_and_keeps_other_contexts(master: FakeMaster) -> None:
    master.on("POST", "/api/v1/auth/login", reply(200, LOGIN))
    master.invoke(["login", "--password", "pw"])
    master.invoke(["--master", "https://kiok.example:9443/", "login", "--user", "bob", "--password", "pw"])
    contexts = saved(master)["contexts"]
    assert set(contexts) == {"localhost", "kiok.example:9443"}
    assert contexts["kiok.example:9443"]["masters"] == ["https://kiok.example:9443"]
    assert contexts["kiok.example:9443"]["user"] == "bob"
    assert saved(master)["current"] == "kiok.example:9443"


def test_login_that_requires_a_password_change_says_so(master: FakeMaster) -> None:
    master.on("POST", "/api/v1/auth/login", reply(200, {**LOGIN, "requirePasswordChange": True}))
    result = master.invoke(["login", "--password", "admin"])
    assert result.exit_code == 0
    assert "kiok change-password" in result.stdout


def test_bad_login_prints_error_and_saves_nothing(master: FakeMaster) -> None:
    master.on("POST", "/api/v1/auth/login", fail(401, "unauthenticated", "wrong user or password"))
    result = master.invoke(["login", "--password", "nope"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: wrong user or password")
    assert not master.credentials_file.exists()


def test_saved_token_is_sent_as_bearer(master: FakeMaster) -> None:
    save_login(master, access="acc-9")
    master.on("GET", "/api/v1/dags", reply(200, {"dags": []}))
    master.invoke(["dags", "list"])
    assert master.requests[0].headers["authorization"] == "Bearer acc-9"


def test_token_option_and_env_win_over_the_saved_login(master: FakeMaster) -> None:
    save_login(master, access="saved")
    master.on("GET", "/api/v1/dags", reply(200, {"dags": []}))
    master.invoke(["--token", "flag", "dags", "list"])
    master.invoke(["dags", "list"], env={"KIOK_USER_TOKEN": "env"})
    assert [r.headers["authorization"] for r in master.requests] == ["Bearer flag", "Bearer env"]


def test_401_refreshes_once_retries_and_saves_new_tokens(master: FakeMaster) -> None:
    save_login(master, access="stale", refresh="ref-1")

    def dags(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer fresh":
            return reply(200, {"dags": []})
        return fail(401, "unauthenticated", "token expired")

    master.on("GET", "/api/v1/dags", dags)
    master.on("POST", "/api/v1/auth/refresh", reply(200, {"accessToken": "fresh", "refreshToken": "ref-2"}))
    result = master.invoke(["dags", "list"])
    assert result.exit_code == 0, result.output
    assert [r.url.path for r in master.requests] == ["/api/v1/dags", "/api/v1/auth/refresh", "/api/v1/dags"]
    refresh = master.requests[1]
    assert body(refresh) == {"refreshToken": "ref-1"}
    assert "authorization" not in refresh.headers
    got = entry(master)
    assert (got["accessToken"], got["refreshToken"], got["user"]) == ("fresh", "ref-2", "admin")
    assert stat.S_IMODE(master.credentials_file.stat().st_mode) == 0o600


def test_failed_refresh_reports_the_401_and_tells_to_log_in(master: FakeMaster) -> None:
    save_login(master, access="stale", refresh="ref-1")
    master.on("GET", "/api/v1/dags", fail(401, "unauthenticated", "token expired"))
    master.on("POST", "/api/v1/auth/refresh", fail(401, "unauthenticated", "refresh token expired"))
    result = master.invoke(["dags", "list"])
    assert result.exit_code == 1
    assert result.stderr == "error: token expired (saved login expired: run `kiok login`)\n"
    assert len(master.sent("POST", "/api/v1/auth/refresh")) == 1
    assert entry(master)["accessToken"] == "stale"


def test_a_saved_login_refused_before_its_expiry_says_it_is_no_longer_valid(master: FakeMaster) -> None:
    """After a restore (a new signing key) the saved login, not expired, is refused: the CLI
    says it is no longer valid, in the server's words, not that it expired; still a 401
    (exit status 1, code unauthenticated)."""
    unexpired = _jwt({"sub": "admin", "typ": "refresh", "exp": int(time.time()) + 3600})
    save_login(master, access="stale", refresh=unexpired)
    said = "invalid token: not signed with this cluster's signing key, which a restore renews"
    master.on("GET", "/api/v1/dags", fail(401, "unauthenticated", said))
    master.on("POST", "/api/v1/auth/refresh", fail(401, "unauthenticated", said))
    result = master.invoke(["dags", "list"])
    assert result.exit_code == 1
    assert result.stderr == f"error: your saved login is no longer valid ({said}): run `kiok login`\n"
    result = master.invoke(["--json", "dags", "list"])
    assert result.exit_code == 1 and '"code": "unauthenticated"' in result.stderr, result.stderr


def test_a_saved_login_past_its_expiry_says_it_expired(master: FakeMaster) -> None:
    expired = _jwt({"sub": "admin", "typ": "refresh", "exp": int(time.time()) - 60})
    save_login(master, access="stale", refresh=expired)
    master.on("GET", "/api/v1/dags", fail(401, "unauthenticated", "token expired"))
    master.on("POST", "/api/v1/auth/refresh", fail(401, "unauthenticated", "token expired"))
    result = master.invoke(["dags", "list"])
    assert result.stderr == "error: token expired (saved login expired: run `kiok login`)\n"


def _jwt(claims: dict[str, Any]) -> str:
    """A token of ``claims`` as the CLI reads it (unverified; its signature is not checked)."""
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{part}.c2ln"


def test_explicit_token_is_never_refreshed(master: FakeMaster) -> None:
    save_login(master)
    master.on("GET", "/api/v1/dags", fail(401, "unauthenticated", "bad token"))
    result = master.invoke(["--token", "t", "dags", "list"])
    assert result.exit_code == 1
    assert master.sent("POST", "/api/v1/auth/refresh") == []


def test_no_login_at_all_hints_at_kiok_login(master: FakeMaster) -> None:
    master.on("GET", "/api/v1/dags", fail(401, "unauthenticated", "missing credentials"))
    result = master.invoke(["dags", "list"])
    assert result.exit_code == 1
    assert "run `kiok login`, pass --token or set KIOK_ACCESS_KEY" in result.stderr


def test_change_password_saves_the_new_tokens(master: FakeMaster) -> None:
    save_login(master, access="acc-1")
    master.on(
        "POST", "/api/v1/auth/change-password", reply(200, {"accessToken": "acc-2", "refreshToken": "ref-2"})
    )
    result = master.invoke(["change-password"], input="admin\nn3w-pass\nn3w-pass\n")
    assert result.exit_code == 0, result.output
    (req,) = master.requests
    assert body(req) == {"oldPassword": "admin", "newPassword": "n3w-pass"}
    assert req.headers["authorization"] == "Bearer acc-1"
    got = entry(master)
    assert (got["accessToken"], got["refreshToken"], got["user"]) == ("acc-2", "ref-2", "admin")


def test_password_change_required_error_names_the_command(master: FakeMaster) -> None:
    save_login(master)
    master.on("GET", "/api/v1/dags", fail(403, "password_change_required", "change your password first"))
    result = master.invoke(["dags", "list"])
    assert result.exit_code == 1
    assert result.stderr == "error: change your password first (run `kiok change-password`)\n"


def test_logout_forgets_only_this_contexts_tokens(master: FakeMaster) -> None:
    save_login(master)
    other = SavedContext("other", ("http://other:8080",), "x", Tokens("a"))
    CredentialStore(master.credentials_file).save(other)
    result = master.invoke(["logout"])
    assert result.stdout == f"logged out of localhost ({BASE})\n"
    assert entry(master)["accessToken"] is None and entry(master)["masters"] == [BASE]
    assert entry(master, "other")["accessToken"] == "a"
    assert master.invoke(["logout"]).stdout == f"not logged in to {BASE}\n"


def test_credentials_path_follows_xdg(tmp_path: Path) -> None:
    assert default_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "kiok" / "credentials.json"
    assert default_path({"XDG_CONFIG_HOME": "relative"}).parts[-3:] == (".config", "kiok", "credentials.json")
    assert default_path({}).parts[-3:] == (".config", "kiok", "credentials.json")


def test_rewrite_tightens_a_loose_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "kiok" / "credentials.json"
    path.parent.mkdir()
    path.write_text("{}")
    path.chmod(0o644)
    CredentialStore(path).save(SavedContext("c", (BASE,), None, Tokens("a", "r")))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
