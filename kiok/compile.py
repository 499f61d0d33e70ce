"""Compile Python DAG files: ``python -m kiok.compile FILE...`` prints their specs as JSON.

A DAG file is run once, here, in this process; every module-level ``kiok.Dag`` becomes a
spec (several per file are fine). Anything the file prints goes to stderr so stdout stays
a clean JSON array for the caller (git-sync, bundles, ``kiok dags register``).
Exit status: 0 on success, 2 with a message on stderr for any error in the file or its DAGs.
"""

from __future__ import annotations

import contextlib
import json
import runpy
import sys
from collections.abc import Iterator, Sequence
from os import PathLike, fspath
from pathlib import Path

from kiok.dag.sdk import Dag
from kiok.dag.spec import DagSpec
from kiok.errors import DagValidationError


def compile_file(path: str | PathLike[str]) -> list[DagSpec]:
    """The validated specs of every module-level ``Dag`` in the file, in definition order.

    Raises ``DagValidationError`` when the file cannot be run, defines no Dag, defines two
    DAGs with one id, or a DAG is invalid (the message then names the DAG and the field).
    """
    file = Path(fspath(path))
    if not file.is_file():
        raise DagValidationError(f"{file}: no such file")
    try:
        with _script_dir_on_path(file):
            namespace = runpy.run_path(str(file))
    except (Exception, SystemExit) as e:
        raise DagValidationError(f"{file}: running the module failed: {type(e).__name__}: {e}") from e
    dags: list[Dag] = []
    for value in namespace.values():
        if isinstance(value, Dag) and not any(value is d for d in dags):
            dags.append(value)
    if not dags:
        raise DagValidationError(f"no module-level Dag found in {file}")
    specs: list[DagSpec] = []
    for dag in dags:
        try:
            spec = dag.to_spec()
        except DagValidationError as e:
            raise DagValidationError(f"{file}: DAG {dag.name!r}: {e.message}", field=None) from e
        if any(s.id == spec.id for s in specs):
            raise DagValidationError(f"{file}: two DAGs with id {spec.id!r}")
        specs.append(spec)
    return specs


@contextlib.contextmanager
def _script_dir_on_path(file: Path) -> Iterator[None]:
    """Let the DAG file import its siblings, as ``python FILE`` would, without leaking the entry."""
    entry = str(file.resolve().parent)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or any(a in ("-h", "--help") for a in args):
        print("usage: python -m kiok.compile FILE [FILE...]", file=sys.stderr)
        return 2
    specs: list[DagSpec] = []
    try:
        with contextlib.redirect_stdout(sys.stderr):
            for arg in args:
                specs.extend(compile_file(arg))
    except DagValidationError as e:
        print(f"kiok.compile: {e}", file=sys.stderr)
        return 2
    json.dump([s.to_dict() for s in specs], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
