"""Issue 17 §4 on a real ``kiok standalone``: OpenTelemetry traces sent over OTLP/HTTP to a
small receiver on loopback (the trigger request, the run and each attempt are spans of one
trace, parent to child, and a task's ``TRACEPARENT`` names its attempt's span), and the
queue-wait histogram moving by the time tasks waited for a slot."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from kiok.testing.process import Standalone

DOCS = Path(__file__).resolve().parents[2] / "docs"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP traces endpoint: decodes each protobuf export and keeps its spans."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.lock:
                    for rs in request.resource_spans:
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                receiver.spans.append(
                                    {
                                        "name": s.name,
                                        "trace": s.trace_id.hex(),
                                        "span": s.span_id.hex(),
                                        "parent": s.parent_span_id.hex(),
                                        "attrs": {a.key: a.value for a in s.attributes},
                                    }
                                )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["name"] == name]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def queue_wait(node: Standalone, dag: str) -> tuple[float, float]:
    """(count, sum) of ``kiok_task_queue_wait_seconds`` for ``dag``."""
    text = node.api("GET", "/metrics").text
    count = total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("dag") != dag:
                continue
            if s.name == "kiok_task_queue_wait_seconds_count":
                count = s.value
            elif s.name == "kiok_task_queue_wait_seconds_sum":
                total = s.value
    return count, total


def test_one_trace_per_run_and_queue_waits(tmp_path: Path, receiver: Receiver) -> None:
    node = Standalone(
        tmp_path / "kiok",
        {
            "KIOK_WORKER_TASK_SLOTS": "1",  # b waits for a's slot: a queue wait of about 0.6 s
            "KIOK_OTEL_ENABLED": "true",
            "KIOK_OTEL_ENDPOINT": receiver.url,
        },
    )
    node.start()
    try:
        dag = node.register(
            "dag: {id: traced}\ntasks:\n"
            "  - {id: a, script: 'echo \"TP=$TRACEPARENT\"; sleep 0.6'}\n"
            "  - {id: b, script: 'echo b'}\n"
            "  - {id: c, requires: [a, b], script: 'echo c'}\n"
        )
        assert queue_wait(node, dag) == (0, 0)
        r = node.api(
            "POST",
            f"/api/v1/dags/{dag}/runs",
            json={},
            headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
        )
        assert r.status_code == 201, r.text
        run_id = r.json()["runId"]
        assert node.wait_run(run_id)["state"] == "SUCCESS"

        count, total = queue_wait(node, dag)
        assert count == 3  # every attempt's start observed once
        assert total >= 0.4, total  # the second root task waited for the only slot

        # Every metric the Grafana dashboard queries is served (Raft's by a group of masters only).
        served = {
            re.sub(r"_(bucket|sum|count)$", "", s.name)
            for family in text_string_to_metric_families(node.api("GET", "/metrics").text)
            for s in family.samples
        }
        dashboard = (DOCS / "grafana" / "kiok.json").read_text()
        queried = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\bkiok_[a-z_]+", dashboard)}
        assert {m for m in queried if not m.startswith("kiok_raft_")} <= served

        runs = node.wait_for(lambda: receiver.named("kiok.run"), 30, "the run span")
        log = node.log(run_id, "a")
    finally:
        node.stop()
    attempts = node.wait_for(
        lambda: len(receiver.named("kiok.task.attempt")) >= 3 or None, 10, "attempt spans"
    )
    assert attempts
    (run,) = runs
    (trigger,) = [s for s in receiver.spans if s["name"] == "POST /api/v1/dags/{dag_id}/runs"]
    # One trace, the client's: client span -> trigger request -> run -> attempts.
    assert {s["trace"] for s in [trigger, run, *receiver.named("kiok.task.attempt")]} == {CLIENT_TRACE}
    assert trigger["parent"] == CLIENT_SPAN
    assert run["parent"] == trigger["span"]
    assert run["attrs"]["kiok.run.id"].string_value == run_id
    by_task = {s["attrs"]["kiok.task.id"].string_value: s for s in receiver.named("kiok.task.attempt")}
    assert sorted(by_task) == ["a", "b", "c"]
    assert all(s["parent"] == run["span"] for s in by_task.values())
    # The task's own spans would join the trace under its attempt's span.
    assert f"TP=00-{CLIENT_TRACE}-{by_task['a']['span']}-01" in log, log
