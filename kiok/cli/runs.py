"""``kiok trigger`` and ``kiok runs``: start runs, list them, show one, cancel one.

Task logs (``kiok runs logs``) live in ``kiok.cli.logs``. ``--wait`` polls the run with the
injected ``Runtime.sleep``, so tests never sleep for real.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NoReturn

import click

from kiok.cli.client import CliError, segment
from kiok.cli.context import CliContext, F, FiniteFloatRange, json_option, pass_cli
from kiok.cli.logs import logs
from kiok.cli.output import NONE, elapsed, emit_json, emit_table, table, text, visible, waiting
from kiok.core.instants import parse_time_bound
from kiok.core.timefmt import iso_millis
from kiok.errors import InvalidInput

TERMINAL = frozenset({"SUCCESS", "FAILED", "CANCELLED"})


def parse_args(pairs: tuple[str, ...]) -> dict[str, str]:
    """``k=v`` pairs as a dict; only the first ``=`` splits (``k=v=w`` gives ``v=w``), the last
    pair for a key wins. Raises ``click.BadParameter`` for a pair without ``=`` or key."""
    args: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--arg")
        args[key.strip()] = value
    return args


def parse_conf(text: str | None) -> dict[str, Any]:
    """``--conf``: typed run arguments as one JSON object (``{"n": 3, "tags": ["a"]}``). A
    value that is not one prints a single error line and exits 2 (a usage error)."""
    if text is None:
        return {}
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as e:
        _usage_error(f"--conf is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}")
    except ValueError:  # Python refuses an integer of thousands of digits
        _usage_error("--conf is not valid JSON: an integer has too many digits")
    except RecursionError:
        _usage_error("--conf is nested too deeply")
    if not isinstance(conf, dict):
        _usage_error(f"--conf must be a JSON object such as '{{\"n\": 3}}', got {type(conf).__name__}")
    return conf


def _usage_error(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(2)


#: ``--interval`` bounds, in seconds: polls no closer than this, and no further apart than an
#: hour (``time.sleep`` refuses ``nan`` and overflows on ``1e308``).
_MIN_INTERVAL_S = 0.1
_MAX_INTERVAL_S = 3600.0


def _wait_options(f: F) -> F:
    """``--wait`` and ``--interval``, alike on every command that can wait for a run's end
    (``wait_until_ended``, then ``_show_ended``)."""
    interval = click.option(
        "--interval",
        type=FiniteFloatRange(min=_MIN_INTERVAL_S, max=_MAX_INTERVAL_S),
        default=1.0,
        show_default=True,
        help="Seconds between polls with --wait.",
    )
    wait = click.option("--wait", is_flag=True, help="Wait for the run to end; exit 0 only if it succeeded.")
    return wait(interval(f))


@click.command()
@click.argument("dag_id", metavar="DAG")
@click.option("--arg", "-a", "pairs", multiple=True, metavar="KEY=VALUE", help="Run argument (repeatable).")
@click.option(
    "--conf",
    metavar="JSON",
    help="Typed run arguments as a JSON object, e.g. '{\"n\": 3}'; --arg pairs override its keys.",
)
@_wait_options
@json_option
@pass_cli
def trigger(
    cli: CliContext, dag_id: str, pairs: tuple[str, ...], conf: str | None, wait: bool, interval: float
) -> None:
    """Start a run of DAG and print its run id."""
    args = parse_conf(conf) | parse_args(pairs)
    client = cli.client()
    answer = client.post(f"/api/v1/dags/{segment(dag_id)}/runs", {"args": args})
    run_id = answer.get("runId") if isinstance(answer, dict) else None
    if not isinstance(run_id, str) or not run_id:
        raise CliError("the master's trigger answer carries no runId")
    if not wait:
        if cli.as_json:
            emit_json(answer)
        else:
            click.echo(run_id)
        return
    if not cli.as_json:
        click.echo(run_id)
    _show_ended(cli, wait_until_ended(cli, run_id, interval))


@click.group()
def runs() -> None:
    """Inspect and cancel runs."""


runs.add_command(logs)
runs.add_command(trigger)  # ``kiok runs trigger`` as well as ``kiok trigger``


@runs.command("list")
@click.option("--dag", "dag_id", metavar="DAG", help="Only runs of this DAG.")
@click.option("--state", help="Only runs in this state (PENDING, RUNNING, SUCCESS, FAILED, CANCELLED).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many runs.")
@click.option("--cursor", help="Continue from a previous page's nextCursor.")
@click.option(
    "--since",
    metavar="TIME",
    help="Only runs created at or after TIME: 1h, 2d, 30m (ago), an ISO time or a date (UTC).",
)
@click.option("--until", metavar="TIME", help="Only runs created before TIME (same forms as --since).")
@json_option
@pass_cli
def list_runs(
    cli: CliContext,
    dag_id: str | None,
    state: str | None,
    limit: int | None,
    cursor: str | None,
    since: str | None,
    until: str | None,
) -> None:
    """List runs, newest first."""
    query = {
        "dag": dag_id,
        "state": state.upper() if state else None,
        "limit": limit,
        "cursor": cursor,
        "since": _time_bound(cli, since, "--since"),
        "until": _time_bound(cli, until, "--until"),
    }
    params = {k: v for k, v in query.items() if v is not None}
    answer = cli.client().get("/api/v1/runs", params=params)
    if cli.as_json:
        emit_json(answer)
        return
    items = answer.get("runs", []) if isinstance(answer, dict) else []
    if not items:
        click.echo("no runs")
    else:
        now = cli.runtime.now()
        rows = [
            [
                text(r.get("runId")),
                text(r.get("dagId")),
                text(r.get("state")),
                text(r.get("trigger")),
                text(r.get("createdAt")),
                elapsed(r.get("startedAt"), r.get("endedAt"), now),
            ]
            for r in items
        ]
        emit_table(["RUN", "DAG", "STATE", "TRIGGER", "CREATED", "DURATION"], rows)
    next_cursor = answer.get("nextCursor") if isinstance(answer, dict) else None
    if next_cursor:
        click.echo(f"more runs: --cursor {next_cursor}", err=True)


def _time_bound(cli: CliContext, value: str | None, option: str) -> str | None:
    """The API's form (ISO 8601 UTC) of a ``--since``/``--until`` value; a bad one is a
    one-line usage error naming the option and the accepted forms."""
    if value is None:
        return None
    now_ms = int(cli.runtime.now().timestamp() * 1000)
    try:
        return iso_millis(parse_time_bound(value, option, now_ms))
    except InvalidInput as e:
        _usage_error(e.message)


@runs.command()
@click.argument("run_id", metavar="RUN")
@_wait_options
@json_option
@pass_cli
def status(cli: CliContext, run_id: str, wait: bool, interval: float) -> None:
    """Show a run and its tasks (with --wait, once it has ended)."""
    if wait:
        _show_ended(cli, wait_until_ended(cli, run_id, interval))
    else:
        _show_run(cli, cli.client().get(f"/api/v1/runs/{segment(run_id)}"))


def merge_since(held: dict[str, Any] | None, answer: Any) -> dict[str, Any]:
    """A run view brought up to date by the answer to ``?since=<held version>``: the
    answer's run fields over the held ones (it leaves out ``args``, which never change), and
    its tasks over the held ones (``"full": false``); a full answer replaces the held view."""
    if not isinstance(answer, dict):
        raise CliError("the master's run answer is not a JSON object")
    if held is None or answer.get("full", True):
        return answer
    fields = {k: v for k, v in answer.items() if k not in ("tasks", "since")}
    return {**held, **fields, "full": True, "tasks": {**held.get("tasks", {}), **answer.get("tasks", {})}}


def wait_until_ended(cli: CliContext, run_id: str, interval: float) -> dict[str, Any]:
    """Poll a run until it ends; after the first read, only what changed (``since``), so a
    long wait on a big run costs the master little."""
    client = cli.client()
    run: dict[str, Any] | None = None
    while True:
        params = {"since": run["version"]} if run is not None and "version" in run else None
        run = merge_since(run, client.get(f"/api/v1/runs/{segment(run_id)}", params=params))
        if run.get("state") in TERMINAL:
            return run
        cli.runtime.sleep(interval)


def _show_ended(cli: CliContext, run: dict[str, Any]) -> None:
    """Print a run ``--wait`` saw end, then exit 1 unless it succeeded: a script can go on
    only after a success."""
    _show_run(cli, run)
    if run.get("state") != "SUCCESS":
        raise click.exceptions.Exit(1)


def _show_run(cli: CliContext, run: Any) -> None:
    """The run as the master answered it (``--json``) or rendered for a terminal."""
    if cli.as_json:
        emit_json(run)
    else:
        click.echo(render_run(run, cli.runtime.now()))


@runs.command()
@click.argument("run_id", metavar="RUN")
@json_option
@pass_cli
def cancel(cli: CliContext, run_id: str) -> None:
    """Cancel a run: running tasks are stopped, pending ones never start."""
    answer = cli.client().post(f"/api/v1/runs/{segment(run_id)}/cancel")
    if cli.as_json:
        emit_json(answer)
    elif isinstance(answer, dict) and answer.get("state") == "CANCELLED":
        # Ended at once (cancelled before, or no task of it was running): nothing is pending.
        click.echo(f"{run_id} is CANCELLED")
    else:
        click.echo(f"cancel requested for {run_id}")


@runs.command()
@click.argument("run_id", metavar="RUN")
@click.option("--from", "from_task", metavar="TASK", help="Re-run TASK and everything downstream of it.")
@click.option("--all", "all_tasks", is_flag=True, help="Re-run every task (default: the failed ones).")
@json_option
@pass_cli
def rerun(cli: CliContext, run_id: str, from_task: str | None, all_tasks: bool) -> None:
    """Re-run a finished run in place: its failed tasks (or TASK and its downstream, or every
    task) run again as new attempts; succeeded upstream results are kept."""
    body = {"from": from_task, "onlyFailed": not all_tasks}
    answer = cli.client().post(f"/api/v1/runs/{segment(run_id)}/rerun", body)
    if cli.as_json:
        emit_json(answer)
        return
    tasks = answer.get("rerun", []) if isinstance(answer, dict) else []
    click.echo(f"re-running {run_id}: {', '.join(map(str, tasks))}")


def render_run(run: Any, now: datetime) -> str:
    """The run header, then one line per task (id, state, attempt, duration, exit code, detail)."""
    if not isinstance(run, dict):
        return text(run)
    state = text(run.get("state"))
    if run.get("waiting") and run.get("state") not in TERMINAL:
        state = f"{state} ({waiting(run['waiting'])})"
    args = run.get("args")
    shown_args = " ".join(f"{k}={_arg(v)}" for k, v in args.items()) if isinstance(args, dict) else ""
    header = [
        ("run", text(run.get("runId"))),
        ("dag", text(run.get("dagId"))),
        ("state", state),
        ("trigger", text(run.get("trigger"))),
        ("scheduled", text(run.get("scheduledAt"))),
        ("created", text(run.get("createdAt"))),
        ("started", text(run.get("startedAt"))),
        ("ended", text(run.get("endedAt"))),
        ("duration", elapsed(run.get("startedAt"), run.get("endedAt"), now)),
        ("args", shown_args or NONE),
    ]
    if run.get("reason"):  # why the masters failed it (its run timeout)
        header.insert(3, ("reason", text(run["reason"])))
    if run.get("logsPurgedAt"):
        header.append(("logs", f"purged {text(run['logsPurgedAt'])} (retention)"))
    header = [(name, visible(value)) for name, value in header]  # args come from trigger-only users
    lines = [f"{name + ':':<11}{value}" for name, value in header if name != "scheduled" or value != NONE]
    tasks = run.get("tasks")
    if isinstance(tasks, dict) and tasks:
        rows = [_task_row(task_id, t, now) for task_id, t in tasks.items() if isinstance(t, dict)]
        lines += ["", table(["TASK", "STATE", "ATTEMPT", "DURATION", "EXIT", "DETAIL"], rows)]
    return "\n".join(lines)


def _task_row(task_id: str, task: dict[str, Any], now: datetime) -> list[str]:
    detail = task.get("error") or waiting(task.get("waiting"))
    worker = task.get("worker")
    if not detail and worker and task.get("state") == "RUNNING":
        detail = f"on {worker}"
    return [
        task_id,
        text(task.get("state")),
        text(task.get("attempt")),
        elapsed(task.get("startedAt"), task.get("endedAt"), now),
        text(task.get("exitCode")),
        text(" ".join(str(detail).split()) if detail else None),  # one line, whatever the error holds
    ]


def _arg(value: object) -> str:
    """An arg as the user gave it: a string as it is, anything else as JSON (``true``, not
    Python's ``True``)."""
    return text(value) if isinstance(value, str) else text(json.dumps(value, ensure_ascii=False))
