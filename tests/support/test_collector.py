"""The tests' OpenTelemetry Collector (tests/support/collector.py) takes OTLP and gives it back.

Runs only with PODTRAIL_TRACE_TESTS=1: it builds otelcol-podtrail (image/otelcol.sh) when the
machine's cache has none, which takes minutes. The OpenTelemetry SDK's own exporters send a
parent and a child span, over OTLP/HTTP and over OTLP/gRPC; the file the collector writes must
give both back exactly: ids and parent, times to the nanosecond, attributes of every type, the
event, the status, the resource. Then the collector stops (an export fails), starts again on
the same ports, and takes the next export, the earlier spans still in its file.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tests.support.collector import Collector, Span, running_collector

pytestmark = [
    pytest.mark.timeout(1800),  # the first run builds the collector
    pytest.mark.skipif(
        os.environ.get("PODTRAIL_TRACE_TESTS") != "1",
        reason="runs a real OpenTelemetry Collector, built from Go modules on first use "
        "(minutes): set PODTRAIL_TRACE_TESTS=1",
    ),
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = 1_780_000_000_123_456_789  # Unix ns, a nanosecond part that microseconds would lose
CHILD_ATTRIBUTES: dict[str, Any] = {
    "pod.name": "web-0",
    "restarts": 3,
    "zero": 0,
    "negative": -(2**40),
    "ratio": 0.25,
    "ready": True,
    "evicted": False,
    "containers": ["app", "sidecar"],
    "exit_codes": [0, 137],
}
EVENT_ATTRIBUTES: dict[str, Any] = {"signal": "SIGKILL", "grace_seconds": 30}


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    with running_collector(tmp_path / "otelcol") as running:
        yield running


def make_spans(run: str, transport: str, offset_ns: int) -> list[ReadableSpan]:
    """A parent span and its child (attributes of each type, an event, an error status)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "podtrail-test", "test.run": run})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.support.test_collector", "1.0")
    start = T0 + offset_ns
    parent = tracer.start_span(f"{transport} pod", start_time=start, attributes={"kind": "pod"})
    child = tracer.start_span(
        f"{transport} container",
        context=trace.set_span_in_context(parent),
        start_time=start + 1,
        attributes=CHILD_ATTRIBUTES,
    )
    child.add_event("killed", EVENT_ATTRIBUTES, timestamp=start + 2_000_000_001)
    child.set_status(Status(StatusCode.ERROR, "killed after its grace period"))
    child.end(end_time=start + 3_000_000_007)
    parent.end(end_time=start + 5_000_000_009)
    provider.shutdown()
    return list(memory.get_finished_spans())


def exporters(collector: Collector, timeout: float) -> dict[str, SpanExporter]:
    """The SDK's OTLP span exporters, one a transport, never through a proxy."""
    session = requests.Session()
    session.trust_env = False
    return {
        "http": HttpSpanExporter(endpoint=collector.traces_url, timeout=timeout, session=session),
        "grpc": GrpcSpanExporter(
            endpoint=collector.grpc_endpoint,
            insecure=True,
            timeout=timeout,
            channel_options=(("grpc.enable_http_proxy", 0),),  # type: ignore[arg-type]
        ),
    }


def export_all(collector: Collector, run: str, offset_ns: int, timeout: float) -> dict[str, Any]:
    """Export a parent and child over each transport: transport -> (result, sent spans)."""
    results: dict[str, Any] = {}
    for transport, exporter in exporters(collector, timeout).items():
        sent = make_spans(run, transport, offset_ns)
        try:
            results[transport] = (exporter.export(sent), sent)
        finally:
            exporter.shutdown()
    return results


def hex_ids(span: ReadableSpan) -> tuple[str, str, str]:
    context = span.get_span_context()
    assert context is not None
    parent = format(span.parent.span_id, "016x") if span.parent is not None else ""
    return format(context.trace_id, "032x"), format(context.span_id, "016x"), parent


def utc_of(unix_ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=unix_ns // 1000)


def check_received(
    received: Sequence[Span], sent: Sequence[ReadableSpan], run: str, transport: str
) -> None:
    """The spans read back are the ones sent, field by field."""
    by_name = {span["name"]: span for span in received if span["resource"].get("test.run") == run}
    for want in sent:
        got = by_name[want.name]
        trace_id, span_id, parent_id = hex_ids(want)
        assert (got["trace_id"], got["span_id"], got["parent_span_id"]) == (
            trace_id,
            span_id,
            parent_id,
        )
        assert (got["start_ns"], got["end_ns"]) == (want.start_time, want.end_time)
        assert want.start_time is not None and want.end_time is not None
        assert (got["start"], got["end"]) == (utc_of(want.start_time), utc_of(want.end_time))
        assert got["resource"]["service.name"] == "podtrail-test"
        assert got["scope"] == "tests.support.test_collector"
    assert sorted(by_name) == sorted(
        f"{t} {n}" for t in ("grpc", "http") for n in ("container", "pod")
    )
    parent, child = by_name[f"{transport} pod"], by_name[f"{transport} container"]
    assert parent["parent_span_id"] == "" and child["parent_span_id"] == parent["span_id"]
    assert parent["attributes"] == {"kind": "pod"}
    assert parent["status"] == {"code": 0, "message": ""} and parent["events"] == []
    assert child["attributes"] == CHILD_ATTRIBUTES
    assert {key: type(value) for key, value in child["attributes"].items()} == {
        key: type(value) for key, value in CHILD_ATTRIBUTES.items()
    }
    assert child["status"] == {"code": 2, "message": "killed after its grace period"}
    (event,) = child["events"]
    assert event["name"] == "killed" and event["attributes"] == EVENT_ATTRIBUTES
    assert event["time_ns"] == child["start_ns"] + 2_000_000_000
    assert event["time"] == utc_of(event["time_ns"])


def test_spans_over_http_and_grpc_and_an_outage(collector: Collector) -> None:
    run = uuid.uuid4().hex
    results = export_all(collector, run, 0, timeout=10)
    assert {t: result for t, (result, _) in results.items()} == {
        "http": SpanExportResult.SUCCESS,
        "grpc": SpanExportResult.SUCCESS,
    }
    received = collector.wait_for_spans(4)
    assert len(received) == 4
    for transport, (_, sent) in results.items():
        check_received(received, sent, run, transport)

    collector.stop()
    began = time.monotonic()
    failed = export_all(collector, run, 10_000_000_000, timeout=2)
    assert {t: result for t, (result, _) in failed.items()} == {
        "http": SpanExportResult.FAILURE,
        "grpc": SpanExportResult.FAILURE,
    }
    assert time.monotonic() - began < 15, "the exporters' timeout bounds a failed export"

    collector.start()
    again = uuid.uuid4().hex
    results = export_all(collector, again, 20_000_000_000, timeout=10)
    assert all(result == SpanExportResult.SUCCESS for result, _ in results.values())
    received = collector.wait_for_spans(8)
    assert len(received) == 8, "the spans from before the outage stay in the file"
    for transport, (_, sent) in results.items():
        check_received(received, sent, again, transport)
    assert len([span for span in received if span["resource"]["test.run"] == run]) == 4
