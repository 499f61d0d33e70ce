"""The real ``kiok`` executable against a real ``kiok standalone`` (and, for the retry, a real
``kiok master`` that opens when a real ``kiok worker`` joins): ``--version``, shell
completion, global options after the command, ``--json`` errors, ``kiok cluster``,
``kiok workers`` (drain and undrain on the worker's status port), ``kiok connections``,
``kiok iam`` with an access key used through ``KIOK_ACCESS_KEY``, ``kiok audit``, a write
retried while the cluster is not ready, and error lines that say only what went wrong."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Master, Standalone, WorkerProcess, free_port
from tests.integration.test_cli import CLI_TIMEOUT_S, KiokCli, assert_clean_error, cli_for, show, write


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    standalone = Standalone(tmp_path_factory.mktemp("cli-admin") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "3"})
    standalone.start()
    yield standalone
    standalone.stop()


@pytest.fixture(scope="module")
def cli(node: Standalone, tmp_path_factory: pytest.TempPathFactory) -> KiokCli:
    logged_in = cli_for(node, tmp_path_factory.mktemp("cli-admin-user") / "config")
    logged_in.ok("login", "--user", "admin", "--password", ADMIN_PASSWORD)
    return logged_in


def with_input(cli: KiokCli, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli.argv(args),
        env=cli.env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def json_error(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert done.returncode == 1 and done.stdout == "", show(done)
    error: dict[str, str] = json.loads(done.stderr)["error"]
    return error


# --- the command itself ------------------------------------------------------------------------


def test_version_and_shell_completion(tmp_path: Path) -> None:
    cli = KiokCli(f"127.0.0.1:{free_port()}", tmp_path / "config")
    assert cli.ok("--version").startswith("kiok 0.")
    script = cli.ok(env={"_KIOK_COMPLETE": "bash_source"})
    assert "_kiok_completion" in script and "complete " in script

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {"_KIOK_COMPLETE": "bash_complete", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
        return cli.ok(env=env).splitlines()

    assert "plain,cluster" in complete("kiok clu")
    assert "plain,access-keys" in complete("kiok iam acc")
    assert {"plain,drain", "plain,undrain"} <= set(complete("kiok workers "))


def test_unreachable_master_names_the_option_and_variable(tmp_path: Path) -> None:
    cli = KiokCli(f"127.0.0.1:{free_port()}", tmp_path / "config")
    assert_clean_error(cli("cluster"), "cannot reach kiok master", "--master or KIOK_MASTER")
    assert json_error(cli("cluster", "--json"))["code"] == "unreachable"


def test_a_wrong_password_says_only_that(node: Standalone, tmp_path: Path) -> None:
    cli = cli_for(node, tmp_path / "config")
    done = cli("login", "--user", "admin", "--password", "not-the-password")
    assert done.returncode == 1 and done.stderr == "error: wrong user or password\n", show(done)


def test_global_options_after_the_command_and_json_errors(
    cli: KiokCli, node: Standalone, tmp_path: Path
) -> None:
    stranger = KiokCli(f"127.0.0.1:{free_port()}", tmp_path / "config")  # nothing listens there
    master = f"127.0.0.1:{node.admin_port}"
    doc = json.loads(stranger.ok("dags", "list", "--master", master, "--token", node.token, "--json"))
    assert "dags" in doc
    error = json_error(cli("runs", "status", "nope-1-1", "--json"))
    assert error["code"] in ("not_found", "forbidden") and error["message"]
    assert_clean_error(cli("runs", "status", "nope-1-1"))


# --- cluster and workers -----------------------------------------------------------------------


def test_cluster_shows_leader_term_and_workers(cli: KiokCli, node: Standalone) -> None:
    lines = cli.ok("cluster").splitlines()
    doc = json.loads(cli.ok("cluster", "--json"))
    (worker,) = doc["workers"]
    assert lines[0] == f"leader:  {doc['leader']} (term {doc['term']})"
    assert lines[2].split() == ["MASTER", "ROLE", "ADDRESS", "READY"]
    assert lines[3].split()[:2] == [doc["leader"], "leader"]
    header = lines.index(next(line for line in lines if line.startswith("WORKER")))
    assert lines[header].split() == [
        "WORKER", "ADDRESS", "LABELS", "SLOTS", "BUSY", "FREE", "DRAINING", "CONNECTED", "HEARTBEAT"
    ]  # fmt: skip
    row = lines[header + 1].split()
    assert row[:8] == [worker["id"], worker["address"], "-", "3", "0", "3", "no", "yes"]
    assert row[8:] and row[-1] == "ago"
    # the same table under `kiok workers list`
    assert cli.ok("workers", "list").splitlines()[1].split()[:8] == row[:8]


def test_workers_drain_and_undrain_on_the_status_port(cli: KiokCli, node: Standalone) -> None:
    def draining() -> bool:
        return bool(json.loads(cli.ok("cluster", "--json"))["workers"][0]["draining"])

    address = f"127.0.0.1:{node.status_port}"
    # the worker's settings (its data directory): the CLI reads the status token there
    as_the_worker = {"KIOK_BASE_DATA_DIR": str(node.data_dir)}
    try:
        out = cli.ok("workers", "drain", address, env=as_the_worker)
        assert out == f"worker at http://{address} is draining (0 runs active; they carry on to their end)\n"
        assert draining()
        assert json.loads(cli.ok("workers", "drain", address, "--json", env=as_the_worker)) == {
            "draining": True,
            "activeRuns": 0,
        }
    finally:
        out = cli.ok("workers", "undrain", address, env=as_the_worker)
    assert out == f"worker at http://{address} takes runs again (0 runs active)\n"
    assert not draining()
    dead = f"127.0.0.1:{free_port()}"
    assert_clean_error(
        cli("workers", "drain", dead, env=as_the_worker), f"cannot reach worker status port at http://{dead}"
    )


def test_workers_revoke_and_admitted_list(cli: KiokCli) -> None:
    assert cli.ok("workers", "list", "--admitted") == "no workers admitted\n"
    assert json_error(cli("workers", "revoke", "no-such-worker", "--json"))["code"] == "not_found"


# --- connections -------------------------------------------------------------------------------


def test_connections_set_list_show_delete(cli: KiokCli) -> None:
    secret = "pg-Secret-value-93"
    done = with_input(
        cli,
        secret + "\n",
        "connections",
        "set",
        "pg",
        "--type",
        "postgres",
        "-p",
        "host=db",
        "--prompt",
        "password",
    )
    assert done.returncode == 0, show(done)
    assert done.stdout.endswith("set pg (2 properties)\n") and secret not in done.stdout + done.stderr
    listed = cli.ok("connections", "list").splitlines()
    assert listed[0].split() == ["CONNECTION", "TYPE", "PROPERTIES", "UPDATED", "DESCRIPTION"]
    assert listed[1].split()[:3] == ["pg", "postgres", "host,password"]
    shown = cli.ok("connections", "show", "pg")
    assert "  password: ***" in shown and secret not in shown and "db" not in shown
    assert json.loads(cli.ok("connections", "show", "pg", "--json"))["properties"] == {
        "host": "***",
        "password": "***",
    }
    usage = cli("connections", "set", "pg", "-p", "novalue")
    assert usage.returncode == 2 and "'novalue' is not KEY=VALUE" in usage.stderr, show(usage)
    assert cli.ok("connections", "delete", "pg") == "deleted pg\n"
    assert_clean_error(cli("connections", "show", "pg"), "not found")
    assert cli.ok("connections", "list") == "no connections\n"


# --- iam, access keys, audit -------------------------------------------------------------------


def test_iam_users_groups_policies_and_an_access_key(cli: KiokCli, node: Standalone, tmp_path: Path) -> None:
    policy = write(
        tmp_path, "readers.yaml", "Statement:\n  - {Effect: Allow, Action: 'dags:*', Resource: '*'}\n"
    )
    assert cli.ok("iam", "policies", "set", "dag-readers", str(policy)) == "set policy dag-readers\n"
    rows = [line.split() for line in cli.ok("iam", "policies", "list").splitlines()]
    assert rows[0] == ["POLICY", "EFFECTS", "ACTIONS", "RESOURCES"]
    assert ["dag-readers", "Allow", "dags:*", "*"] in rows
    assert json.loads(cli.ok("iam", "policies", "show", "dag-readers"))["Statement"][0]["Effect"] == "Allow"

    assert cli.ok("iam", "groups", "set", "readers", "--policies", "dag-readers").startswith(
        "set group readers"
    )
    assert ["readers", "dag-readers"] in [
        line.split() for line in cli.ok("iam", "groups", "list").splitlines()
    ]

    password = "Bob-password-4242"
    done = with_input(
        cli, f"{password}\n{password}\n", "iam", "users", "create", "bob", "--groups", "readers"
    )
    assert done.returncode == 0 and done.stdout.endswith("created user bob\n"), show(done)
    assert password not in done.stdout
    assert_clean_error(cli("iam", "users", "create", "bob", "--password", password), "exists")
    users = {line.split()[0]: line.split() for line in cli.ok("iam", "users", "list").splitlines()[1:]}
    assert users["bob"][1:4] == ["readers", "-", "no"]

    key = cli.ok("iam", "access-keys", "create", "--user", "bob").strip()
    key_id, _, secret = key.partition(":")
    assert key_id and secret
    listed = cli.ok("iam", "access-keys", "list", "--user", "bob").splitlines()
    assert listed[0].split() == ["ACCESS", "KEY", "USER", "CREATED"] and listed[1].split()[:2] == [
        key_id,
        "bob",
    ]
    assert secret not in "\n".join(listed)
    # A key of one's own needs one's password, prompted for on stderr: stdout is the key alone.
    own = with_input(cli, f"{ADMIN_PASSWORD}\n", "iam", "access-keys", "create")
    assert own.returncode == 0 and ADMIN_PASSWORD not in own.stdout, show(own)
    own_id, _, own_secret = own.stdout.strip().partition(":")
    assert own_id and own_secret and own.stdout.count("\n") == 1, show(own)
    wrong = cli("iam", "access-keys", "create", "--password", "Not-The-Admin-Password-1")
    assert_clean_error(wrong, "wrong password")
    assert cli.ok("iam", "access-keys", "delete", own_id) == f"deleted access key {own_id}\n"

    as_bob = KiokCli(cli.master, tmp_path / "bob-config")  # nothing saved: only the key
    assert "dags" in json.loads(as_bob.ok("dags", "list", "--json", env={"KIOK_ACCESS_KEY": key}))
    assert "dags" in json.loads(as_bob.ok("dags", "list", "--json", "--access-key", key))
    assert_clean_error(as_bob("iam", "users", "list", env={"KIOK_ACCESS_KEY": key}), "may not")

    assert cli.ok("iam", "users", "update", "bob", "--groups", "") == "updated user bob\n"
    assert_clean_error(as_bob("dags", "list", env={"KIOK_ACCESS_KEY": key}), "may not")

    assert cli.ok("iam", "access-keys", "delete", key_id) == f"deleted access key {key_id}\n"
    assert_clean_error(as_bob("dags", "list", env={"KIOK_ACCESS_KEY": key}), "invalid access key")
    assert cli.ok("iam", "users", "delete", "bob") == "deleted user bob\n"
    assert cli.ok("iam", "groups", "delete", "readers") == "deleted group readers\n"
    assert cli.ok("iam", "policies", "delete", "dag-readers") == "deleted policy dag-readers\n"
    assert "bob" not in cli.ok("iam", "users", "list")


def test_audit_lists_records_newest_first(cli: KiokCli) -> None:
    cli.ok("connections", "set", "audited", "-p", "k=v")
    lines = cli.ok("audit", "--limit", "3").splitlines()
    assert lines[0].split() == ["AT", "ACTOR", "ACTION", "TARGET", "ADDRESS", "RESULT", "DETAIL"]
    assert lines[1].split()[1:6] == ["admin", "connections:Write", "audited", "127.0.0.1", "ok"]
    page = json.loads(cli.ok("audit", "--limit", "1", "--json"))
    assert len(page["entries"]) == 1 and page["nextCursor"]
    done = cli("audit", "--limit", "1", "--cursor", page["nextCursor"])
    assert done.returncode == 0 and "more records: --cursor" in done.stderr, show(done)
    cli.ok("connections", "delete", "audited")


# --- retrying while the cluster is not ready ------------------------------------------------------


@pytest.mark.slow
def test_a_write_waits_for_the_cluster_to_open(tmp_path: Path) -> None:
    """A master without a worker answers 503 (Retry-After: 1); the CLI keeps the write until
    a worker joins, instead of printing "no worker is connected"."""
    master = Master(tmp_path / "master")
    worker: WorkerProcess | None = None
    try:
        master.start()
        token = master.token
        join = master.join_token()
        dag = write(tmp_path, "w.yaml", "dag: {id: waited}\ntasks:\n  - {id: a, script: 'true'}\n")
        cli = KiokCli(f"127.0.0.1:{master.admin_port}", tmp_path / "config")
        with cli.popen("--token", token, "dags", "register", str(dag)) as proc:
            assert proc.stderr is not None
            first = proc.stderr.readline()  # the CLI has been answered 503 at least once
            assert "no worker is connected" in first and "retrying for up to 30s" in first, first
            worker = WorkerProcess(
                tmp_path / "worker", master.internal_address, "w-retry", {"KIOK_WORKER_JOIN_TOKEN": join}
            )
            worker.start()
            out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
        assert proc.returncode == 0, err
        assert out == "registered waited\n"
    finally:
        if worker is not None:
            worker.stop()
        master.stop()
