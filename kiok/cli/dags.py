"""``kiok dags``: register, list, show, delete, pause and unpause DAGs.

Registration sends YAML and JSON files as they are (the master validates them); a Python
file is first compiled by ``python -m kiok.compile`` in a child process, so the user's
module runs there and never inside the CLI, and each DAG it defines is sent as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import yaml

import kiok
from kiok.cli.client import ApiClient, CliError, segment
from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.output import emit_error, emit_json, emit_table, text
from kiok.errors import KiokError

_COMPILE_PREFIX = "kiok.compile: "
CONTENT_TYPES = {".yaml": "application/yaml", ".yml": "application/yaml", ".json": "application/json"}


@click.group()
def dags() -> None:
    """Manage DAGs."""


@dags.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@json_option
@pass_cli
def register(cli: CliContext, files: tuple[Path, ...]) -> None:
    """Register (or update) the DAGs in FILES: .yaml, .yml, .json or .py (Python SDK), or
    directories, searched recursively for such files (others, and hidden ones, are skipped).

    Every file is tried; the command exits 1 if any of them failed.
    """
    files = tuple(_expand(files))
    if not files:
        raise click.BadParameter("no .yaml, .yml, .json or .py file found", param_hint="FILES")
    for f in files:
        if f.suffix.lower() not in (*CONTENT_TYPES, ".py"):
            raise click.BadParameter(
                f"{f}: unsupported file type (expected .yaml, .yml, .json or .py)", param_hint="FILES"
            )
    client = cli.client()
    answers: list[Any] = []
    failed = False
    for f in files:
        try:
            bodies = _documents(f)
        except CliError as e:
            failed = _report(cli, f, e)
            continue
        for body, content_type in bodies:
            try:
                answer = client.request("POST", "/api/v1/dags", content=body, content_type=content_type)
            except KiokError as e:  # refused by the master; an unreachable master stops everything
                failed = _report(cli, f, e)
                continue
            answers.append(answer)
            if not cli.as_json:
                click.echo(f"registered {answer.get('registered') if isinstance(answer, dict) else f}")
    if cli.as_json and answers:
        emit_json(answers[0] if len(answers) == 1 else answers)
    if failed:
        raise click.exceptions.Exit(1)


def _expand(paths: tuple[Path, ...]) -> list[Path]:
    """Files as given; directories replaced by the DAG files under them, in name order."""
    out: list[Path] = []
    for path in paths:
        if not path.is_dir():
            out.append(path)
            continue
        for found in sorted(path.rglob("*")):
            hidden = any(part.startswith((".", "__")) for part in found.relative_to(path).parts)
            if found.is_file() and not hidden and found.suffix.lower() in (*CONTENT_TYPES, ".py"):
                out.append(found)
    return out


def _report(cli: CliContext, path: Path, e: KiokError | CliError) -> bool:
    """Say that ``path`` failed (as JSON with ``--json``): the other files are still tried."""
    emit_error(e, as_json=cli.as_json, file=str(path))
    return True


def _documents(path: Path) -> list[tuple[bytes, str]]:
    """The request bodies (and their content types) that register the DAGs in ``path``."""
    if path.suffix.lower() == ".py":
        return [(json.dumps(doc).encode(), "application/json") for doc in compile_python(path)]
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CliError(f"cannot read: {e.strerror}") from e
    content_type = CONTENT_TYPES[path.suffix.lower()]
    if content_type == "application/json" and raw.lstrip().startswith(b"["):
        # What ``python -m kiok.compile`` prints: a list of DAG documents, sent one by one.
        try:
            docs = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, too many digits, too deep
            return [(raw, content_type)]  # the master names the problem
        if docs == []:  # else nothing would be sent, said or failed
            raise CliError("an empty list of DAG documents: nothing to register")
        return [(json.dumps(doc).encode(), content_type) for doc in docs]
    return [(raw, content_type)]


def compile_python(path: Path) -> list[Any]:
    """Run ``python -m kiok.compile path`` and return the DAG documents it prints."""
    env = dict(os.environ)
    # The child must import the same kiok as this process, installed or not.
    root = str(Path(kiok.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "kiok.compile", str(path)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    except OSError as e:
        raise CliError(f"cannot run {sys.executable}: {e.strerror}") from e
    if done.returncode != 0:
        printed, reason = _split_compile_error(done.stderr, path)
        if printed:
            click.echo(printed, err=True, nl=False)  # what the DAG module printed before failing
        raise CliError(reason or f"kiok.compile exited with status {done.returncode}")
    if done.stderr:
        click.echo(done.stderr, err=True, nl=False)  # what the DAG module printed
    try:
        docs = json.loads(done.stdout)
    except ValueError as e:
        raise CliError("kiok.compile printed something other than JSON") from e
    if not isinstance(docs, list):
        raise CliError("kiok.compile printed JSON that is not a list of DAG documents")
    return docs


def _split_compile_error(stderr: str, path: Path) -> tuple[str, str]:
    """``(what the module printed, kiok.compile's reason)`` of a failed compile. The reason loses
    its ``kiok.compile: `` and ``<path>: `` prefixes: the caller names the file already."""
    lines = stderr.splitlines(keepends=True)
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(_COMPILE_PREFIX):
            reason = "".join(lines[i:]).strip()[len(_COMPILE_PREFIX) :]
            return "".join(lines[:i]), reason.removeprefix(f"{path}: ")
    return "", stderr.strip()


@dags.command("list")
@json_option
@pass_cli
def list_dags(cli: CliContext) -> None:
    """List registered DAGs."""
    answer = cli.client().get("/api/v1/dags")
    if cli.as_json:
        emit_json(answer)
        return
    items = answer.get("dags", []) if isinstance(answer, dict) else []
    if not items:
        click.echo("no DAGs registered")
        return
    rows = [
        [text(d.get("dagId")), text(d.get("schedule")), text(d.get("paused")), text(_count(d.get("tasks")))]
        for d in items
    ]
    emit_table(["ID", "SCHEDULE", "PAUSED", "TASKS"], rows)


def _count(tasks: Any) -> Any:
    return len(tasks) if isinstance(tasks, list | dict) else tasks


@dags.command()
@click.argument("dag_id", metavar="ID")
@click.option("--version", "version", type=click.IntRange(min=1), help="Show this registered version.")
@json_option
@pass_cli
def show(cli: CliContext, dag_id: str, version: int | None) -> None:
    """Show one DAG (as YAML; --json for the server's document); --version N shows version N
    with its source."""
    suffix = "" if version is None else f"/versions/{version}"
    answer = cli.client().get(f"/api/v1/dags/{segment(dag_id)}{suffix}")
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(yaml.safe_dump(answer, sort_keys=False, allow_unicode=True), nl=False)


@dags.command()
@click.argument("dag_id", metavar="ID")
@json_option
@pass_cli
def delete(cli: CliContext, dag_id: str) -> None:
    """Delete a DAG."""
    _act(cli, "DELETE", dag_id, "", "deleted")


@dags.command()
@click.argument("dag_id", metavar="ID")
@json_option
@pass_cli
def pause(cli: CliContext, dag_id: str) -> None:
    """Pause a DAG: its schedule stops firing and triggers are refused."""
    _act(cli, "POST", dag_id, "/pause", "paused")


@dags.command()
@click.argument("dag_id", metavar="ID")
@json_option
@pass_cli
def unpause(cli: CliContext, dag_id: str) -> None:
    """Unpause a DAG."""
    _act(cli, "POST", dag_id, "/unpause", "unpaused")


def _act(cli: CliContext, method: str, dag_id: str, suffix: str, done: str) -> None:
    client: ApiClient = cli.client()
    answer = client.request(method, f"/api/v1/dags/{segment(dag_id)}{suffix}")
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(f"{done} {dag_id}")


@dags.command()
@click.argument("dag_id", metavar="ID")
@json_option
@pass_cli
def versions(cli: CliContext, dag_id: str) -> None:
    """List a DAG's registered versions, newest first."""
    answer = cli.client().get(f"/api/v1/dags/{segment(dag_id)}/versions")
    if cli.as_json:
        emit_json(answer)
        return
    items = answer.get("versions", []) if isinstance(answer, dict) else []
    rows = [
        [
            text(v.get("version")),
            text(v.get("registeredAt")),
            text(v.get("by")),
            text(v.get("sourceHash"))[:12],
        ]
        for v in items
    ]
    emit_table(["VERSION", "REGISTERED", "BY", "SOURCE HASH"], rows)


@dags.command()
@click.argument("dag_id", metavar="ID")
@click.option(
    "--from", "from_", required=True, metavar="DATE", help="First interval start (YYYY-MM-DD or ISO)."
)
@click.option(
    "--to", "to", required=True, metavar="DATE", help="Last interval start, inclusive (a date: all day)."
)
@json_option
@pass_cli
def backfill(cli: CliContext, dag_id: str, from_: str, to: str) -> None:
    """Create one run per cron interval of DAG starting in [--from, --to]; intervals that
    already have a run are left alone, so running it again creates nothing new."""
    answer = cli.client().post(f"/api/v1/dags/{segment(dag_id)}/backfill", {"from": from_, "to": to})
    if cli.as_json:
        emit_json(answer)
        return
    created = answer.get("created", []) if isinstance(answer, dict) else []
    existing = answer.get("existing", []) if isinstance(answer, dict) else []
    # ``existing`` names only the runs the caller may read; ``existingCount`` counts them all.
    had = answer.get("existingCount", len(existing)) if isinstance(answer, dict) else 0
    click.echo(f"{len(created)} run(s) created, {text(had)} interval(s) already had a run")
    for run_id in created:
        click.echo(f"  {run_id}")
