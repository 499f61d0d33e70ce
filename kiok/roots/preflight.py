"""What a start refuses before it claims anything: each check of the settings that needs no
port bound, no data directory opened and no user or process made (``check``), and the ports
a server claims (``claimed_ports``). The server roots run ``check`` first; ``kiok config
show`` runs it alone, so that it refuses what a start would refuse, with the same line.

Checks that need more stay in the roots, after it: the data directory (in use, its worker
id, whether its master key opens it), the task user (made when missing), the ports being
free."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable
from typing import Literal, TypeVar

from kiok.config import Settings
from kiok.core.addresses import every_address
from kiok.errors import InvalidInput
from kiok.ids import USER_NAME
from kiok.master.admin_socket import admin_socket_problem
from kiok.roots.common import trusted_proxies
from kiok.security.egress import SETTING as BLOCKED_NETWORKS
from kiok.security.egress import parse_networks
from kiok.security.passwords import password_problem
from kiok.security.tls import TlsFiles
from kiok.store.keyring import operator_master_key
from kiok.store.replicated import parse_peers, unreachable_raft_port
from kiok.worker.forkserver import parse_preload
from kiok.worker.isolation import decide as decide_isolation
from kiok.worker.isolation import task_user_problem
from kiok.worker.master_client import parse_masters

T = TypeVar("T")
Command = Literal["standalone", "master", "worker"]
COMMANDS: tuple[Command, ...] = ("standalone", "master", "worker")
#: A label the resolver reads as a number.
_NUMERIC = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
#: One label of a host name (RFC 1123).
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def check(settings: Settings, command: Command) -> None:
    """Refuse (``InvalidInput``, one line naming the setting) what ``kiok <command>`` would
    refuse at start on these settings alone, in the order it would find it."""
    TlsFiles.from_settings(settings)
    serves_master = command in ("standalone", "master")
    runs_tasks = command in ("standalone", "worker")
    if serves_master:
        _check_host(settings, "kiok.master.host")
    if runs_tasks:
        _check_host(settings, "kiok.worker.host")
    if serves_master:
        trusted_proxies(settings)
    if command == "worker":
        _parsed(lambda: parse_masters(settings.get_str("kiok.worker.masters")))
    if runs_tasks:
        _parsed(lambda: parse_preload(settings.get_str("kiok.worker.python.preload")))
        # Whether tasks run as the task user does not depend on the namespaces' probe.
        mode, _ = decide_isolation(settings.get_str("kiok.worker.task.isolation"), os.geteuid(), True)
        problem = task_user_problem(settings.get_str("kiok.worker.task.user")) if mode != "none" else None
        if problem:
            raise InvalidInput(problem)
    if serves_master:
        parse_networks(settings.get_str(BLOCKED_NETWORKS))
    _refuse_port_clash(_ports(settings, command))  # with kiok.master.peers checked first
    if serves_master:
        _check_admin_bootstrap(settings)
        _check_admin_socket(settings)
        operator_master_key(
            settings.get_str("kiok.master.key"),
            settings.get_str("kiok.kms.master.key.file"),
            several_masters=bool(settings.get_str("kiok.master.peers")),
        )


#: The longest path a unix socket may be bound at (``sun_path`` holds 108 bytes, a NUL last).
_UNIX_PATH_MAX = 107


def _check_admin_socket(settings: Settings) -> None:
    """A master binds its admin socket after it opened its store: a path too long for a unix
    socket (a data directory ~95 characters deep, as on Kubernetes), or in a directory that
    does not exist (but for the data directory, made at start), failed there with a line
    naming neither (the operability probe of session 28)."""
    path = settings.admin_socket_path
    configured = bool(settings.get_str("kiok.admin.socket.path"))
    size = len(os.fsencode(path))
    if size > _UNIX_PATH_MAX:
        where = "kiok.admin.socket.path" if configured else "kiok.base.data.dir: its admin socket"
        raise InvalidInput(
            f"{where} {str(path)!r} is {size} bytes long; a unix socket's path is at most "
            f"{_UNIX_PATH_MAX}: set kiok.admin.socket.path to a shorter one"
        )
    if configured and not path.parent.is_dir() and path.parent.resolve() != settings.data_dir:
        raise InvalidInput(f"kiok.admin.socket.path {str(path)!r}: {str(path.parent)!r} is not a directory")
    # One listening in the data directory is another kiok's there: the data directory's own
    # check says so, in its words ("in use by another kiok process").
    problem = admin_socket_problem(path, listened_ok=not configured)
    if problem is not None:
        raise InvalidInput(f"kiok.admin.socket.path: {problem}")


def _check_admin_bootstrap(settings: Settings) -> None:
    """The bootstrap administrator is made once, at a master's first start: a name no login
    takes, or a password the API would refuse (or could not take: over 4096 characters, not
    text), would be the cluster's only way in (the operability probe of session 28)."""
    user, password = "kiok.iam.admin.user", "kiok.iam.admin.password"
    name = settings.get_str(user)
    if not USER_NAME.match(name):
        raise InvalidInput(
            f"{user}: {name!r} is not a user name (letters, digits and _.@-, starting with a "
            "letter or digit, at most 128 characters)"
        )
    chosen = settings.get_str(password)
    if not chosen:
        return
    problem = password_problem(chosen, user=name)
    if problem is not None:
        raise InvalidInput(f"{password}: {problem.replace('the new password', 'it')}")


