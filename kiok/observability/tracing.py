"""OpenTelemetry traces of runs, optional (``pip install kiok[otel]``, ``kiok.otel.enabled``).

One trace per run: the trigger request's server span (FastAPI instrumentation), the run span
under it and one span per task attempt under the run span. A run outlives the master that
created it, so no span is kept open: the leader writes the run span when the run ends and an
attempt span when a report ends the attempt, each with the ids ``kiok.core.tracecontext``
derives (so the ids a task got in ``TRACEPARENT`` before its span existed are the ones it
gets). OTel is imported only here and only when enabled: kiok runs without the extra, and
``NoTracing`` stands in when tracing is off or the extra is missing.
"""

from __future__ import annotations

import contextvars
import logging
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from kiok.core.states import TaskRecord, TaskState
from kiok.core.tracecontext import RunTrace, attempt_span_id, ended_attempt, run_trace

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kiok.config import Settings
    from kiok.store.effects import Effects

log = logging.getLogger(__name__)

#: Requests that make no span (probes and scrapes, polled all day).
_UNTRACED = "metrics,healthz,readyz,cluster/health"
#: (trace id, span id) the next span is given, set around one ``start_span`` call.
_NEXT_IDS: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "kiok_next_ids", default=None
)
_MS = 1_000_000  # nanoseconds


class NoTracing:
    """Tracing switched off (or the otel extra not installed): every call does nothing."""

    enabled = False

    def instrument(self, app: FastAPI) -> None:
        pass

    def current_traceparent(self) -> str:
        return ""

    def observe(self, fx: Effects, header: Callable[[str], Mapping[str, Any] | None]) -> None:
        pass

    def shutdown(self) -> None:
        pass


def make_tracing(settings: Settings, instance: str) -> NoTracing:
    """``OtelTracing`` when ``kiok.otel.enabled``; a warning and ``NoTracing`` when the extra
    is not installed (a master that cannot trace still schedules)."""
    if not settings["kiok.otel.enabled"]:
        return NoTracing()
    try:
        return OtelTracing(
            endpoint=settings.get_str("kiok.otel.endpoint"),
            service=settings.get_str("kiok.otel.service.name"),
            instance=instance,
        )
    except ImportError as e:
        log.warning("kiok.otel.enabled is set but OpenTelemetry is missing (pip install 'kiok[otel]'): %s", e)
        return NoTracing()


class OtelTracing(NoTracing):
    enabled = True

    def __init__(self, *, endpoint: str, service: str, instance: str) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        class _Ids(RandomIdGenerator):
            """Random ids, except for the span being written with ids chosen in advance."""

            def generate_span_id(self) -> int:
                ids = _NEXT_IDS.get()
                return ids[1] if ids is not None else random.getrandbits(64) or 1

            def generate_trace_id(self) -> int:
                ids = _NEXT_IDS.get()
                return ids[0] if ids is not None else random.getrandbits(128) or 1

        resource = Resource.create({"service.name": service, "service.instance.id": instance})
        self._provider = TracerProvider(resource=resource, id_generator=_Ids())
        exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
        self._provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
        self._tracer = self._provider.get_tracer("kiok")
        self._trace = trace
        self._context = otel_context

    def instrument(self, app: FastAPI) -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self._provider, excluded_urls=_UNTRACED, exclude_spans=["receive", "send"]
        )

    def current_traceparent(self) -> str:
        """The current request span as a ``traceparent`` ("" outside a traced request)."""
        ctx = self._trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return ""
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"

    def observe(self, fx: Effects, header: Callable[[str], Mapping[str, Any] | None]) -> None:
        """Write the spans a batch ended (called on the leader only: one span per event)."""
        headers: dict[str, Mapping[str, Any] | None] = {}

        def run(run_id: str) -> Mapping[str, Any] | None:
            if run_id not in headers:
                headers[run_id] = header(run_id)
            return headers[run_id]

        for run_id, task_id, before, after in fx.task_reports:
            if ended_attempt(before, after) and (h := run(run_id)) is not None:
                self._attempt_span(h, task_id, after)
        for run_id in fx.runs_finished:
            if (h := run(run_id)) is not None:
                self._run_span(h)

    def _span(
        self,
        name: str,
        ids: tuple[str, str],
        parent: tuple[str, str] | None,
        times_ms: tuple[int, int],
        attributes: dict[str, Any],
        failed: bool,
    ) -> None:
        from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

        ctx = self._context.Context()  # a root, unless the parent is given
        if parent is not None:
            remote = SpanContext(int(parent[0], 16), int(parent[1], 16), True, TraceFlags(1))
            ctx = self._trace.set_span_in_context(NonRecordingSpan(remote), ctx)
        token = _NEXT_IDS.set((int(ids[0], 16), int(ids[1], 16)))
        try:
            span = self._tracer.start_span(
                name, context=ctx, attributes=attributes, start_time=times_ms[0] * _MS
            )
        finally:
            _NEXT_IDS.reset(token)
        if failed:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=max(times_ms) * _MS)

    def _run_span(self, h: Mapping[str, Any]) -> None:
        rt = _run_trace(h)
        parent = (rt.trace_id, rt.parent_span_id) if rt.parent_span_id else None
        created = int(h.get("createdMs") or 0)
        state = str(h.get("state", ""))
        self._span(
            "kiok.run",
            (rt.trace_id, rt.span_id),
            parent,
            (created, int(h.get("endedMs") or created)),
            {
                "kiok.run.id": str(h["runId"]),
                "kiok.dag.id": str(h.get("dagId", "")),
                "kiok.run.trigger": str(h.get("trigger", "")),
                "kiok.run.state": state,
            },
            state == "FAILED",
        )

    def _attempt_span(self, h: Mapping[str, Any], task_id: str, rec: TaskRecord) -> None:
        rt = _run_trace(h)
        assert rec.started_at_ms is not None and rec.ended_at_ms is not None
        attributes: dict[str, Any] = {
            "kiok.run.id": str(h["runId"]),
            "kiok.dag.id": str(h.get("dagId", "")),
            "kiok.task.id": task_id,
            "kiok.attempt": rec.attempt,
            "kiok.task.state": rec.state.value,
        }
        if rec.exit_code is not None:
            attributes["kiok.exit_code"] = rec.exit_code
        if rec.worker is not None:
            attributes["kiok.worker.id"] = rec.worker
        self._span(
            "kiok.task.attempt",
            (rt.trace_id, attempt_span_id(rt.span_id, task_id, rec.attempt)),
            (rt.trace_id, rt.span_id),
            (rec.started_at_ms, rec.ended_at_ms),
            attributes,
            rec.state in (TaskState.FAILED, TaskState.RETRYING),
        )

    def shutdown(self) -> None:
        """Send what is buffered (bounded by the exporter's timeout)."""
        self._provider.shutdown()


def _run_trace(h: Mapping[str, Any]) -> RunTrace:
    trace = h.get("trace")
    return run_trace(str(h["runId"]), trace if isinstance(trace, str) else None)
