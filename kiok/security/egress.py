"""Where the master may send a request a DAG author aims: not into the networks of
``kiok.notify.webhook.blocked.networks`` (loopback, link-local, unspecified by default), which
would let a webhook reach the master's admin API, a co-located worker's status port or a cloud
metadata service. Pure checks only: ``kiok.master.notify`` resolves a webhook's host, checks
every address here and connects to a checked one; registration checks literal hosts here.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from kiok.errors import InvalidInput

#: The setting that holds the blocked networks (messages name it).
SETTING = "kiok.notify.webhook.blocked.networks"
#: Loopback, link-local (cloud metadata at 169.254.169.254) and unspecified, IPv4 and IPv6.
#: Private ranges stay allowed: internal webhook receivers are common; an operator adds them.
DEFAULT_BLOCKED = "127.0.0.0/8,::1/128,169.254.0.0/16,fe80::/10,0.0.0.0/8,::/128"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Names every resolver on the host answers with loopback (RFC 6761), whatever DNS says.
_LOOPBACK_NAMES = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def parse_networks(text: str) -> tuple[Network, ...]:
    """The networks of the setting's value (comma or space separated CIDRs or addresses; empty:
    none). A wrong entry raises ``InvalidInput`` naming the setting (the process does not start)."""
    out: list[Network] = []
    for item in text.replace(" ", ",").split(","):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise InvalidInput(f"{SETTING}: {item!r} is not an IP address or network (CIDR)") from None
    return tuple(out)


#: The networks blocked when the setting is left alone.
DEFAULT_NETWORKS = parse_networks(DEFAULT_BLOCKED)


def blocking_network(address: Address | str, networks: Sequence[Network]) -> Network | None:
    """The network of ``networks`` that holds ``address``, else None. An IPv4-mapped IPv6 address
    (``::ffff:127.0.0.1``, which reaches the IPv4 address) is checked as that IPv4 address too;
    an IPv6 zone (``fe80::1%eth0``) does not change the address."""
    addr = ipaddress.ip_address(address) if isinstance(address, str) else address
    candidates: list[Address] = [addr]
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        candidates.append(addr.ipv4_mapped)
    for net in networks:
        for candidate in candidates:
            if candidate.version == net.version and candidate in net:
                return net
    return None


def refusal(host: str, address: Address | str, net: Network) -> str:
    """Why a request to ``host`` (at ``address``) is refused, naming the setting."""
    try:
        literal = ipaddress.ip_address(host) == ipaddress.ip_address(address)
    except ValueError:
        literal = False
    where = f"{host} is" if literal else f"{host} resolves to {address},"
    return f"{where} in a blocked network ({net}, {SETTING})"


def literal_host_problem(url: str, networks: Sequence[Network]) -> str | None:
    """For registration: why ``url`` is refused when its host alone says it (a literal address
    in ``networks``, in any spelling the resolver takes, or ``localhost`` while loopback is
    blocked), else None. A name, a placeholder or a URL that does not parse passes: names are
    checked at send time, against what they resolve to then."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host or any(ch in host for ch in "${}#"):
        return None
    host = host.rstrip(".")
    addresses: tuple[Address, ...]
    if host == "localhost" or host.endswith(".localhost"):
        addresses = _LOOPBACK_NAMES
    else:
        literal = _literal_address(host)
        if literal is None:
            return None
        addresses = (literal,)
    for addr in addresses:
        net = blocking_network(addr, networks)
        if net is not None:
            return f"the webhook host {refusal(host, addr, net)}"
    return None


def _literal_address(host: str) -> Address | None:
    """``host`` as an IP address, also in the legacy IPv4 spellings the resolver accepts
    (``127.1``, ``0x7f.0.0.1``, ``2130706433``); None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not all(ch in "0123456789abcdefx." for ch in host) or not host[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None