def _check_host(settings: Settings, key: str) -> None:
    """A host to bind is an IP address or a host name. Empty is refused rather than taken
    as every address (as the socket layer would): a value an env-file template left blank
    would otherwise expose the port (found by the day-one probe of session 27)."""
    host = settings.get_str(key)
    if not host:
        raise InvalidInput(f"{key} is empty: set 127.0.0.1 (this host only) or 0.0.0.0 (every address)")
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    # A last label of digits (or 0x…) is no host name (RFC 1123): the resolver reads "0",
    # "2130706433" or "1.2.3" as addresses ("0" binds every one), found by the re-probe.
    if (
        len(name) > 253
        or not all(_LABEL.fullmatch(label) for label in labels)
        or _NUMERIC.fullmatch(labels[-1])
    ):
        raise InvalidInput(f"{key} is {host!r}: neither an IP address nor a host name")


def claimed_ports(settings: Settings, command: Command) -> list[tuple[str, int, str]]:
    """The ``(host, port, setting)`` of each port ``kiok <command>`` binds before it starts
    anything (``kiok.roots.startup.claim``), in the order it binds them."""
    master_host = settings.get_str("kiok.master.host")
    admin = (master_host, settings.get_int("kiok.master.admin.port"), "kiok.master.admin.port")
    internal = (master_host, settings.get_int("kiok.master.internal.port"), "kiok.master.internal.port")
    status = (
        settings.get_str("kiok.worker.host"),
        settings.get_int("kiok.worker.status.port"),
        "kiok.worker.status.port",
    )
    return {"standalone": [admin, status, internal], "master": [admin, internal], "worker": [status]}[command]


def _ports(settings: Settings, command: Command) -> list[tuple[str, int, str]]:
    """Every port ``kiok <command>`` listens on: those it claims, and a master's Raft port
    (its own entry in ``kiok.master.peers``, bound on ``kiok.master.host``)."""
    ports = claimed_ports(settings, command)
    raft = _raft_port(settings) if command != "worker" else None
    if raft is not None:
        ports.append(raft)
    return ports


def _raft_port(settings: Settings) -> tuple[str, int, str] | None:
    """This master's Raft port as ``(host, port, setting)``, None without peers; ``InvalidInput``
    when ``kiok.master.peers`` is malformed or leaves the port out of the other masters' reach."""
    text = settings.get_str("kiok.master.peers")
    if not text:
        return None
    master_id = settings.get_str("kiok.master.id")
    peers = _parsed(lambda: parse_peers(text, master_id))
    host = settings.get_str("kiok.master.host")
    unreachable = unreachable_raft_port(host, peers, master_id)
    if unreachable is not None:
        raise InvalidInput(unreachable)
    port = int(peers[master_id].rsplit(":", 1)[1])
    return host, port, f"kiok.master.peers ({master_id}'s Raft port)"


def _refuse_port_clash(ports: list[tuple[str, int, str]]) -> None:
    """Two of this process's own ports on one address: said as such, naming both settings,
    rather than found at bind time as "in use by another process"."""
    for i, (host, port, setting) in enumerate(ports):
        for other_host, other_port, other in ports[:i]:
            if port == other_port and _overlap(host, other_host):
                raise InvalidInput(f"{setting} and {other} are both {port}")


def _overlap(a: str, b: str) -> bool:
    """Whether a port bound on host ``a`` takes the same port on host ``b`` (every address
    takes it on all; a name takes it on what it resolves to: ``localhost`` and ``127.0.0.1``
    meet, found by the day-one re-probe)."""
    return every_address(a) or every_address(b) or a.lower() == b.lower() or bool(_resolved(a) & _resolved(b))


def _resolved(host: str) -> set[str]:
    """The addresses ``host`` binds (itself, for an address); none when it does not resolve
    (the start then says so, naming the setting)."""
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):
        return set()


def _parsed(parse: Callable[[], T]) -> T:
    """``parse()``, with its ``ValueError`` (whose message names the setting) as ``InvalidInput``."""
    try:
        return parse()
    except ValueError as e:
        raise InvalidInput(str(e)) from None
