"""The notifier (leader only): delivers the notifications the store's outbox holds, and flags
runs that pass their SLA. ``kiok.core.notify`` decides; this loop reads, sends, proposes.

Every ``kiok.notify.check.interval.ms`` (and whenever a run ends) it proposes ``NotifySlaMiss``
for running runs past their DAG's ``sla`` and starts a delivery for each outbox entry that is
due and not in flight. A delivery is a webhook (an ``httpx`` POST) or an email (``smtplib`` in
a thread); each runs as its own task, so neither the run nor the event loop waits for a slow
receiver. A delivered or given-up entry leaves the outbox through ``FinishNotification`` and
gets a line in the run log. Attempt counts live in memory: a new leader starts them again,
which may send a notification twice, never zero times (at least once).

A webhook's host is resolved first and refused, never retried, if any of its addresses is in
``kiok.notify.webhook.blocked.networks`` (``kiok.security.egress``); the request then goes to
a checked address (the original name in ``Host`` and for TLS), so a name resolved twice
cannot be rebound between the check and the connection. Through the operator's egress proxy
(``HTTPS_PROXY``/``HTTP_PROXY``, ``NO_PROXY``) the proxy connects and resolves the name
itself: what it may reach is its own policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import socket
import ssl
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from kiok.core.notify import (
    Notification,
    SmtpConnection,
    email_text,
    payload,
    reason,
    retry_delay_ms,
    sla_missed,
)
from kiok.core.placeholders import Context, resolve
from kiok.core.states import TaskState
from kiok.dag.notify import EmailTarget, WebhookTarget
from kiok.errors import KiokError
from kiok.master.run_terms import RunTermsCache
from kiok.security.egress import DEFAULT_NETWORKS, Network, blocking_network, refusal
from kiok.security.masking import Masker
from kiok.security.redact import unquoted
from kiok.store import commands as c
from kiok.store.commandlog import CommandLog
from kiok.store.reader import StateReader
from kiok.waits import wait_set, within

log = logging.getLogger(__name__)

#: Deliveries in flight at once; the rest wait for the next pass.
_MAX_IN_FLIGHT = 16


@dataclass(frozen=True)
class NotifySettings:
    max_attempts: int
    retry_initial_ms: int
    retry_max_ms: int
    timeout_s: float
    interval_s: float
    #: Base of run links (``<base>/runs/<id>``).
    link_base: str
    #: Where no webhook goes (``kiok.notify.webhook.blocked.networks``).
    blocked_networks: tuple[Network, ...] = DEFAULT_NETWORKS


class DeliveryFailed(Exception):
    """One attempt failed; the message says why (shown in the run log)."""


class DeliveryRefused(DeliveryFailed):
    """The target may not be sent to (a blocked network): given up at once, not retried."""


class Notifier:
    def __init__(
        self,
        log_: CommandLog,
        reader: StateReader,
        clock_ms: Callable[[], int],
        run_log: Callable[[str, str], None],
        settings: NotifySettings,
        terms: RunTermsCache | None = None,
    ) -> None:
        self._log = log_
        self._reader = reader
        #: Each unfinished run's SLA, read once (the check runs on every run's end).
        self._terms = terms if terms is not None else RunTermsCache(reader.run_spec)
        self._clock = clock_ms
        self._run_log = run_log
        self._settings = settings
        self._attempts: dict[str, int] = {}
        self._next_ms: dict[str, int] = {}
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                try:
                    await self.check()
                except KiokError as e:  # e.g. leadership lost: the next leader delivers
                    log.info("notifier stopped: %s", e.message)
                except Exception:
                    log.exception("notifier pass failed")
                await wait_set(self._wake, self._timeout_s())
        finally:
            for task in self._in_flight.values():
                task.cancel()

    def _timeout_s(self) -> float:
        soonest = min(self._next_ms.values(), default=None)
        wait = self._settings.interval_s
        if soonest is not None:
            wait = min(wait, max(0.0, (soonest - self._clock()) / 1000))
        return wait

    async def check(self) -> None:
        """One pass: flag runs past their SLA, then start every due delivery."""
        for run in self._reader.active_runs():
            terms = self._terms.of(run["runId"])
            if terms is None or terms.sla_ms is None:
                continue
            if sla_missed(run, terms.sla_ms, self._clock()):
                await self._log.propose(c.NotifySlaMiss(at_ms=self._clock(), run_id=run["runId"]))
        now = self._clock()
        due = self._reader.notifications()
        # Retries of entries gone from the outbox (their run was deleted) are forgotten: a
        # retry time left behind, once past, would make every pass start at once, for ever.
        present = {raw["key"] for raw in due}
        for key in [k for k in self._next_ms if k not in present and k not in self._in_flight]:
            self._next_ms.pop(key, None)
            self._attempts.pop(key, None)
        for raw in due:
            key = raw["key"]
            if key in self._in_flight or self._next_ms.get(key, 0) > now:
                continue
            if len(self._in_flight) >= _MAX_IN_FLIGHT:
                break
            self._in_flight[key] = asyncio.create_task(self._deliver(Notification.from_dict(raw)))

    async def _deliver(self, n: Notification) -> None:
        try:
            await self._attempt(n)
        except KiokError as e:  # the outcome could not be recorded (leadership lost): the entry stays
            log.info("notification %s: %s", n.key, e.message)
        finally:
            self._in_flight.pop(n.key, None)
            self._wake.set()

    async def _attempt(self, n: Notification) -> None:
        attempt = self._attempts.get(n.key, 0) + 1
        self._attempts[n.key] = attempt
        try:
            try:
                detail = await within(self._send(n), self._settings.timeout_s)
            except TimeoutError:
                raise DeliveryFailed(f"no answer within {self._settings.timeout_s:g}s") from None
            except DeliveryFailed:
                raise
            except Exception as e:  # whatever it is (an unusable URL, a header with a line
                # break): a failed attempt, counted and retried, never one that escapes
                raise DeliveryFailed(_describe(e)) from None
        except DeliveryRefused as e:  # another attempt would be refused as well
            await self._finish(n, False, f"refused: {e}")
        except DeliveryFailed as e:
            if attempt >= self._settings.max_attempts:
                await self._finish(n, False, f"failed after {attempt} attempts: {e}")
            else:
                delay = retry_delay_ms(attempt, self._settings.retry_initial_ms, self._settings.retry_max_ms)
                self._next_ms[n.key] = self._clock() + delay
                self._run_log(n.run_id, f"{n.label} attempt {attempt} failed: {e}; next in {delay / 1000:g}s")
        else:
            await self._finish(n, True, f"delivered{detail}")

    async def _finish(self, n: Notification, delivered: bool, detail: str) -> None:
        await self._log.propose(
            c.FinishNotification(at_ms=self._clock(), key=n.key, delivered=delivered, detail=detail)
        )
        self._attempts.pop(n.key, None)
        self._next_ms.pop(n.key, None)
        self._run_log(n.run_id, f"{n.label} {detail}")
        (log.info if delivered else log.warning)("run %s: %s %s", n.run_id, n.label, detail)

    async def _send(self, n: Notification) -> str:
        """Deliver once; a suffix for the run log (`` (200)``), or an exception."""
        run = self._reader.run(n.run_id)
        failed = {
            tid: rec.get("error")
            for tid, rec in (run or {}).get("tasks", {}).items()
            if rec.get("state") == TaskState.FAILED.value
        }
        body = payload(n, reason(n, failed), f"{self._settings.link_base.rstrip('/')}/runs/{n.run_id}")
        secrets: list[str] = []
        try:
            if isinstance(n.target, WebhookTarget):
                return await self._webhook(n.target, body, secrets)
            assert isinstance(n.target, EmailTarget)
            return await self._email(n, n.target, body, secrets)
        except Exception as e:
            if not secrets:
                raise
            # An error may quote what it choked on (h11: "Illegal header value b'<token>'"):
            # the connection values it used never reach the run log or kiok's own.
            text = str(e) if isinstance(e, DeliveryFailed) else _describe(e)
            kind = DeliveryRefused if isinstance(e, DeliveryRefused) else DeliveryFailed
            raise kind(Masker(secrets).mask_str(text)) from None

    async def _webhook(self, target: WebhookTarget, body: dict[str, Any], secrets: list[str]) -> str:
        url = httpx.URL(self._resolve(target.url, secrets))
        headers = httpx.Headers()
        for name, value in target.headers.items():
            resolved = self._resolve(value, secrets)
            if not all(" " <= ch <= "~" or ch == "\t" for ch in resolved):
                raise DeliveryFailed(
                    f"header {name}: its value holds a line break, a control or a non-ASCII character"
                )
            headers[name] = resolved
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise DeliveryFailed("the url is not http(s)://<host>...")
        proxy = _proxy_for(url)
        try:
            addresses = await _checked_addresses(url, self._settings.blocked_networks)
        except OSError:
            if proxy is None:
                raise
            addresses = []  # behind an egress proxy names may resolve only there: its policy
        if "host" not in headers:
            headers["Host"] = url.netloc.decode("ascii")
        timeout_s = self._settings.timeout_s
        if proxy is not None:  # the operator's egress proxy: it connects (and resolves) itself
            status = await _post_via_proxy(proxy, url, body, headers, timeout_s)
        else:
            status = await _post_to_checked(url, addresses, body, headers, timeout_s)
        if not 200 <= status < 300:
            raise DeliveryFailed(f"HTTP {status}")
        return f" ({status})"

    async def _email(
        self, n: Notification, target: EmailTarget, body: dict[str, Any], secrets: list[str]
    ) -> str:
        record = self._reader.connection(target.connection)
        if record is None:
            raise DeliveryFailed(f"connection {target.connection!r} not found")
        secrets.append(str(record["properties"].get("password") or ""))
        try:
            smtp = SmtpConnection.from_properties(record["properties"])
        except ValueError as e:
            raise DeliveryFailed(f"connection {target.connection!r}: {e}") from None
        subject, text = email_text(n, body)
        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = subject, smtp.sender, ", ".join(target.to)
        msg.set_content(text)
        await asyncio.to_thread(_send_mail, smtp, msg, self._settings.timeout_s)
        return f" ({smtp.host}:{smtp.port})"

    def _resolve(self, text: str, secrets: list[str]) -> str:
        """``text`` with its placeholders resolved; each connection value used goes to ``secrets``."""

        def lookup(conn_id: str, key: str) -> str:
            record = self._reader.connection(conn_id)
            if record is None:
                raise KeyError(conn_id)
            value = str(record["properties"][key])
            secrets.append(value)
            return value

        return resolve(text, params={}, lookup_conn=lookup, now_ms=self._clock(), context=Context.TEXT)


async def _post_to_checked(
    url: httpx.URL, addresses: list[str], body: dict[str, Any], headers: httpx.Headers, timeout_s: float
) -> int:
    """POST ``body`` to the first of ``addresses`` (checked ones) that takes a connection; its
    status. The name goes in ``Host`` (the caller sets it) and is what TLS sends and verifies
    the certificate against (``sni_hostname``)."""
    host = url.raw_host.decode("ascii")
    async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client:
        for i, address in enumerate(addresses):
            try:
                async with client.stream(
                    "POST",
                    url.copy_with(host=address.partition("%")[0]),
                    json=body,
                    headers=headers,
                    extensions={"sni_hostname": host},
                ) as resp:
                    # The status is all that counts: the answer's body is never read (a
                    # receiver could send gigabytes), the connection is closed with it unread.
                    return resp.status_code
            except httpx.ConnectError:
                if i == len(addresses) - 1:
                    raise
    raise DeliveryFailed(f"{url.host} resolves to no address")


async def _post_via_proxy(
    proxy: str, url: httpx.URL, body: dict[str, Any], headers: httpx.Headers, timeout_s: float
) -> int:
    """POST ``body`` to ``url`` through ``proxy``; its status (the body unread, as above)."""
    async with (
        httpx.AsyncClient(timeout=timeout_s, proxy=proxy, trust_env=False) as client,
        client.stream("POST", url, json=body, headers=headers) as resp,
    ):
        return resp.status_code


def _proxy_for(url: httpx.URL) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``/``HTTP_PROXY``, not for a
    host in ``NO_PROXY``), as any HTTP client here would use; None: sent directly."""
    proxy = urllib.request.getproxies().get(url.scheme)
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return proxy


