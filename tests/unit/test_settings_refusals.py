"""Settings refused at start with one line naming the key (audit items 1a, 1e, 2, 3, 5, 8, 9),
client options that are no business of server commands (4), a foreign error answer on one
line (6), and the master key's source named in its errors (7)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from kiok import logs
from kiok.cli.client import error_from_response
from kiok.config import Settings
from kiok.errors import InvalidInput
from kiok.roots import preflight
from kiok.store.keyring import master_key
from kiok.store.replicated import parse_peers, unreachable_raft_port
from tests.unit.test_cli_harness import FakeMaster

PEERS = "m1=127.0.0.1:7001,m2=127.0.0.1:7002,m3=127.0.0.1:7003"
#: Ports of this module's in-process starts (refused before they bind, but ports all the same).
PORTS = {
    "KIOK_MASTER_ADMIN_PORT": "18740",
    "KIOK_WORKER_STATUS_PORT": "18741",
    "KIOK_MASTER_INTERNAL_PORT": "18742",
}


#: A server command run in-process sets up the root logger for its process (on the runner's
#: stderr, closed after it): the tests after it keep theirs.
pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.mark.parametrize(
    ("env", "key"),
    [
        *(
            pytest.param(
                {
                    "KIOK_MASTER_PEERS": PEERS,
                    "KIOK_RAFT_ELECTION_TIMEOUT_MIN_MS": low,
                    "KIOK_RAFT_ELECTION_TIMEOUT_MAX_MS": high,
                },
                "kiok.raft.election.timeout.m",
                id=f"raft-{low}-{high}",
            )
            for low, high in (("5000", "100"), ("1000", "1000"), ("0", "0"), ("100", "300"))
        ),
        pytest.param({"KIOK_WORKER_SPAWNERS": "9007199254740992"}, "kiok.worker.spawners", id="spawners"),
        pytest.param({"KIOK_WORKER_SPAWNERS": "65"}, "kiok.worker.spawners", id="spawners-65"),
        pytest.param({"KIOK_WORKER_TASK_SLOTS": "1000000"}, "kiok.worker.task.slots", id="slots"),
        pytest.param(
            {"KIOK_AUTH_PASSWORD_HASH_CONCURRENCY": "100000"}, "hash.concurrency", id="hash-concurrency"
        ),
        pytest.param({"KIOK_LOG_LEVEL": "TRACE"}, "kiok.log.level", id="log-level"),
        pytest.param({"KIOK_LOG_FORMAT": "xml"}, "kiok.log.format", id="log-format"),
        pytest.param({"KIOK_TASK_HTTP_CONNECT_TIMEOUT_MS": "0"}, "connect.timeout", id="http-timeout"),
        pytest.param({"KIOK_NOTIFY_TIMEOUT_MS": "0"}, "kiok.notify.timeout.ms", id="notify-timeout"),
        pytest.param({"KIOK_NOTIFY_RETRY_INITIAL_MS": "0"}, "notify.retry.initial", id="notify-retry"),
        pytest.param({"KIOK_WORKER_ID": " "}, "kiok.worker.id", id="worker-id-blank"),
        pytest.param({"KIOK_WORKER_ID": "../w"}, "kiok.worker.id", id="worker-id-path"),
        pytest.param({"KIOK_MASTER_ID": ""}, "kiok.master.id", id="master-id-empty"),
        pytest.param({"KIOK_MASTER_ID": "m 1"}, "kiok.master.id", id="master-id-space"),
        pytest.param({"KIOK_BASE_DATA_DIR": ""}, "kiok.base.data.dir", id="data-dir-empty"),
        # 0 failures allowed made every login an HTTP 500 (IndexError in the limiter).
        pytest.param({"KIOK_AUTH_LOGIN_MAX_FAILURES": "0"}, "kiok.auth.login.max.failures", id="login-0"),
        pytest.param(
            {"KIOK_AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS": "0"},
            "kiok.auth.login.max.failures.per.address",
            id="login-address-0",
        ),
        pytest.param({"KIOK_AUTH_WORKER_MAX_FAILURES": "0"}, "kiok.auth.worker.max.failures", id="worker-0"),
        pytest.param({"KIOK_WORKER_TASK_ISOLATION": "maybe"}, "kiok.worker.task.isolation", id="isolation"),
        # Quietly raised to S3's floor, against the key's own line (day-one probe, session 27).
        pytest.param(
            {"KIOK_S3_MULTIPART_PART_SIZE_BYTES": "100"}, "kiok.s3.multipart.part.size.bytes", id="part-size"
        ),
        # The operability probe of session 28: accepted, then run as 1.
        pytest.param({"KIOK_NOTIFY_MAX_ATTEMPTS": "0"}, "kiok.notify.max.attempts", id="notify-attempts-0"),
        pytest.param(
            {"KIOK_INTERNAL_AUTH_RELOAD_INTERVAL_SECONDS": "0"}, "reload.interval.seconds", id="reload-0"
        ),
    ],
)
def test_a_bad_setting_is_refused_naming_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(InvalidInput, match=key.replace(".", r"\.")) as refused:
        Settings.load(env=env)
    assert "\n" not in refused.value.message


def test_good_values_still_load() -> None:
    s = Settings.load(
        env={
            "KIOK_LOG_LEVEL": "debug",
            "KIOK_WORKER_ID": "w-1.a_b",
            "KIOK_WORKER_SPAWNERS": "64",
            "KIOK_RAFT_ELECTION_TIMEOUT_MIN_MS": "3000",
            "KIOK_RAFT_ELECTION_TIMEOUT_MAX_MS": "4000",
        }
    )
    assert s["kiok.log.level"] == "DEBUG" and s["kiok.worker.id"] == "w-1.a_b"
    assert Settings.load(env={})["kiok.worker.id"] == ""  # empty: generated


def test_logs_refuse_an_unknown_level() -> None:
    with pytest.raises(ValueError, match=r"kiok\.log\.level"):
        logs.setup("TRACE", "text", "master")


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        pytest.param("kiok.master.host:\n", "kiok.master.host", id="host-null"),
        pytest.param("kiok.joblog.s3.bucket:\n", "kiok.joblog.s3.bucket", id="bucket-null"),
        pytest.param("kiok.iam.admin.password: ~\n", "kiok.iam.admin.password", id="password-null"),
        pytest.param("kiok.worker.labels: [gpu, ssd]\n", "kiok.worker.labels", id="labels-list"),
        pytest.param("kiok:\n  worker:\n    labels: yes\n", "kiok.worker.labels", id="labels-bool"),
        pytest.param("kiok.master.id: 10\n", "kiok.master.id", id="id-number"),
    ],
)
def test_a_config_file_value_that_is_not_text_is_refused(tmp_path: Path, yaml_text: str, key: str) -> None:
    config = tmp_path / "kiok.yaml"
    config.write_text(yaml_text)
    result = FakeMaster(tmp_path / "config").invoke(["config", "show", "--config", str(config)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], result.output


def test_empty_text_is_written_as_quotes(tmp_path: Path) -> None:
    config = tmp_path / "kiok.yaml"
    config.write_text("kiok.joblog.s3.bucket: ''\nkiok.master.id: '7'\n")
    s = Settings.load(env={}, config_file=config)
    assert s["kiok.joblog.s3.bucket"] == "" and s["kiok.master.id"] == "7"
    config.write_text("kiok.master.id: 010\n")  # not a number to this loader: the text as written
    assert Settings.load(env={}, config_file=config)["kiok.master.id"] == "010"


@pytest.mark.parametrize("command", [["config", "show"], ["standalone"], ["worker"], ["master"]])
@pytest.mark.parametrize(
    "env", [{"KIOK_TLS_CA": "/nonexistent"}, {"KIOK_ACCESS_KEY": "nocolon"}], ids=["ca", "access-key"]
)
def test_client_variables_do_not_concern_server_commands(
    tmp_path: Path, command: list[str], env: dict[str, str | None]
) -> None:
    # A bad server setting stops the server commands before anything starts: what they say
    # must be about it, not about the client's variables.
    result = FakeMaster(tmp_path / "config").invoke(command, env={**env, "KIOK_MASTER_ID": ""})
    assert "Traceback" not in result.output, result.output
    assert "--ca" not in result.output and "access" not in result.output.lower(), result.output
    assert result.exit_code == 1 and "kiok.master.id" in result.output, result.output


def test_client_variables_are_still_checked_for_client_commands(tmp_path: Path) -> None:
    result = FakeMaster(tmp_path / "config").invoke(["dags", "list"], env={"KIOK_TLS_CA": "/nonexistent"})
    assert result.exit_code == 2 and "--ca" in result.output and "/nonexistent" in result.output, (
        result.output
    )


def test_port_zero_and_an_empty_data_dir_flag_are_not_ignored(tmp_path: Path) -> None:
    master = FakeMaster(tmp_path / "config")
    result = master.invoke(
        ["--json", "config", "show", "--port", "0"], env={"KIOK_MASTER_ADMIN_PORT": "18431"}
    )
    # The flag is read (not the environment's 18431), and 0 refused: kiok announces and
    # registers its addresses, which a random port would make wrong.
    assert result.exit_code == 1, result.output
    assert "kiok.master.admin.port (--port): 0 is out of range (1 to 65535)" in result.output, result.output
    result = master.invoke(
        ["--json", "config", "show", "--port", "18432"], env={"KIOK_MASTER_ADMIN_PORT": "18431"}
    )
    port = next(r for r in json.loads(result.output) if r["key"] == "kiok.master.admin.port")
    assert port["value"] == 18432 and port["source"] == "flag", port
    result = master.invoke(["config", "show", "--data-dir", ""])
    assert result.exit_code == 1 and "kiok.base.data.dir" in result.output, result.output


def test_a_foreign_error_page_is_one_short_line() -> None:
    page = "<!DOCTYPE HTML>\n<html>\n<head>\n<title>Error response</title>\n</head>\n" + "<p>x</p>\n" * 200
    error = error_from_response(httpx.Response(404, text=page))
    assert "\n" not in error.message and error.message.startswith("HTTP 404"), error.message
    assert "<!DOCTYPE HTML> <html>" in error.message and len(error.message) < 160, error.message


def test_the_master_key_errors_name_where_the_key_came_from(tmp_path: Path) -> None:
    (tmp_path / "master.key").write_text("\n")
    with pytest.raises(InvalidInput, match=r"generated master key file .*master\.key is empty"):
        master_key("", tmp_path)
    (tmp_path / "master.key").write_bytes(b"\xff\xfe")
    with pytest.raises(InvalidInput, match="not text"):
        master_key("", tmp_path)


def test_reset_password_finds_the_socket_the_master_is_configured_with(tmp_path: Path) -> None:
    configured = tmp_path / "elsewhere" / "admin.sock"
    result = FakeMaster(tmp_path / "config").invoke(
        ["admin", "reset-password"],
        env={"KIOK_ADMIN_SOCKET_PATH": str(configured), "KIOK_BASE_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.exit_code == 1 and str(configured) in result.output, result.output


def test_ports_in_address_lists_take_ascii_digits_only() -> None:
    """``"١٢".isdigit()`` is true and ``int()`` reads it as 12: an address list refuses it."""
    from kiok.store.replicated import parse_peers
    from kiok.worker.master_client import parse_masters

    with pytest.raises(ValueError, match="host:port"):
        parse_masters("127.0.0.1:\u0661\u0662")
    with pytest.raises(ValueError):
        parse_peers("m1=127.0.0.1:\u0661\u0662", "m1")
    assert parse_masters("127.0.0.1:12") == [("127.0.0.1", 12)]


@pytest.mark.parametrize(
    ("peers", "named"),
    [
        ("m1=127.0.0.1:7001,m 2=127.0.0.1:7002,m3=127.0.0.1:7003", "'m 2'"),
        ("m1=127.0.0.1:7001,-m2=127.0.0.1:7002,m3=127.0.0.1:7003", "'-m2'"),
        ("m1=127.0.0.1:7001,m2=127.0.0.1:70000,m3=127.0.0.1:7003", "70000"),
        ("m1=127.0.0.1:7001,m2=127.0.0.1:0,m3=127.0.0.1:7003", "port 0"),
    ],
)
def test_peers_take_only_ids_and_ports_that_can_be(peers: str, named: str) -> None:
    """A master id in ``kiok.master.peers`` is an id like ``kiok.master.id`` (it names a Raft
    member in logs, paths and the cluster view), and a port is one a socket can have."""
    from kiok.store.replicated import parse_peers

    with pytest.raises(ValueError, match=r"kiok\.master\.peers") as refused:
        parse_peers(peers, "m1")
    assert named in str(refused.value)


def test_a_secret_setting_that_is_not_text_is_refused_without_showing_it(tmp_path: Path) -> None:
    config = tmp_path / "kiok.yaml"
    config.write_text("kiok.iam.admin.password: 12345678901234567890\n")
    with pytest.raises(InvalidInput) as refused:
        Settings.load(env={}, config_file=config)
    assert "kiok.iam.admin.password" in str(refused.value) and "int" in str(refused.value)
    assert "12345678901234567890" not in str(refused.value)


@pytest.mark.parametrize(
    ("given", "level"), [("warn", "WARNING"), ("CRITICAL", "CRITICAL"), ("fatal", "CRITICAL")]
)
def test_common_spellings_of_log_levels_are_taken(given: str, level: str) -> None:
    assert Settings.load(env={"KIOK_LOG_LEVEL": given})["kiok.log.level"] == level


def test_a_failure_after_start_up_says_kiok_stopped_not_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that ran for days and then failed (or failed stopping) did not fail to start;
    a task group's error is named by what the task raised, not "unhandled errors"."""
    import asyncio

    import click

    from kiok.cli import serve
    from kiok.roots import common

    monkeypatch.setattr(common, "_started", False)

    async def fails_at_start() -> None:
        raise RuntimeError("boom")

    async def fails_later() -> None:
        common.announce_started()

        async def task() -> None:
            raise RuntimeError("later")

        async with asyncio.TaskGroup() as group:
            group.create_task(task())

    with pytest.raises(click.ClickException) as refused:
        serve._run(fails_at_start())
    assert refused.value.message == "cannot start: RuntimeError: boom"
    with pytest.raises(click.ClickException) as stopped:
        serve._run(fails_later())
    assert stopped.value.message == "kiok stopped: RuntimeError: later"


