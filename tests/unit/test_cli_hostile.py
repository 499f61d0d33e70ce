"""The CLI given hostile settings, credentials files and config files: one line naming the
problem and exit status 1, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_cli_harness import FakeMaster, fail, reply

_SAVED_BAD_URL = '{"current": "x", "contexts": {"x": {"masters": ["http://[::1:80"], "accessToken": "t"}}}'
_SAVED_BAD_CA = (
    '{"current": "x", "contexts": {"x": {"masters": ["https://m1"], "ca": "/nonexistent/ca.pem",'
    ' "accessToken": "t"}}}'
)

#: ``kiok trigger d --wait --interval`` and the value to try.
_WAIT = ["trigger", "d", "--wait", "--interval"]


@pytest.mark.parametrize(
    ("args", "env", "credentials", "problem"),
    [
        pytest.param([], {"KIOK_USER_TOKEN": "tök"}, None, "KIOK_USER_TOKEN", id="token-not-ascii"),
        pytest.param([], {"KIOK_USER_TOKEN": "a\nb"}, None, "KIOK_USER_TOKEN", id="token-newline"),
        pytest.param([], {"KIOK_ACCESS_KEY": "é:ü"}, None, "KIOK_ACCESS_KEY", id="access-key-not-ascii"),
        pytest.param(["--timeout", "1e309"], {}, None, "--timeout", id="timeout-infinite"),
        pytest.param(["--timeout", "nan"], {}, None, "--timeout", id="timeout-nan"),
        pytest.param(["dags", "list", "--timeout", "nan"], {}, None, "--timeout", id="late-timeout-nan"),
        pytest.param(["dags", "list", "--timeout", "1e309"], {}, None, "--timeout", id="late-timeout-inf"),
        pytest.param([*_WAIT, "nan"], {}, None, "--interval", id="interval-nan"),
        pytest.param([*_WAIT, "1e308"], {}, None, "--interval", id="interval-huge"),
        pytest.param([*_WAIT, "inf"], {}, None, "--interval", id="interval-inf"),
        pytest.param([], {}, b"\xff\xfe{", "not valid JSON", id="credentials-not-utf8"),
        pytest.param([], {}, _SAVED_BAD_URL.encode(), "http://[::1:80", id="credentials-bad-url"),
        pytest.param([], {}, _SAVED_BAD_CA.encode(), "/nonexistent/ca.pem", id="credentials-missing-ca"),
        pytest.param(["--ca", "CA"], {"KIOK_MASTER": "https://m1"}, None, "CA", id="ca-not-a-certificate"),
        pytest.param(
            ["trigger", "d", "--conf", "[" * 100_000], {}, None, "nested too deeply", id="conf-deep"
        ),
        pytest.param(["trigger", "d", "--conf", "9" * 5000], {}, None, "too many digits", id="conf-digits"),
        pytest.param(["iam", "policies", "set", "p", "BINARY"], {}, None, "not UTF-8", id="policy-not-utf8"),
        pytest.param(
            ["iam", "policies", "set", "p", "DEEP"], {}, None, "nested too deeply", id="policy-deep"
        ),
    ],
)
def test_hostile_cli_input_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str | None],
    credentials: bytes | None,
    problem: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("CA").write_text("not a certificate\n")
    Path("BINARY").write_bytes(b"\xff\xfe{")
    Path("DEEP").write_text("[" * 100_000)
    master = FakeMaster(tmp_path / "config")
    master.on("GET", "/api/v1/dags", reply(200, {"dags": []}))
    if credentials is not None:
        master.credentials_file.parent.mkdir(parents=True)
        master.credentials_file.write_bytes(credentials)
    command = args if args and not args[0].startswith("-") else [*args, "dags", "list"]
    result = master.invoke(command, env=env)
    lines = result.output.strip().splitlines()
    assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output
    assert lines and problem in lines[-1] and len(lines) <= 4, result.output  # click usage: 3 + 1


@pytest.mark.parametrize(
    ("content", "env", "problem"),
    [
        pytest.param(b"\xff\xfe\x00", {}, "not UTF-8", id="config-not-utf8"),
        pytest.param(b"{", {}, "line 1", id="config-yaml-one-line"),
        pytest.param(
            b"", {"KIOK_MASTER_ADMIN_PORT": "99999999999999999999"}, "kiok.master.admin.port", id="port"
        ),
        pytest.param(b"", {"KIOK_WORKER_TASK_SLOTS": "-1"}, "kiok.worker.task.slots", id="slots-negative"),
        pytest.param(b"", {"KIOK_WORKER_TASK_SLOTS": "1_0"}, "kiok.worker.task.slots", id="slots-underscore"),
        pytest.param(b"", {"KIOK_MASTER_ADMIN_PORT": "\u0668\u0660"}, "admin.port", id="port-arabic"),
        pytest.param(b"kiok.admin.token.access.expiry.ms: 0\n", {}, "expiry", id="expiry-zero"),
    ],
)
def test_hostile_settings_are_one_line(
    tmp_path: Path, content: bytes, env: dict[str, str | None], problem: str
) -> None:
    config = tmp_path / "kiok.yaml"
    config.write_bytes(content)
    result = FakeMaster(tmp_path / "config").invoke(["config", "show", "--config", str(config)], env=env)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and problem in result.output, result.output


def test_terminal_control_characters_from_the_server_are_shown_escaped(tmp_path: Path) -> None:
    """Args come from trigger-only users and errors from task output: printed raw, an escape
    sequence would drive the reader's terminal (clear it, retitle it, hide a FAILED)."""
    hostile = "x\x1b[2J\x1b]0;owned\x07\u202eLIAF"
    run = {
        "runId": "r-1-1",
        "dagId": "d",
        "state": "FAILED",
        "args": {"n": hostile},
        "tasks": {"a": {"state": "FAILED", "attempt": 1, "error": hostile}},
    }
    master = FakeMaster(tmp_path / "config")
    master.on("GET", "/api/v1/runs/r-1-1", reply(200, run))
    master.on("GET", "/api/v1/runs", fail(404, "not_found", f"run {hostile!r} not found"))
    shown = master.invoke(["runs", "status", "r-1-1"])
    assert shown.exit_code == 0, shown.output
    refused = master.invoke(["runs", "list"])
    for output in (shown.output, refused.output):
        assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output, repr(output)
    assert "x\\x1b[2J\\x1b]0;owned\\x07\\u202eLIAF" in shown.output, shown.output


#: ``$'\xff'`` as Python receives it from the shell: an undecodable byte kept as a surrogate.
_NOT_UTF8 = b"d\xff".decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    "args",
    [
        ["dags", "show", _NOT_UTF8],
        ["dags", "pause", _NOT_UTF8],
        ["runs", "status", _NOT_UTF8],
        ["runs", "cancel", _NOT_UTF8],
        ["runs", "logs", _NOT_UTF8, "a"],
        ["runs", "logs", "r-1-1", _NOT_UTF8],
        ["runs", "list", "--dag", _NOT_UTF8],
        ["connections", "show", _NOT_UTF8],
        ["iam", "users", "delete", _NOT_UTF8],
    ],
    ids=lambda args: "-".join(a for a in args if a != _NOT_UTF8),
)
def test_an_argument_that_is_not_utf8_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    """quote() and httpx encode as UTF-8: a UnicodeEncodeError traceback, nothing sent."""
    master = FakeMaster(tmp_path / "config")
    result = master.invoke(args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines() == ["Error: argument 'd\\xff' is not UTF-8 text"]
    assert master.requests == []
