"""The deployment files (issue 17 §5) say only what kiok understands: every ``KIOK_*`` variable
in compose.yaml, the Dockerfile, the systemd units and their example settings is a known
setting or CLI variable, every command they start is a ``kiok`` command, and the pieces agree
with each other (peers, internal addresses, certificates, health checks). Docker itself is not
needed: the files are parsed; ``tests/integration/test_deploy_tls.py`` runs what can run here."""

from __future__ import annotations

import configparser
import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from kiok.cli.main import cli
from kiok.cli.settings import cli_variables
from kiok.config import unknown_variables

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"


def assert_known(variables: dict[str, str], where: str) -> None:
    assert unknown_variables(variables, cli_variables(cli)) == [], where


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return doc


class UnitFile(configparser.ConfigParser):
    """A systemd unit read as INI: keys keep their case; a key given twice is an error."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def unit(name: str) -> configparser.ConfigParser:
    parser = UnitFile(strict=True, interpolation=None)
    parser.read_string((SYSTEMD / name).read_text())
    return parser


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and line[0] != "#")
    return {k: v for k, v in pairs}


def test_compose_runs_three_masters_and_two_workers_with_known_settings() -> None:
    services = compose()["services"]
    assert set(services) == {"m1", "m2", "m3", "w1", "w2"}
    masters = {n: s for n, s in services.items() if s["command"] == ["master"]}
    workers = {n: s for n, s in services.items() if s["command"] == ["worker"]}
    assert set(masters) == {"m1", "m2", "m3"} and set(workers) == {"w1", "w2"}
    for name, service in services.items():
        env = {k: str(v) for k, v in service["environment"].items()}
        assert_known(env, f"compose.yaml service {name}")
        assert service["command"][0] in cli.commands
        # TLS everywhere, each process with its own certificate from deploy/make-ca.sh.
        assert env["KIOK_TLS_CERT"] == f"/etc/kiok/tls/{name}.crt", name
        assert env["KIOK_TLS_KEY"] == f"/etc/kiok/tls/{name}.key", name
        assert env["KIOK_TLS_CA"] == "/etc/kiok/tls/ca.pem", name
        assert "./deploy/certs:/etc/kiok/tls:ro" in service["volumes"], name
        assert env["HEALTHCHECK_URL"].startswith("https://127.0.0.1:"), name
    peers = dict(p.split("=") for p in masters["m1"]["environment"]["KIOK_MASTER_PEERS"].split(","))
    assert peers == {m: f"{m}:7001" for m in masters}
    for name, service in masters.items():
        env = service["environment"]
        assert env["KIOK_MASTER_ID"] == name and env["KIOK_MASTER_ADVERTISE_HOST"] == name
        assert env["HEALTHCHECK_URL"].endswith(":8080/healthz")
    for name, service in workers.items():
        env = service["environment"]
        assert env["KIOK_WORKER_MASTERS"].split(",") == [f"{m}:19999" for m in masters]
        assert env["KIOK_WORKER_ID"] == name
        assert env["HEALTHCHECK_URL"].endswith(":19998/health")
    # The compose file's header tells the host names make-ca.sh must be given.
    header = (ROOT / "compose.yaml").read_text()
    assert "deploy/make-ca.sh -d deploy/certs -u 10001 m1 m2 m3 w1 w2" in header


def instruction(dockerfile: str, name: str) -> str:
    """The argument of the one ``name`` instruction of a Dockerfile."""
    (found,) = re.findall(rf"^{name} (.+)$", dockerfile, re.M)
    return str(found)


def test_dockerfile_is_slim_non_root_with_a_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["python:${PYTHON_VERSION}-slim"] * 2
    assert "ARG PYTHON_VERSION=3.11" in text
    (user,) = re.findall(r"^USER (\S+)", text, re.M)
    assert user not in ("root", "0")
    assert json.loads(instruction(text, "ENTRYPOINT")) == ["kiok"]
    (command,) = json.loads(instruction(text, "CMD"))
    assert command in cli.commands
    env_block = re.search(r"^ENV ((?:.*\\\n)*.*)$", text, re.M)  # continued lines included
    assert env_block is not None
    env = dict(word.split("=", 1) for word in shlex.split(env_block[1].replace("\\\n", " ")))
    assert env["KIOK_MASTER_HOST"] == "0.0.0.0" and env["KIOK_BASE_DATA_DIR"] == "/var/lib/kiok"
    assert_known(env, "Dockerfile ENV")
    assert "HEALTHCHECK" in text and "HEALTHCHECK_URL" in env
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line for line in lines if line and not line.startswith("#")]
    assert ignored[:4] == ["*", "!pyproject.toml", "!README.md", "!kiok/"]


def test_systemd_units_start_kiok_commands_with_known_settings() -> None:
    for service, command in (("kiok-master.service", "master"), ("kiok-worker.service", "worker")):
        section = unit(service)["Service"]
        exec_start = section["ExecStart"].split()
        assert Path(exec_start[0]).name == "kiok" and exec_start[1:] == [command], service
        assert command in cli.commands
        env = dict(v.split("=", 1) for v in section["Environment"].split())
        assert_known(env, service)
        assert env["KIOK_BASE_DATA_DIR"] == f"/var/lib/{section['StateDirectory']}"
        example = SYSTEMD / f"{command}.env.example"
        assert section["EnvironmentFile"] == f"/etc/kiok/{command}.env"
        assert_known(env_file(example), example.name)
        assert section["NoNewPrivileges"] == "yes" and section["ProtectSystem"] == "strict"
    master = unit("kiok-master.service")["Service"]
    assert master["User"] == "kiok" and master["CapabilityBoundingSet"] == ""
    worker = unit("kiok-worker.service")["Service"]
    # The worker drains on SIGTERM: its tasks must not get the signal at the same time.
    assert worker["KillMode"] == "mixed"
    assert int(worker["TimeoutStopSec"]) > 60  # kiok.worker.shutdown.drain.timeout.seconds


def test_deploy_doc_covers_each_file() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for name in (
        "Dockerfile",
        "compose.yaml",
        "deploy/make-ca.sh",
        "kiok-master.service",
        "kiok-worker.service",
        "master.env.example",
        "worker.env.example",
    ):
        assert name in doc, name
    assert "docs/deploy.md" in (ROOT / "README.md").read_text()