def test_a_secret_the_config_file_gives_is_known_even_when_the_environment_overrides_it(
    tmp_path: Path,
) -> None:
    """Whether tasks may read the config file (``roots.common.isolation_for``) is asked of
    every secret the file holds: one overridden by a variable is in the file all the same."""
    config = tmp_path / "kiok.yaml"
    config.write_text('kiok.internal.auth.tokens: "in-the-file"\nkiok.worker.labels: gpu\n')
    settings = Settings.load(env={"KIOK_INTERNAL_AUTH_TOKENS": "from-env"}, config_file=config)
    assert settings.get_str("kiok.internal.auth.tokens") == "from-env"
    assert settings.secrets_in_file == {"kiok.internal.auth.tokens": str(config)}


@pytest.mark.parametrize(
    ("host", "peers", "refused"),
    [
        ("127.0.0.1", PEERS, False),  # one machine: every peer on loopback
        ("0.0.0.0", "m1=h1:7001,m2=h2:7001,m3=h3:7001", False),
        ("10.0.0.1", "m1=10.0.0.1:7001,m2=10.0.0.2:7001,m3=10.0.0.3:7001", False),
        ("127.0.0.1", "m1=127.0.0.1:7001,m2=h2:7001,m3=127.0.0.1:7003", True),
        ("localhost", "m1=localhost:7001,m2=[::1]:7002,m3=10.0.0.3:7001", True),
        ("::1", "m1=[::1]:7001,m2=[::1]:7002,m3=localhost:7003", False),
    ],
)
def test_a_raft_port_on_loopback_with_a_peer_elsewhere_is_refused(
    host: str, peers: str, refused: bool
) -> None:
    found = unreachable_raft_port(host, parse_peers(peers, "m1"), "m1")
    assert (found is not None) == refused, found


