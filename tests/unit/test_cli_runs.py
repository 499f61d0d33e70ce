"""``kiok trigger`` and ``kiok runs``: args parsing, --wait, listing, status, cancel, logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kiok.cli.runs import parse_args
from kiok.cli.terminal import TerminalFilter
from tests.unit.test_cli_harness import FakeMaster, body, reply

LOG = "/api/v1/runs/r1/tasks/extract/log"


@pytest.fixture
def master(tmp_path: Path) -> FakeMaster:
    return FakeMaster(tmp_path / "config")


def run_doc(state: str, **extra: Any) -> dict[str, Any]:
    return {"runId": "r1", "dagId": "etl", "state": state, "tasks": {}, **extra}


def test_parse_args_splits_on_the_first_equals_only() -> None:
    assert parse_args(("a=1", "url=http://x/?q=1", "empty=", "a=2")) == {
        "a": "2",
        "url": "http://x/?q=1",
        "empty": "",
    }
    assert parse_args(("k=v=w",)) == {"k": "v=w"}


@pytest.mark.parametrize("bad", ["novalue", "=v", " =v"])
def test_parse_args_refuses_pairs_without_key(bad: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_args((bad,))


def test_trigger_posts_args_and_prints_run_id(master: FakeMaster) -> None:
    master.on("POST", "/api/v1/dags/etl/runs", reply(201, {"runId": "etl-20240501-1"}))
    result = master.invoke(["trigger", "etl", "--arg", "region=eu", "-a", "k=v=w"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "etl-20240501-1\n"
    (req,) = master.requests
    assert req.headers["content-type"] == "application/json"
    assert body(req) == {"args": {"region": "eu", "k": "v=w"}}


def test_trigger_without_args_sends_empty_args(master: FakeMaster) -> None:
    master.on("POST", "/api/v1/dags/etl/runs", reply(201, {"runId": "r1"}))
    master.invoke(["trigger", "etl"])
    assert body(master.requests[0]) == {"args": {}}


def test_trigger_bad_arg_is_a_usage_error(master: FakeMaster) -> None:
    result = master.invoke(["trigger", "etl", "--arg", "oops"])
    assert result.exit_code == 2
    assert master.requests == []


@pytest.mark.parametrize(("final", "code"), [("SUCCESS", 0), ("FAILED", 1), ("CANCELLED", 1)])
def test_trigger_wait_polls_until_terminal(master: FakeMaster, final: str, code: int) -> None:
    master.on("POST", "/api/v1/dags/etl/runs", reply(201, {"runId": "r1"}))
    master.on(
        "GET",
        "/api/v1/runs/r1",
        reply(200, run_doc("PENDING")),
        reply(200, run_doc("RUNNING")),
        reply(200, run_doc(final)),
    )
    result = master.invoke(["trigger", "etl", "--wait", "--interval", "0.2"])
    assert result.exit_code == code, result.output
    assert result.stdout.startswith("r1\n")
    assert final in result.stdout
    assert master.sleeps == [0.2, 0.2]
    assert len(master.sent("GET", "/api/v1/runs/r1")) == 3


def test_trigger_wait_json_prints_only_the_final_run(master: FakeMaster) -> None:
    master.on("POST", "/api/v1/dags/etl/runs", reply(201, {"runId": "r1"}))
    master.on("GET", "/api/v1/runs/r1", reply(200, run_doc("FAILED")))
    result = master.invoke(["--json", "trigger", "etl", "--wait"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == run_doc("FAILED")


def test_runs_list_passes_filters_and_reports_the_cursor(master: FakeMaster) -> None:
    page = {
        "runs": [
            {
                "runId": "etl-2",
                "dagId": "etl",
                "state": "SUCCESS",
                "trigger": "manual",
                "createdAt": "2024-05-01T11:00:00Z",
                "startedAt": "2024-05-01T11:00:00Z",
                "endedAt": "2024-05-01T11:02:05Z",
            }
        ],
        "nextCursor": "abc",
    }
    master.on("GET", "/api/v1/runs", reply(200, page))
    result = master.invoke(["runs", "list", "--dag", "etl", "--state", "success", "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert dict(master.requests[0].url.params) == {"dag": "etl", "state": "SUCCESS", "limit": "5"}
    header, row = result.stdout.splitlines()
    assert header.split() == ["RUN", "DAG", "STATE", "TRIGGER", "CREATED", "DURATION"]
    assert row.split() == ["etl-2", "etl", "SUCCESS", "manual", "2024-05-01T11:00:00Z", "2m05s"]
    assert result.stderr == "more runs: --cursor abc\n"

    master.invoke(["runs", "list", "--cursor", "abc"])
    assert dict(master.requests[1].url.params) == {"cursor": "abc"}


def test_runs_list_json_is_the_server_document(master: FakeMaster) -> None:
    page: dict[str, Any] = {"runs": [], "nextCursor": None}
    master.on("GET", "/api/v1/runs", reply(200, page))
    result = master.invoke(["--json", "runs", "list"])
    assert json.loads(result.stdout) == page


STATUS = {
    "runId": "r1",
    "dagId": "etl",
    "state": "RUNNING",
    "trigger": "schedule",
    "createdAt": "2024-05-01T11:59:00Z",
    "startedAt": "2024-05-01T11:59:00Z",
    "endedAt": None,
    "scheduledAt": "2024-05-01T11:59:00Z",
    "args": {"region": "eu", "flag": True, "obj": {"b": [1]}, "none": None},
    "waiting": None,
    "tasks": {
        "extract": {
            "state": "SUCCESS",
            "attempt": 1,
            "worker": "w1",
            "startedAt": "2024-05-01T11:59:00Z",
            "endedAt": "2024-05-01T11:59:01.500Z",
            "exitCode": 0,
            "error": None,
        },
        "load": {
            "state": "FAILED",
            "attempt": 3,
            "worker": "w1",
            "startedAt": "2024-05-01T11:59:02Z",
            "endedAt": "2024-05-01T11:59:04Z",
            "exitCode": 2,
            "error": "exit status 2\nsee log",
        },
        "report": {"state": "RUNNING", "attempt": 1, "worker": "w2", "startedAt": "2024-05-01T11:59:30Z"},
        "notify": {"state": "QUEUED", "attempt": 0, "waiting": "no free slot"},
    },
}


def test_runs_status_prints_header_and_one_line_per_task(master: FakeMaster) -> None:
    master.on("GET", "/api/v1/runs/r1", reply(200, STATUS))
    result = master.invoke(["runs", "status", "r1"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "run:       r1" in out
    assert "state:     RUNNING" in out
    # Non-strings as the JSON they came as (they showed as Python's True, {'b': [1]}, None).
    assert 'args:      region=eu flag=true obj={"b": [1]} none=null' in out
    assert "duration:  1m+" in out
    tasks = out.split("\n\n", 1)[1].splitlines()
    assert tasks[0].split() == ["TASK", "STATE", "ATTEMPT", "DURATION", "EXIT", "DETAIL"]
    assert tasks[1].split() == ["extract", "SUCCESS", "1", "1.5s", "0", "-"]
    assert tasks[2].split() == ["load", "FAILED", "3", "2s", "2", "exit", "status", "2", "see", "log"]
    assert tasks[3].split() == ["report", "RUNNING", "1", "30s+", "-", "on", "w2"]
    assert tasks[4].split() == ["notify", "QUEUED", "0", "-", "-", "waiting:", "no", "free", "slot"]


def test_runs_status_says_when_retention_purged_the_logs(master: FakeMaster) -> None:
    purged = run_doc("SUCCESS", endedAt="2024-05-01T12:00:00.000Z", logsPurgedAt="2024-05-09T12:00:00.000Z")
    master.on("GET", "/api/v1/runs/r1", reply(200, purged))
    out = master.invoke(["runs", "status", "r1"]).stdout
    assert "logs:      purged 2024-05-09T12:00:00.000Z (retention)" in out
    master.on("GET", "/api/v1/runs/r1", reply(200, run_doc("SUCCESS", logsPurgedAt=None)))
    assert "logs:" not in master.invoke(["runs", "status", "r1"]).stdout


def test_runs_status_shows_why_a_run_waits(master: FakeMaster) -> None:
    master.on("GET", "/api/v1/runs/r1", reply(200, run_doc("PENDING", waiting="no worker with labels [gpu]")))
    result = master.invoke(["runs", "status", "r1"])
    assert "state:     PENDING (waiting: no worker with labels [gpu])" in result.stdout


def test_waiting_explanations_do_not_double_the_word(master: FakeMaster) -> None:
    lost = "waiting for a new driver (the previous one was lost or gave the run back)"
    tasks = {"b": {"state": "PENDING", "attempt": 0, "waiting": "waiting for upstream: a"}}
    master.on("GET", "/api/v1/runs/r1", reply(200, run_doc("RUNNING", waiting=lost, tasks=tasks)))
    out = master.invoke(["runs", "status", "r1"]).stdout
    assert f"state:     RUNNING ({lost})" in out
    assert out.splitlines()[-1].split()[-4:] == ["waiting", "for", "upstream:", "a"]
    assert "waiting: waiting" not in out


def test_runs_cancel(master: FakeMaster) -> None:
    master.on("POST", "/api/v1/runs/r1/cancel", reply(202, {"runId": "r1", "state": "RUNNING"}))
    result = master.invoke(["runs", "cancel", "r1"])
    assert result.exit_code == 0
    assert result.stdout == "cancel requested for r1\n"
    result = master.invoke(["--json", "runs", "cancel", "r1"])
    assert json.loads(result.stdout) == {"runId": "r1", "state": "RUNNING"}


def test_runs_cancel_of_a_cancelled_run_says_so(master: FakeMaster) -> None:
    """Found by the day-one walk: cancelling a cancelled run printed "cancel requested"."""
    master.on("POST", "/api/v1/runs/r1/cancel", reply(200, {"runId": "r1", "state": "CANCELLED"}))
    result = master.invoke(["runs", "cancel", "r1"])
    assert (result.exit_code, result.stdout) == (0, "r1 is CANCELLED\n")


def log_page(data: str, offset: int, complete: bool) -> httpx.Response:
    return reply(
        200, {"data": data, "offset": offset, "nextOffset": offset + len(data.encode()), "complete": complete}
    )


def test_logs_prints_what_is_stored_without_adding_newlines(master: FakeMaster) -> None:
    master.on("GET", LOG, log_page("line 1\nhalf", 0, False), log_page("", 11, False))
    result = master.invoke(["runs", "logs", "r1", "extract"])
    assert result.exit_code == 0
    assert result.stdout == "line 1\nhalf"
    assert [r.url.params["offset"] for r in master.requests] == ["0", "11"]
    assert master.sleeps == []


def test_logs_follow_polls_from_next_offset_until_complete(master: FakeMaster) -> None:
    master.on(
        "GET",
        LOG,
        log_page("é1\n", 5, False),  # multi-byte: offsets are bytes
        log_page("", 9, False),
        log_page("", 9, False),
        log_page("2\n", 9, True),
        log_page("", 11, True),
    )
    result = master.invoke(["runs", "logs", "r1", "extract", "--follow", "--offset", "5"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "é1\n2\n"
    assert [r.url.params["offset"] for r in master.requests] == ["5", "9", "9", "9", "11"]
    assert master.sleeps == [0.5, 0.5]  # only while nothing new came


def test_logs_follow_on_an_already_complete_log_stops_at_once(master: FakeMaster) -> None:
    master.on("GET", "/api/v1/runs/r1/tasks/__run__/log", log_page("", 0, True))
    result = master.invoke(["runs", "logs", "r1", "__run__", "-f"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert len(master.requests) == 1
    assert master.sleeps == []


def test_logs_json_without_follow_prints_one_answer(master: FakeMaster) -> None:
    master.on("GET", LOG, log_page("abc", 0, True))
    result = master.invoke(["--json", "runs", "logs", "r1", "extract"])
    assert json.loads(result.stdout) == {"data": "abc", "offset": 0, "nextOffset": 3, "complete": True}
    assert len(master.requests) == 1


def test_logs_json_follow_prints_one_document_per_line(master: FakeMaster) -> None:
    master.on("GET", LOG, log_page("a", 0, False), log_page("", 1, False), log_page("", 1, True))
    result = master.invoke(["--json", "runs", "logs", "r1", "extract", "--follow"])
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["data"] for d in docs] == ["a", ""]
    assert docs[-1]["complete"] is True


def test_logs_are_written_verbatim(master: FakeMaster) -> None:
    master.on("GET", LOG, log_page("\x1b[31mred\x1b[0m\r\n", 0, True), log_page("", 14, True))
    result = master.invoke(["runs", "logs", "r1", "extract"])
    assert result.stdout_bytes == b"\x1b[31mred\x1b[0m\r\n"


HOSTILE_OUTPUT = "\x1b[31mRED\x1b[0m \x1b]0;pwned title\x07\r\x1b[2Ahidden\x1b]52;c;"


def test_logs_on_a_terminal_keep_colours_and_drop_what_would_drive_it(
    master: FakeMaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task retitled the operator's terminal, moved its cursor and wrote its clipboard
    through ``kiok runs logs``; a sequence split between two pages is dropped whole."""
    monkeypatch.setattr("kiok.cli.logs._on_terminal", lambda: True)
    rest = "aGk=\x07 done\n"
    first = len(HOSTILE_OUTPUT.encode())
    master.on("GET", LOG, log_page(HOSTILE_OUTPUT, 0, False), log_page(rest, first, True))
    result = master.invoke(["runs", "logs", "r1", "extract"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "\x1b[31mRED\x1b[0m hidden done\n"


def test_logs_piped_are_verbatim(master: FakeMaster) -> None:
    master.on("GET", LOG, log_page(HOSTILE_OUTPUT, 0, True))
    assert master.invoke(["runs", "logs", "r1", "extract"]).stdout == HOSTILE_OUTPUT


def test_an_unterminated_string_sequence_ends_at_its_line() -> None:
    """An OSC left open held every later line back (kiok's own among them) until 4 KiB
    passed, then dropped them."""
    safe = TerminalFilter()
    out = safe.feed("a\x1b]0;never ended\n[kiok] attempt 1 FAILED\n")
    assert out == "a\n\x1b[7m[kiok]\x1b[27m attempt 1 FAILED\n"
    assert safe.feed("b\x1bP1;2") + safe.feed("3\x1b\\c\n") == "bc\n"


def test_only_what_the_ui_shows_of_colours_reaches_the_terminal_and_it_ends_plain() -> None:
    """Before: every SGR passed, concealed text (``ESC[8m``) included, and nothing reset it: a
    task hid kiok's own later lines, and the operator's prompt and typing after the command."""
    safe = TerminalFilter()
    out = safe.feed("\x1b[8mhidden\n\x1b[5;7;1;31mbold red\n\x1b[38;5;9;48;2;1;2;3mx\x1b[38:2::1:2:3my\n")
    assert out == "hidden\n\x1b[1;31mbold red\n\x1b[38;5;9;48;2;1;2;3mxy\n"
    assert safe.end() == "\x1b[0m"
    # A colour left open by the task stops at kiok's own line (split between pages too).
    safe = TerminalFilter()
    out = safe.feed("\x1b[30;40mblack on black\n[ki") + safe.feed("ok] attempt 1 failed: exit code 1\n")
    assert out == "\x1b[30;40mblack on black\n\x1b[0m\x1b[7m[kiok]\x1b[27m attempt 1 failed: exit code 1\n"
    assert safe.feed("a [kiok] in a line\n") == "a [kiok] in a line\n"
    # Nor to the "[task] " kiok writes before a task's line that would read as its own (a task
    # coloured it as the background, then reset: the marker was invisible; found by the probe).
    safe = TerminalFilter()
    out = safe.feed("x\x1b[38;2;16;20;28m\n[task] \x1b[0m[kiok] forged\n")
    assert out == "x\x1b[38;2;16;20;28m\n\x1b[0m[task] \x1b[0m[kiok] forged\n"
    # Opened and closed again in one chunk, around kiok's line.
    safe = TerminalFilter()
    assert safe.feed("\x1b[8;30;40mx\n[kiok] attempt 1 failed\n\x1b[0m") + safe.end() == (
        "\x1b[30;40mx\n\x1b[0m\x1b[7m[kiok]\x1b[27m attempt 1 failed\n\x1b[0m"
    )
    # Plain output is left as it is, and needs no reset.
    safe = TerminalFilter()
    assert safe.feed("[kiok] attempt 1 started\nplain\n\x1b[31mred\x1b[0m\n") + safe.end() == (
        "\x1b[7m[kiok]\x1b[27m attempt 1 started\nplain\n\x1b[31mred\x1b[0m\n"
    )


def test_kiok_s_own_lines_are_drawn_as_no_task_line_can_be() -> None:
    """Found by the attack probe: characters a terminal draws as nothing (a combining accent, a
    Hangul jamo) before ``[kiok]``, or a long line wrapping there, made a task's line look
    exactly like kiok's own in ``kiok runs logs``. kiok's own ``[kiok]`` is drawn in reverse
    video, which no task's output keeps here, as the UI draws its own lines as a tinted row."""
    safe = TerminalFilter()
    out = safe.feed("[kiok] --- attempt 2 ---\n\u0301[kiok] --- attempt 9 ---\n" + " " * 80 + "[kiok] x\n")
    assert out.splitlines() == [
        "\x1b[7m[kiok]\x1b[27m --- attempt 2 ---",
        "\u0301[kiok] --- attempt 9 ---",
        " " * 80 + "[kiok] x",
    ]
    assert safe.feed("\x1b[7m[kiok] reversed by the task\n") == "[kiok] reversed by the task\n"


def test_logs_interrupted_leave_the_terminal_plain(
    master: FakeMaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kiok.cli.logs._on_terminal", lambda: True)

    def interrupted(_: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt  # Ctrl-C while following

    master.on("GET", LOG, log_page("\x1b[31mred and", 0, False), interrupted)
    result = master.invoke(["runs", "logs", "r1", "extract", "--follow"])
    assert result.exit_code != 0
    assert result.stdout.startswith("\x1b[31mred and\x1b[0m"), result.stdout


_TERMINAL_PIECES = ["a", "[kiok] x", "\n", "\x1b", "\x1b[", "\x1b[31m", "\x1b[0m", "\x1b]0;t", "\x07",
                    "\x1b\\", "\x1bP", "\x1b_", "\x1b(B", "\r", "\t", "k"]  # fmt: skip


@settings(max_examples=400, deadline=None)
@example(["ok\n", "\x1b]0;t", "\x1b\\", "\n"], [9])  # cut between the ESC and the \\ of its ST
@given(st.lists(st.sampled_from(_TERMINAL_PIECES), max_size=30), st.lists(st.integers(0, 120), max_size=6))
def test_what_reaches_the_terminal_does_not_depend_on_where_pages_are_cut(
    pieces: list[str], cuts: list[int]
) -> None:
    """Before: a page cut between the ESC and the backslash of a string sequence's ST printed
    the sequence's text (a task could pad its output to put a cut there; found by review)."""
    text = "".join(pieces)
    whole = TerminalFilter()
    expected = whole.feed(text) + whole.end()
    paged, last, out = TerminalFilter(), 0, ""
    for cut in sorted(c for c in cuts if c < len(text)):
        out += paged.feed(text[last:cut])
        last = cut
    assert out + paged.feed(text[last:]) + paged.end() == expected


def test_logs_terminated_leave_the_terminal_plain(
    master: FakeMaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the attacker probe: SIGTERM (``timeout``, a closed window) ended the command
    without its reset, leaving the terminal in the task's colours."""
    import signal

    monkeypatch.setattr("kiok.cli.logs._on_terminal", lambda: True)

    def terminated(_: httpx.Request) -> httpx.Response:
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler), handler  # the default would end the process, no reset
        handler(signal.SIGTERM, None)
        raise AssertionError("not reached")

    master.on("GET", LOG, log_page("\x1b[31mred and", 0, False), terminated)
    result = master.invoke(["runs", "logs", "r1", "extract", "--follow"])
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    assert result.stdout == "\x1b[31mred and\x1b[0m"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # given back
