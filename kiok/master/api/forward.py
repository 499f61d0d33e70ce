"""Followers forward writes to the leader (several masters only).

A write (any method but GET/HEAD/OPTIONS) under ``/api/v1`` that reaches a follower is sent
on to the leader's admin API with the caller's own headers, so the leader authenticates and
authorises the caller as if it had been asked directly, and its answer is returned as is.
The forwarding master adds ``X-Kiok-Forwarded-By`` (a forwarded request is never forwarded
again: one hop, then 503 ``not_leader``) and authenticates itself with a service token in
``X-Kiok-Service-Authorization``, which is what lets the leader believe
``X-Kiok-Forwarded-For`` (the caller's address, for rate limits and the audit log).
With tracing on, the forwarded request carries this master's request span as its
``traceparent``. ``/api/v1/cluster`` is forwarded too: workers and live status are the leader's to tell.
Reads are served from the follower's own copy of the state, and that copy holds what the
follower forwarded by the time it answers: the leader says which Raft entry its state had
reached when it answered (``X-Kiok-Applied-Index``, on forwarded requests only) and the
follower applies up to it before passing a successful answer on (at most ``_CATCH_UP_S``),
so a client reads its own writes through the master it wrote through (a run it triggered, a
DAG it registered). A forwarded request whose leader stops leading while it is under way (a
frozen leader, a new election) is given up at once rather than at the forward timeout: a read
is refused with ``Retry-After``, a write answered as one that may still take effect.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiok.master.http_errors import client_closed, error_response
from kiok.store.replicated import NOT_LEADING, REQUEST_LEAD

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

FORWARDED_BY = "x-kiok-forwarded-by"
FORWARDED_FOR = "x-kiok-forwarded-for"
SERVICE_AUTH = "x-kiok-service-authorization"
TRACEPARENT = b"traceparent"
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORWARDED_READS = frozenset({"/api/v1/cluster"})
#: Hop-by-hop headers and those the proxy recomputes.
_DROP = frozenset(
    {b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade"}
)
APPLIED_INDEX = "x-kiok-applied-index"
_DROP_OUT = frozenset(
    {"content-length", "connection", "transfer-encoding", "content-encoding", APPLIED_INDEX}
)
#: How long a follower waits to apply what the leader had applied when it answered a
#: forwarded write (a follower further behind answers anyway: its reads may lag).
_CATCH_UP_S = 2.0
#: How often a follower looks whether the leader it forwarded to still leads.
_LEADER_CHECK_S = 0.1


class _LeaderChanged(Exception):
    def __str__(self) -> str:
        return "it stopped leading while the request was under way"


class ForwardToLeader:
    def __init__(self, app: ASGIApp, node: MasterNode, timeout_s: float) -> None:
        self.app = app
        self.node = node
        self._timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None

    @property
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            ca = self.node.settings.get_str("kiok.tls.ca")
            self._http = httpx.AsyncClient(
                timeout=self._timeout_s, verify=ssl.create_default_context(cafile=ca) if ca else True
            )
        return self._http

    def _forwards(self, scope: Scope) -> bool:
        if scope["type"] != "http" or self.node.raft is None:
            return False
        path: str = scope.get("path", "")
        if not path.startswith("/api/v1/"):
            return False
        if scope["method"] in _READS and path not in _FORWARDED_READS:
            return False
        return not self.node.leadership.leading

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._forwards(scope):
            # What this request proposes carries the lead it was taken under (refused if none:
            # the flag ``_forwards`` read is polled, the lead is this master's own record).
            raft = self.node.raft
            if raft is not None and scope["type"] == "http":
                REQUEST_LEAD.set(raft.own_lead() or NOT_LEADING)
            if self._forwarded_here(scope):
                await self.app(scope, receive, self._with_applied_index(send))
            else:
                await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", ()) if k not in _DROP]
        if any(k == FORWARDED_BY.encode() for k, _ in headers):
            await self._refuse(
                scope, receive, send, "the master this was forwarded to no longer leads; retry"
            )
            return
        assert self.node.raft is not None
        leader = self.node.raft.leader_id  # the one the request goes to, watched while it is out
        url = self.node.leadership.leader_admin_url()
        if url is None or leader is None:
            await self._refuse(scope, receive, send, "the leader is not known here yet; retry")
            return
        body = b""
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":  # not a truncated body for the leader
                await client_closed(scope["method"], scope.get("path", ""))(scope, receive, send)
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        client = scope.get("client")
        replaced: tuple[bytes, ...] = (FORWARDED_FOR.encode(), SERVICE_AUTH.encode())
        # Traced: the leader's request span is a child of ours, so a run triggered through a
        # follower is one trace (the caller's traceparent, if any, is already our parent).
        traceparent = self.node.tracing.current_traceparent()
        if traceparent:
            replaced += (TRACEPARENT,)
        headers = [(k, v) for k, v in headers if k not in replaced] + [
            (FORWARDED_BY.encode(), self.node.node_id.encode()),
            (FORWARDED_FOR.encode(), (client[0] if client else "unknown").encode()),
            (SERVICE_AUTH.encode(), f"Bearer {self.node.forward_token}".encode()),
        ]
        if traceparent:
            headers.append((TRACEPARENT, traceparent.encode()))
        target = (
            url + scope["path"] + (("?" + scope["query_string"].decode()) if scope["query_string"] else "")
        )
        try:
            answer = await self._while_it_leads(
                leader, self._client.request(scope["method"], target, content=body, headers=headers)
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:  # nothing reached the leader
            await self._refuse(scope, receive, send, f"the leader could not be reached: {_said(e)}")
            return
        except (httpx.HTTPError, _LeaderChanged) as e:
            if scope["method"] in _READS:  # a forwarded read (the cluster view) changed nothing
                await self._refuse(scope, receive, send, f"the leader did not answer: {_said(e)}")
                return
            # The leader may have carried it out and lost its answer: no Retry-After, so that
            # a client does not repeat (say) a trigger blindly (kiok.errors.NotLeader).
            why = (
                f"the leader did not answer ({_said(e)}): it may still take effect, so check before "
                "repeating it"
            )
            await error_response(503, "not_leader", why)(scope, receive, send)
            return
        applied = answer.headers.get(APPLIED_INDEX, "")
        if answer.is_success and applied.isascii() and applied.isdigit() and self.node.raft is not None:
            await self.node.raft.wait_applied(int(applied), _CATCH_UP_S)  # a refusal wrote nothing
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": [
                    (k.encode(), v.encode()) for k, v in answer.headers.items() if k.lower() not in _DROP_OUT
                ]
                + [(b"content-length", str(len(answer.content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer.content})

    async def _while_it_leads(
        self, leader: str, request: Coroutine[Any, Any, httpx.Response]
    ) -> httpx.Response:
        """The answer of ``leader`` to ``request``; ``_LeaderChanged`` (the request cancelled)
        once this master sees another leader, or none, or itself leading."""
        raft = self.node.raft
        assert raft is not None
        sent = asyncio.ensure_future(request)
        try:
            while True:
                done, _ = await asyncio.wait({sent}, timeout=_LEADER_CHECK_S)
                if done:
                    return sent.result()
                if raft.leader_id != leader or raft.is_leader:
                    raise _LeaderChanged()
        finally:
            if not sent.done():
                sent.cancel()
                await asyncio.gather(sent, return_exceptions=True)

    def _forwarded_here(self, scope: Scope) -> bool:
        """A write another master forwarded to this one (the leader): with the service token,
        so that no client learns the applied index (how busy the cluster is) by asking."""
        if scope["type"] != "http" or self.node.raft is None or scope["method"] in _READS:
            return False
        headers = dict(scope.get("headers", ()))
        if FORWARDED_BY.encode() not in headers:
            return False
        scheme, _, token = headers.get(SERVICE_AUTH.encode(), b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and self.node.accepts_service_token(token.strip())

    def _with_applied_index(self, send: Send) -> Send:
        """``send`` that tells the forwarding master the Raft entry this one's state had
        reached when the answer started (the forwarded write's included, if it committed)."""
        raft = self.node.raft
        assert raft is not None

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                index = (APPLIED_INDEX.encode(), str(raft.applied_index()).encode())
                message = {**message, "headers": [*message.get("headers", ()), index]}
            await send(message)

        return sending

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, why: str) -> None:
        await error_response(503, "not_leader", why, {"Retry-After": "1"})(scope, receive, send)


def _said(e: Exception) -> str:
    """What an exception says (an httpx timeout says nothing: its kind, then)."""
    return str(e) or type(e).__name__