@pytest.mark.parametrize(
    ("env", "line"),
    [
        pytest.param(
            {"KIOK_WORKER_TASK_ISOLATION": "maybe"},
            "kiok.worker.task.isolation (KIOK_WORKER_TASK_ISOLATION): expected one of auto, user, none, "
            "got 'maybe'",
            id="isolation",
        ),
        pytest.param(
            {"KIOK_NOTIFY_WEBHOOK_BLOCKED_NETWORKS": "notacidr"},
            "kiok.notify.webhook.blocked.networks: 'notacidr' is not an IP address or network (CIDR)",
            id="blocked-networks",
        ),
        pytest.param(
            {"KIOK_ADMIN_HTTP_TRUSTED_PROXIES": "notanaddr"},
            "kiok.admin.http.trusted.proxies: 'notanaddr' is not an IP address or network",
            id="trusted-proxies",
        ),
        pytest.param(
            {"KIOK_WORKER_PYTHON_PRELOAD": "pandas,1bad"},
            "kiok.worker.python.preload: '1bad' is not a module name",
            id="preload",
        ),
        pytest.param(
            {"KIOK_MASTER_INTERNAL_PORT": PORTS["KIOK_MASTER_ADMIN_PORT"]},
            "kiok.master.internal.port and kiok.master.admin.port are both 18740",
            id="ports",
        ),
        pytest.param(  # config show passed it; the start refused it after making the data dir
            {"KIOK_MASTER_KEY": "tooshort"},
            "KIOK_MASTER_KEY (kiok.master.key): the master key must have at least 32 characters, not 8",
            id="short-master-key",
        ),
        pytest.param(
            {"KIOK_MASTER_KEY": "k" * 40, "KIOK_KMS_MASTER_KEY_FILE": "/nonexistent/master.key"},
            "set either KIOK_MASTER_KEY or kiok.kms.master.key.file, not both",
            id="master-key-twice",
        ),
        # The day-one probe (session 27): a malformed host was refused at start by the codec's
        # own words ("UnicodeError: ... label empty or too long"), naming no setting, and an
        # empty one (an env file's blank) bound every address.
        pytest.param(
            {"KIOK_MASTER_HOST": "not..a..host"},
            "kiok.master.host is 'not..a..host': neither an IP address nor a host name",
            id="master-host-malformed",
        ),
        pytest.param(
            {"KIOK_WORKER_HOST": "bad_host!"},
            "kiok.worker.host is 'bad_host!': neither an IP address nor a host name",
            id="worker-host-malformed",
        ),
        pytest.param(
            {"KIOK_MASTER_HOST": ""},
            "kiok.master.host is empty: set 127.0.0.1 (this host only) or 0.0.0.0 (every address)",
            id="master-host-empty",
        ),
        # The re-probe: names the resolver reads as addresses ("0" binds every one).
        *(
            pytest.param(
                {"KIOK_MASTER_HOST": host},
                f"kiok.master.host is {host!r}: neither an IP address nor a host name",
                id=f"master-host-{host}",
            )
            for host in ("0", "2130706433", "1.2.3", "0x7f.1")
        ),
    ],
)
def test_config_show_refuses_what_a_start_refuses_with_its_line(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    """`kiok config show` printed, with exit status 0, settings `kiok standalone` then
    refused at start; and two of the start's own ports on one number were "in use by another
    process". Both now say the same one line, before anything is bound or written."""
    master = FakeMaster(tmp_path / "config")
    data = tmp_path / "data"
    env = {**PORTS, "KIOK_BASE_DATA_DIR": str(data), **env}
    shown = master.invoke(["config", "show"], env={**env})
    assert (shown.exit_code, shown.output) == (1, f"Error: {line}\n"), shown.output
    started = master.invoke(["standalone"], env={**env})
    assert (started.exit_code, started.output) == (1, f"Error: {line}\n"), started.output
    assert not data.exists()


def _peers(own: str) -> str:
    return f"m1=127.0.0.1:{own},m2=127.0.0.1:7002,m3=127.0.0.1:7003"


@pytest.mark.parametrize(
    ("command", "env", "refusal"),
    [
        (
            "master",
            {"KIOK_MASTER_INTERNAL_PORT": "8080"},
            "kiok.master.internal.port and kiok.master.admin.port are both 8080",
        ),
        (
            "standalone",
            {"KIOK_WORKER_STATUS_PORT": "8080"},
            "kiok.worker.status.port and kiok.master.admin.port are both 8080",
        ),
        ("master", {"KIOK_WORKER_STATUS_PORT": "8080"}, None),  # a master has no status port
        ("worker", {"KIOK_WORKER_STATUS_PORT": "8080"}, None),  # nor a worker an admin port
        (
            "master",
            {"KIOK_MASTER_PEERS": _peers("8080")},
            "kiok.master.peers (m1's Raft port) and kiok.master.admin.port are both 8080",
        ),
        (
            "standalone",
            {"KIOK_MASTER_PEERS": _peers("19998")},
            "kiok.master.peers (m1's Raft port) and kiok.worker.status.port are both 19998",
        ),
        (  # another master's
            "master",
            {"KIOK_MASTER_PEERS": PEERS.replace("7002", "8080"), "KIOK_MASTER_KEY": "k" * 40},
            None,
        ),
        (
            "standalone",
            {"KIOK_WORKER_HOST": "0.0.0.0", "KIOK_WORKER_STATUS_PORT": "8080"},
            "kiok.worker.status.port and kiok.master.admin.port are both 8080",
        ),
        ("standalone", {"KIOK_WORKER_HOST": "10.0.0.5", "KIOK_WORKER_STATUS_PORT": "8080"}, None),
        (  # a name and the address it resolves to are one (the day-one re-probe: only the
            # start found it, as "in use by another process")
            "standalone",
            {"KIOK_MASTER_HOST": "localhost", "KIOK_WORKER_STATUS_PORT": "8080"},
            "kiok.worker.status.port and kiok.master.admin.port are both 8080",
        ),
        (  # "::" spelt out binds every address too (the re-probe)
            "standalone",
            {"KIOK_WORKER_HOST": "0:0:0:0:0:0:0:0", "KIOK_WORKER_STATUS_PORT": "8080"},
            "kiok.worker.status.port and kiok.master.admin.port are both 8080",
        ),
    ],
)
def test_two_ports_of_one_process_on_one_number_are_refused_naming_both(
    command: preflight.Command, env: dict[str, str], refusal: str | None
) -> None:
    """Every pair of the ports the process itself listens on, a master's Raft port included;
    ports on two addresses of their own do not meet."""
    settings = Settings.load(env=env)
    if refusal is None:
        preflight.check(settings, command)
        return
    with pytest.raises(InvalidInput) as refused:
        preflight.check(settings, command)
    assert refused.value.message == refusal


@pytest.mark.parametrize(
    ("yaml_text", "line"),
    [
        pytest.param(
            "kiok.worker.labels: gpu\nkiok.master.id: m1\nkiok.worker.labels: ssd\n",
            "kiok.worker.labels is given twice (line 1 and line 3): keep one",
            id="same-spelling",
        ),
        pytest.param(
            "kiok.master.admin.port: 9000\nkiok:\n  master:\n    admin.port: 9001\n",
            "kiok.master.admin.port is given twice (line 1 and line 4): keep one",
            id="dotted-and-nested",
        ),
        pytest.param(
            "kiok:\n  worker:\n    labels: a\n  worker.labels: b\n",
            "kiok.worker.labels is given twice (line 3 and line 4): keep one",
            id="two-sections",
        ),
        pytest.param(  # YAML kept the second kiok: section; the first one's labels were lost
            "kiok:\n  worker:\n    labels: gpu\nkiok:\n  master:\n    admin:\n      port: 9090\n",
            "kiok is given twice (line 1 and line 4): keep one",
            id="a-section-twice",
        ),
        pytest.param(
            "kiok:\n  worker:\n    labels: gpu\n  worker:\n    task.slots: 2\n",
            "kiok.worker is given twice (line 2 and line 4): keep one",
            id="a-nested-section-twice",
        ),
    ],
)
def test_a_setting_given_twice_in_the_config_file_is_refused_naming_both_lines(
    tmp_path: Path, yaml_text: str, line: str
) -> None:
    """It was read last-wins, without a word."""
    config = tmp_path / "kiok.yaml"
    config.write_text(yaml_text)
    result = FakeMaster(tmp_path / "config").invoke(["config", "show", "--config", str(config)])
    assert (result.exit_code, result.output) == (1, f"Error: config file {config}: {line}\n"), result.output


def test_a_config_file_whose_values_refer_to_themselves_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "kiok.yaml"
    config.write_text("kiok: &k\n  worker: *k\n")
    with pytest.raises(InvalidInput, match="nested too deeply"):
        Settings.load(env={}, config_file=config)


def test_a_worker_refuses_a_master_address_whose_port_is_no_port(tmp_path: Path) -> None:
    """It was taken as given: the worker announced itself, then died with "connect(): port
    must be 0-65535" (or, for port 0, retried for ever), its data directory made."""
    master = FakeMaster(tmp_path / "config")
    data = tmp_path / "data"
    line = "kiok.worker.masters: '127.0.0.1:99999' names port 99999, not one of 1-65535"
    env: dict[str, str | None] = {
        **PORTS,
        "KIOK_BASE_DATA_DIR": str(data),
        "KIOK_WORKER_MASTERS": "127.0.0.1:99999",
        "KIOK_WORKER_JOIN_TOKEN": "x",
    }
    shown = master.invoke(["config", "show", "--for", "worker"], env=env)
    assert (shown.exit_code, shown.output) == (1, f"Error: {line}\n"), shown.output
    started = master.invoke(["worker"], env=env)
    assert (started.exit_code, started.output) == (1, f"Error: {line}\n"), started.output
    assert not data.exists()
    env["KIOK_WORKER_MASTERS"] = "127.0.0.1:0"
    zero = master.invoke(["config", "show", "--for", "worker"], env=env)
    assert zero.output == "Error: kiok.worker.masters: '127.0.0.1:0' names port 0, not one of 1-65535\n"


def test_a_config_files_whole_numbers_read_as_a_variables_do(tmp_path: Path) -> None:
    """The operability probe of session 28: YAML 1.1 read ``010`` as 8, ``1:30`` as 90 and
    ``0x10`` as 16 in a config file, where the same text in ``KIOK_WORKER_TASK_SLOTS`` is 10
    or refused."""
    config = tmp_path / "kiok.yaml"
    config.write_text("kiok.worker.task.slots: 010\nkiok.worker.spawners: 2\n")
    loaded = Settings.load(env={}, config_file=config)
    assert (
        loaded["kiok.worker.task.slots"]
        == 10
        == Settings.load(env={"KIOK_WORKER_TASK_SLOTS": "010"})["kiok.worker.task.slots"]
    )
    assert loaded["kiok.worker.spawners"] == 2
    for text in ("1:30", "0x10", "0o10", "1_0", "+5", "!!int 0x10", "!!int zz", "!!int 1_000", "9" * 5000):
        config.write_text(f"kiok.worker.task.slots: {text}\n")
        with pytest.raises(InvalidInput, match=r"^kiok.worker.task.slots .*expected int, got '[^ ]+'$"):
            Settings.load(env={}, config_file=config)  # one line, no traceback
        with pytest.raises(InvalidInput):
            Settings.load(env={"KIOK_WORKER_TASK_SLOTS": text.removeprefix("!!int ")})
    for text in ("1:30.5", "1_0.5", "!!float 1:30", "!!float zz", "+5", "+2.5"):  # +5: the probe of s29
        config.write_text(f"kiok.retention.runs.days: {text}\n")
        with pytest.raises(InvalidInput, match=r"kiok[.]retention[.]runs[.]days .*expected float"):
            Settings.load(env={}, config_file=config)
        with pytest.raises(InvalidInput, match=r"kiok[.]retention[.]runs[.]days .*expected float"):
            Settings.load(env={"KIOK_RETENTION_RUNS_DAYS": text.removeprefix("!!float ")})
    for text in ("01", "00", "-1", "-0", "2"):  # a yes/no is 1 or 0, as the variable's; 01 had been a yes
        config.write_text(f"kiok.joblog.s3.path.style: {text}\n")
        with pytest.raises(InvalidInput, match=r"^kiok.joblog.s3.path.style .*expected bool"):
            Settings.load(env={}, config_file=config)
        with pytest.raises(InvalidInput, match=r"^kiok.joblog.s3.path.style .*expected bool"):
            Settings.load(env={"KIOK_JOBLOG_S3_PATH_STYLE": text})
    config.write_text("kiok.joblog.s3.path.style: 0\n")
    assert Settings.load(env={}, config_file=config)["kiok.joblog.s3.path.style"] is False
    config.write_text("kiok.retention.runs.days: 2.5\nkiok.retention.logs.days: 1e1\n")
    loaded = Settings.load(env={}, config_file=config)
    assert (loaded["kiok.retention.runs.days"], loaded["kiok.retention.logs.days"]) == (2.5, 10.0)


def test_an_admin_socket_path_that_cannot_be_bound_is_refused_before_the_start(tmp_path: Path) -> None:
    """The operability probe of session 28: a data directory ~95 characters deep made an admin
    socket path too long for a unix socket; the start failed after it had opened its store,
    with "cannot start: AF_UNIX path too long", naming no setting (as a socket path in a
    directory that does not exist did)."""
    deep = tmp_path / ("d" * 110)
    with pytest.raises(InvalidInput, match=r"^kiok\.base\.data\.dir: its admin socket .* at most 107"):
        preflight.check(Settings.load(env={"KIOK_BASE_DATA_DIR": str(deep)}), "standalone")
    with pytest.raises(InvalidInput, match=r"^kiok\.admin\.socket\.path .* at most 107"):
        preflight.check(Settings.load(env={"KIOK_ADMIN_SOCKET_PATH": str(deep / "s")}), "master")
    with pytest.raises(
        InvalidInput, match=r"^kiok\.admin\.socket\.path '/nonexistent/sock'.*not a directory"
    ):
        preflight.check(Settings.load(env={"KIOK_ADMIN_SOCKET_PATH": "/nonexistent/sock"}), "master")
    preflight.check(Settings.load(env={"KIOK_ADMIN_SOCKET_PATH": "/nonexistent/sock"}), "worker")  # no socket
    data = tmp_path / "data"  # made at start: a socket in it is fine
    preflight.check(
        Settings.load(env={"KIOK_BASE_DATA_DIR": str(data), "KIOK_ADMIN_SOCKET_PATH": str(data / "a.sock")}),
        "master",
    )


@pytest.mark.parametrize(
    ("env", "key"),
    [
        pytest.param({"KIOK_IAM_ADMIN_USER": ""}, "kiok.iam.admin.user", id="admin-empty"),
        pytest.param({"KIOK_IAM_ADMIN_USER": "bad user"}, "kiok.iam.admin.user", id="admin-space"),
        pytest.param({"KIOK_IAM_ADMIN_PASSWORD": "x"}, "kiok.iam.admin.password", id="admin-password-short"),
        pytest.param(
            {"KIOK_IAM_ADMIN_USER": "operator01", "KIOK_IAM_ADMIN_PASSWORD": "Operator01"},
            "kiok.iam.admin.password",
            id="admin-password-its-name",
        ),
        pytest.param(
            {"KIOK_IAM_ADMIN_PASSWORD": "Aa1" * 2000}, "kiok.iam.admin.password", id="admin-password-long"
        ),
        pytest.param(
            {"KIOK_IAM_ADMIN_PASSWORD": "abc\udcffdefgh"},
            "kiok.iam.admin.password",
            id="admin-password-not-text",
        ),
    ],
)
def test_a_bootstrap_administrator_no_login_takes_is_refused(env: dict[str, str], key: str) -> None:
    """The operability probe of session 28: a bootstrap administrator no login takes (named
    '', or with a password the API refuses or cannot take) was made at the first start, the
    cluster's only way in. A master's start refuses it; a worker, which makes none, does not."""
    settings = Settings.load(env={**PORTS, **env})
    for server in ("standalone", "master"):
        with pytest.raises(InvalidInput, match=f"^{key.replace('.', r'[.]')}: ") as refused:
            preflight.check(settings, server)  # type: ignore[arg-type]
        assert "\n" not in refused.value.message
    preflight.check(settings, "worker")


def test_a_file_or_a_live_socket_at_the_admin_socket_path_is_never_removed(tmp_path: Path) -> None:
    """The operability re-probe of session 28: a master removed whatever was at
    kiok.admin.socket.path to make its socket there (the data directory's master.key: the
    store could no longer be opened), and took a path another process listened on."""
    import socket

    key = tmp_path / "master.key"
    key.write_text("k" * 40)
    busy = tmp_path / "busy.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(busy))
    listener.listen()
    stale = tmp_path / "stale.sock"
    gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    gone.bind(str(stale))
    gone.close()  # a crashed master's: nothing listens
    try:
        for path, why in ((key, "is not a socket"), (tmp_path, "is not a socket"), (busy, "another process")):
            settings = Settings.load(env={**PORTS, "KIOK_ADMIN_SOCKET_PATH": str(path)})
            with pytest.raises(InvalidInput, match=f"^kiok[.]admin[.]socket[.]path: .*{why}"):
                preflight.check(settings, "standalone")
        preflight.check(Settings.load(env={**PORTS, "KIOK_ADMIN_SOCKET_PATH": str(stale)}), "standalone")
    finally:
        listener.close()
    assert key.read_text() == "k" * 40 and busy.exists()


@pytest.mark.parametrize("args", [["--json", "config", "show"], ["config", "show", "--json"]])
@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"KIOK_WORKER_TASK_SLOTS": "x"}, "kiok.worker.task.slots"),
        ({"KIOK_IAM_ADMIN_USER": ".x"}, "kiok.iam.admin.user"),
    ],
    ids=["load", "preflight"],
)
def test_config_show_with_json_refuses_in_json(
    tmp_path: Path, args: list[str], env: dict[str, str], key: str
) -> None:
    """The operability re-probe of session 28: ``kiok --json config show`` said its refusals
    as text, as no other command does with ``--json``."""
    result = FakeMaster(tmp_path / "config").invoke(args, env={**PORTS, **env})
    assert result.exit_code == 1 and result.stdout == "", result.output
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "invalid_input" and error["message"].startswith(key), error