async def _checked_addresses(url: httpx.URL, blocked: tuple[Network, ...]) -> list[str]:
    """Every address ``url``'s host resolves to now (in the resolver's order, once each; the
    lookup runs in a thread), or ``DeliveryRefused`` if any of them is in ``blocked``: a name
    with one blocked address among others could be made to use it."""
    port = url.port or (443 if url.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(
        url.raw_host.decode("ascii"), port, type=socket.SOCK_STREAM
    )
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise DeliveryFailed(f"{url.host} resolves to no address")
    for address in addresses:
        net = blocking_network(address, blocked)
        if net is not None:
            raise DeliveryRefused(refusal(url.host, address, net))
    return addresses


def _send_mail(smtp: SmtpConnection, msg: EmailMessage, timeout_s: float) -> None:
    """One SMTP conversation (blocking: run in a thread), ended at ``timeout_s`` as a whole:
    smtplib's timeout is per socket read, which a server that trickles its answers never
    trips, and the caller's ``wait_for`` cannot stop a thread. So a timer shuts the socket
    down at the deadline, which ends the conversation and frees the thread; one that fires
    while the connection is still being made (no socket to cut yet) ends it once made."""
    context = ssl.create_default_context()
    cls = smtplib.SMTP_SSL if smtp.ssl else smtplib.SMTP
    kwargs: dict[str, Any] = {"context": context} if smtp.ssl else {}
    client = cls(timeout=timeout_s, **kwargs)  # not connected yet: the deadline covers connecting
    # The name TLS verifies the server against (SMTPS at connect, STARTTLS later): smtplib
    # sets it only when the constructor connects, which it does not here.
    client._host = smtp.host  # type: ignore[attr-defined]  # (smtplib keeps it, typeshed does not say)
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        sock = client.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    deadline = threading.Timer(timeout_s, cut)
    deadline.daemon = True
    deadline.start()
    try:
        with client:
            code, greeting = client.connect(smtp.host, smtp.port)
            if expired.is_set():
                raise TimeoutError(f"the SMTP server took over {timeout_s:g}s to answer")
            if code != 220:  # what smtplib's constructor checks when it connects itself
                raise smtplib.SMTPConnectError(code, greeting)
            if smtp.starttls:
                client.starttls(context=context)
            if smtp.user:
                client.login(smtp.user, smtp.password)
            client.send_message(msg)
    finally:
        deadline.cancel()
        client.close()


def _describe(e: BaseException) -> str:
    if isinstance(e, KiokError):
        return e.message
    text = str(e) or type(e).__name__
    if isinstance(e, httpx.InvalidURL):  # it may quote a piece of a connection value
        text = unquoted(text)
    return f"{type(e).__name__}: {text}" if type(e).__name__ not in text else text