@pytest.mark.parametrize(
    ("user", "line"),
    [
        ("", "kiok.worker.task.user is empty: name the user tasks run as"),
        ("a b", "kiok.worker.task.user 'a b' is not a user name"),
        ("-x", "kiok.worker.task.user '-x' is not a user name"),
        ("..", "kiok.worker.task.user '..' is not a user name"),
        ("root", "kiok.worker.task.user 'root' is root or in group root: name an unprivileged user"),
        ("a" * 40, f"kiok.worker.task.user '{'a' * 40}' is longer than 32 characters"),
    ],
)
def test_config_show_refuses_a_task_user_the_start_refuses(tmp_path: Path, user: str, line: str) -> None:
    """The lifecycle probe of session 29: ``kiok config show`` took an empty task user, or one
    no user can be named, which ``kiok standalone`` then refused at start."""
    master = FakeMaster(tmp_path / "config")
    data = tmp_path / "data"
    env: dict[str, str | None] = {
        **PORTS,
        "KIOK_BASE_DATA_DIR": str(data),
        "KIOK_WORKER_TASK_ISOLATION": "user",
        "KIOK_WORKER_TASK_USER": user,
    }
    if os.geteuid() != 0:
        line = "kiok.worker.task.isolation=user needs kiok to run as root"
    shown = master.invoke(["config", "show", "--for", "worker"], env=env)
    started = master.invoke(["standalone"], env=env)
    for result in (shown, started):
        assert result.exit_code == 1 and result.output.startswith(f"Error: {line}"), result.output
        assert len(result.output.splitlines()) == 1, result.output
    assert shown.output == started.output
    assert not data.exists()
