"""The trace exporter: spans as the SDK sends them, batches, bounds, retries, and what is sent when.

The exporter runs on a fake clock against an in-memory SDK exporter (the SDK's SpanExporter
interface, answering SUCCESS or FAILURE, raising, or hanging); its export still runs in a real
worker thread, so the tests wait for it in real time (`until`). Two tests send through the
SDK's real OTLP exporters to a receiver on the loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time as real_time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent import futures
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from aiohttp import web
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from podtrail import core
from podtrail.core.trace import PodTrace, Span, pod_trace
from podtrail.shell import handlers
from podtrail.shell.backoff import Backoff
from podtrail.shell.metrics import Metrics
from podtrail.shell.otlp import http_traces_url, nanoseconds, readable_spans
from podtrail.shell.settings import PodtrailSettings, parse_settings
from podtrail.shell.traces import TraceExporter, TraceFeed, Tracing, build_tracing
from tests.shell.test_persist import FakeTime, Harness, clock, running, running_pod
from tests.unit import builders as b
from tests.unit.scenarios import SCENARIOS, play

NS, POD = b.NAMESPACE, b.POD
NOW = b.at(10_000)


# --- helpers -------------------------------------------------------------------------------


class FakeCollector(SpanExporter):
    """The SDK's exporter interface, in memory.

    `results` are answered in turn (a result, or an exception to raise), then `default`;
    with `gate` set, every export waits for it (as a hung collector would; the shutdown opens
    it, as the SDK's does). `calls` holds the fake time of each export.
    """

    def __init__(self, time: FakeTime | None = None) -> None:
        self.time = time
        self.batches: list[list[ReadableSpan]] = []
        self.calls: list[float] = []
        self.results: list[SpanExportResult | Exception] = []
        self.default: SpanExportResult | Exception = SpanExportResult.SUCCESS
        self.gate: threading.Event | None = None
        self.shutdowns = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls.append(self.time.now if self.time else 0.0)
        if self.gate is not None:
            self.gate.wait(10)  # bounded: a broken test must not hang the session
        outcome = self.results.pop(0) if self.results else self.default
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is SpanExportResult.SUCCESS:
            self.batches.append(list(spans))
        return outcome

    def shutdown(self) -> None:
        self.shutdowns += 1
        if self.gate is not None:
            self.gate.set()

    @property
    def exported(self) -> list[ReadableSpan]:
        return [span for batch in self.batches for span in batch]


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait, in real time, for what a worker thread does to reach the event loop."""
    deadline = real_time.monotonic() + seconds
    while not condition():
        assert real_time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.002)


def steady_backoff() -> Backoff:
    return Backoff(jitter=lambda: 1.0)  # 0.5, 1, 2 … 30 s


def synthetic(number: int, spans: int) -> PodTrace:
    """A trace of `spans` spans: a root and its children."""
    root = 1000 * number + 1
    made = [Span(root, None, f"pod ns/p{number}", b.at(0), b.at(100))]
    made += [Span(root + i, root, f"child {i}", b.at(i), b.at(i + 1)) for i in range(1, spans)]
    resource = (("service.name", "podtrail"), ("k8s.pod.name", f"p{number}"))
    return PodTrace(number, resource, tuple(made), ended=True)


def record_of(steps: list[core.Observation]) -> core.Record:
    status, _ = play(steps)
    return core.load_record(status, core.Limits())


def scenario_trace(name: str) -> PodTrace:
    trace = pod_trace(record_of(SCENARIOS[name]()), NS, POD, now=NOW)
    assert trace is not None
    return trace


@dataclasses.dataclass
class Running:
    exporter: TraceExporter
    collector: FakeCollector
    time: FakeTime
    metrics: Metrics

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def dropped(self, reason: str) -> float:
        return self.metric("podtrail_trace_spans_dropped_total", reason=reason)

    def tries(self, result: str) -> float:
        return self.metric("podtrail_trace_exports_total", result=result)

    @property
    def exported(self) -> float:
        return self.metric("podtrail_trace_spans_exported_total")


@contextlib.asynccontextmanager
async def exporting(*, start: bool = True, **options: Any) -> AsyncIterator[Running]:
    time = FakeTime()
    metrics = Metrics()
    collector = FakeCollector(time)
    settings: dict[str, Any] = {
        "metrics": metrics,
        "batch_spans": 4,
        "batch_seconds": 5.0,
        "timeout_seconds": 1.0,
        "resource": Resource.get_empty(),
        "monotonic": time.monotonic,
        "sleep": time.sleep,
        "backoff": steady_backoff,
    } | options
    exporter = TraceExporter(collector, **settings)
    task = asyncio.create_task(exporter.run()) if start else None
    try:
        yield Running(exporter, collector, time, metrics)
    finally:
        if collector.gate is not None:
            collector.gate.set()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# --- spans as the SDK takes them -----------------------------------------------------------


def test_spans_carry_the_pods_ids_times_attributes_events_and_status() -> None:
    trace = scenario_trace("killed_after_grace")
    base = Resource({"telemetry.sdk.language": "python"})
    queued = [(trace.trace_id, trace.resource, span) for span in trace.spans]
    spans = readable_spans(queued, base)
    assert len(spans) == len(trace.spans)
    by_name = {span.name: span for span in spans}
    root, run = by_name[f"pod {NS}/{POD}"], by_name["container app"]
    termination = by_name["termination"]
    for made in spans:
        assert made.context is not None
        assert made.context.trace_id == uuid.UUID(b.UID).int
        assert made.context.trace_flags.sampled and not made.context.is_remote
        assert made.instrumentation_scope is not None
        assert made.instrumentation_scope.name == "podtrail"
        assert made.resource.attributes["k8s.pod.name"] == POD
        assert made.resource.attributes["k8s.namespace.name"] == NS
        assert made.resource.attributes["telemetry.sdk.language"] == "python"
    assert root.parent is None and root.context is not None
    assert run.parent is not None and run.parent.span_id == root.context.span_id
    assert [s.context.span_id for s in spans if s.context] == [s.span_id for s in trace.spans]
    core_run = next(s for s in trace.spans if s.name == "container app")
    assert run.start_time == nanoseconds(core_run.start)
    assert run.end_time == nanoseconds(b.at(205)) == (int(b.at(205).timestamp())) * 10**9
    assert run.attributes is not None and run.attributes["container.exit_code"] == 137
    assert run.status.status_code is StatusCode.ERROR and run.status.description
    assert termination.status.description == "SIGKILL after the grace period"
    sigkill = next(event for event in termination.events if event.name == "SIGKILL")
    assert sigkill.timestamp == nanoseconds(b.at(205))
    assert sigkill.attributes is not None and sigkill.attributes["k8s.container.name"] == "app"
    graceful = readable_spans(
        [(1, (), s) for s in scenario_trace("graceful").spans], Resource.get_empty()
    )
    assert all(span.status.status_code is StatusCode.UNSET for span in graceful)


def test_the_otlp_request_holds_one_resource_per_pod_and_the_parents() -> None:
    first, second = scenario_trace("graceful"), synthetic(7, 3)
    queued = [(t.trace_id, t.resource, span) for t in (first, second) for span in t.spans]
    request = encode_spans(readable_spans(queued, Resource.get_empty()))
    assert len(request.resource_spans) == 2
    pods = {
        next(a.value.string_value for a in rs.resource.attributes if a.key == "k8s.pod.name")
        for rs in request.resource_spans
    }
    assert pods == {POD, "p7"}
    sent = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert {s.trace_id for s in sent} == {uuid.UUID(b.UID).bytes, (7).to_bytes(16, "big")}
    roots = [s for s in sent if not s.parent_span_id]
    assert len(roots) == 2
    children = [s for s in sent if s.parent_span_id]
    root_ids = {s.span_id for s in roots}
    assert children and all(s.parent_span_id in root_ids for s in children)


def test_values_outside_otlps_ranges_are_clamped() -> None:
    assert nanoseconds(datetime(1960, 1, 1)) == 0
    assert nanoseconds(b.at(0.5)) % 10**9 == 500_000_000
    huge = Span(5, None, "pod", b.at(0), b.at(1), attributes=(("big", 2**70), ("flag", True)))
    (made,) = readable_spans([(9, (), huge)], Resource.get_empty())
    assert made.attributes is not None
    assert made.attributes["big"] == 2**63 - 1 and made.attributes["flag"] is True
    encode_spans([made])  # would raise on an int64 overflow


# --- batches, bounds, retries --------------------------------------------------------------


async def test_a_full_batch_goes_at_once_and_the_rest_after_the_interval() -> None:
    async with exporting() as run:
        assert run.exporter.offer(synthetic(1, 3))
        await run.time.advance(4.9)
        assert run.collector.calls == [], "3 spans wait for a fourth, or for 5 s"
        await run.time.advance(0.1)
        await until(lambda: run.exported == 3)
        assert run.exporter.offer(synthetic(2, 10))
        await until(lambda: run.exported == 11)
        assert [len(batch) for batch in run.collector.batches] == [3, 4, 4]
        await run.time.advance(5)
        await until(lambda: run.exported == 13)
        assert [len(batch) for batch in run.collector.batches] == [3, 4, 4, 2]
        assert run.metric("podtrail_trace_queue_spans") == 0
        assert run.tries("ok") == 4


async def test_a_large_batch_is_made_in_slices_and_keeps_its_order() -> None:
    async with exporting(batch_spans=200) as run:
        trace = synthetic(1, 150)
        run.exporter.offer(trace)
        await run.time.advance(5)
        await until(lambda: run.exported == 150)
        sent = [span.context.span_id for span in run.collector.exported if span.context]
        assert sent == [span.span_id for span in trace.spans]


async def test_the_queue_is_bounded_and_a_trace_that_does_not_fit_is_dropped_whole() -> None:
    async with exporting(start=False, max_spans=5) as run:
        assert run.exporter.offer(synthetic(1, 3))
        assert not run.exporter.offer(synthetic(2, 3)), "3 more do not fit: all 3 dropped"
        assert run.exporter.offer(synthetic(3, 2))
        assert not run.exporter.offer(synthetic(4, 1))
        assert len(run.exporter) == 5
        assert run.dropped("queue_full") == 4
        assert run.metric("podtrail_trace_queue_spans") == 5
        trace = synthetic(5, 3)
        assert run.exporter.offer(trace, spans=()), "nothing to send is no drop"
        assert not run.exporter.offer(trace, again=True)
        assert run.dropped("queue_full") == 4, "offered again later: not dropped yet"


async def test_a_failing_batch_is_tried_with_backoff_then_dropped() -> None:
    async with exporting(attempts=3) as run:
        run.collector.default = SpanExportResult.FAILURE
        start = run.time.now
        run.exporter.offer(synthetic(1, 4))
        await until(lambda: run.tries("failed") == 1)
        await run.time.advance(0.5)
        await until(lambda: run.tries("failed") == 2)
        await run.time.advance(1.0)
        await until(lambda: run.dropped("export_failed") == 4)
        assert [t - start for t in run.collector.calls] == [0.0, 0.5, 1.5]
        assert run.tries("failed") == 3 and run.exported == 0
        # The backoff carries over: the next batch waits 2 s before its first try; a success
        # resets it, and the batch after goes at once.
        run.collector.default = SpanExportResult.SUCCESS
        run.exporter.offer(synthetic(2, 4))
        await run.time.advance(1.9)
        assert len(run.collector.calls) == 3
        await run.time.advance(0.1)
        await until(lambda: run.exported == 4)
        run.exporter.offer(synthetic(3, 4))
        await until(lambda: run.exported == 8)
        assert run.collector.calls[-1] == run.collector.calls[-2] == start + 3.5


async def test_an_exporter_that_raises_fails_the_try_and_is_retried() -> None:
    async with exporting() as run:
        run.collector.results = [ConnectionError("refused")]
        run.exporter.offer(synthetic(1, 4))
        await until(lambda: run.tries("failed") == 1)
        await run.time.advance(0.5)
        await until(lambda: run.exported == 4)
        assert run.dropped("export_failed") == 0


async def test_a_hung_export_is_given_up_and_no_second_thread_is_started() -> None:
    async with exporting(attempts=2, timeout_seconds=1.0) as run:
        run.collector.gate = threading.Event()
        run.exporter.offer(synthetic(1, 4))
        await until(lambda: len(run.collector.calls) == 1)
        await run.time.advance(6.0)  # the SDK's 1 s timeout and the 5 s watchdog over it
        await until(lambda: run.tries("timeout") == 1)
        await run.time.advance(0.5)  # the second try finds the first thread still running
        await until(lambda: run.dropped("export_failed") == 4)
        assert len(run.collector.calls) == 1, "one thread at most"
        assert run.exporter.exporting
        run.collector.gate.set()  # the SDK's timeout ends the thread at last
        run.collector.gate = None
        await until(lambda: not run.exporter.exporting)
        run.exporter.offer(synthetic(2, 4))
        await run.time.advance(1.0)  # the backoff after the drop
        await until(lambda: run.exported == 4)
        assert len(run.collector.calls) == 2


async def test_a_collector_that_is_down_keeps_memory_bounded() -> None:
    async with exporting(max_spans=20, attempts=2) as run:
        run.collector.default = SpanExportResult.FAILURE
        offered = 0
        for number in range(1, 101):
            run.exporter.offer(synthetic(number, 3))
            offered += 3
            assert len(run.exporter) <= 20
            await run.time.advance(1.0)
        for _ in range(100):  # however slowly the threads' answers came meanwhile
            if len(run.collector.calls) >= 2:
                break
            await run.time.advance(30.0)
            await asyncio.sleep(0.01)
        accounted = run.dropped("queue_full") + run.dropped("export_failed") + len(run.exporter)
        assert 0 <= offered - accounted <= 4, "every span accounted for but one batch's at most"
        assert run.dropped("queue_full") > 200
        assert len(run.collector.calls) < 40, "tries are spread by the backoff"


async def test_close_sends_what_is_queued_then_shuts_the_exporter_down() -> None:
    async with exporting() as run:
        for number in range(1, 4):
            run.exporter.offer(synthetic(number, 3))
        await until(lambda: run.exported == 8)
        await run.exporter.close(timeout=5.0)
        assert run.exported == 9 and len(run.exporter) == 0
        assert run.collector.shutdowns == 1
        assert not run.exporter.offer(synthetic(9, 2))
        assert run.dropped("shutdown") == 2


async def test_close_is_bounded_when_the_collector_hangs() -> None:
    async with exporting(timeout_seconds=30.0) as run:
        run.collector.gate = threading.Event()
        for number in range(1, 4):
            run.exporter.offer(synthetic(number, 4))
        await until(lambda: len(run.collector.calls) == 1)
        closing = asyncio.create_task(run.exporter.close(timeout=5.0))
        await run.time.advance(5.0)
        await run.time.advance(2.0)  # the SDK exporter's shutdown, waited for a short while
        await until(closing.done)
        assert run.dropped("shutdown") == 12, "the batch being tried and the two queued"
        assert run.collector.shutdowns == 1 and run.exported == 0


async def test_close_before_run_drops_what_is_queued() -> None:
    async with exporting(start=False) as run:
        run.exporter.offer(synthetic(1, 3))
        closing = asyncio.create_task(run.exporter.close(timeout=0))
        await until(lambda: run.collector.shutdowns == 1)
        await run.time.advance(2.0)
        await closing
        assert run.dropped("shutdown") == 3


# --- what is offered, and when -------------------------------------------------------------


class FakeSink:
    """Records what the feed offers; refuses while `refusing`."""

    def __init__(self) -> None:
        self.offers: list[tuple[PodTrace, list[Span]]] = []
        self.again: list[bool] = []
        self.refusing = False

    def offer(
        self, trace: PodTrace, spans: Sequence[Span] | None = None, *, again: bool = False
    ) -> bool:
        self.again.append(again)
        if self.refusing:
            return False
        self.offers.append((trace, list(trace.spans if spans is None else spans)))
        return True

    def span_ids(self) -> list[int]:
        return [span.span_id for _, spans in self.offers for span in spans]


def make_feed(sink: FakeSink, **options: Any) -> TraceFeed:
    settings: dict[str, Any] = {"limits": core.Limits(), "clock": lambda: NOW} | options
    return TraceFeed(sink, **settings)


def crash_loop_until(step: int) -> core.Record:
    return record_of(SCENARIOS["crash_loop"]()[:step])


def test_a_removed_pods_life_is_offered_once() -> None:
    sink = FakeSink()
    feed = make_feed(sink)
    record = record_of(SCENARIOS["graceful"]())
    feed.ended(NS, POD, record)
    feed.ended(NS, POD, record)
    ((trace, spans),) = sink.offers
    assert spans == list(trace.spans) and spans[0].parent_id is None
    assert trace.ended


async def test_live_pods_closed_spans_go_once_and_the_rest_at_the_end() -> None:
    sink = FakeSink()
    feed = make_feed(sink)
    early = crash_loop_until(4)  # two runs: the first has ended
    assert await feed.live_pass([(NS, POD, early)]) > 0
    first = sink.span_ids()
    trace = pod_trace(early, NS, POD, now=NOW)
    assert trace is not None and trace.root.span_id not in first
    names = [span.name for _, spans in sink.offers for span in spans]
    assert "container app" in names
    assert await feed.live_pass([(NS, POD, early)]) == 0, "nothing new"
    later = crash_loop_until(10)
    assert await feed.live_pass([(NS, POD, later)]) > 0
    ended = dataclasses.replace(later, removal=core.model.Removal(b.at(300), True))
    feed.ended(NS, POD, ended)
    final = pod_trace(ended, NS, POD, now=NOW)
    assert final is not None
    sent = sink.span_ids()
    assert len(sent) == len(set(sent)), "no span twice"
    assert sorted(sent) == sorted(span.span_id for span in final.spans)
    assert sink.offers[-1][1][0].span_id == final.root.span_id, "the root goes at the end"


async def test_a_refused_offer_is_made_again_at_the_next_pass() -> None:
    sink = FakeSink()
    feed = make_feed(sink)
    record = crash_loop_until(4)
    sink.refusing = True
    assert await feed.live_pass([(NS, POD, record)]) == 0
    sink.refusing = False
    assert await feed.live_pass([(NS, POD, record)]) > 0
    assert sink.again == [True, True], "a live pass offers again what is refused"
    feed.ended(NS, POD, dataclasses.replace(record, removal=core.model.Removal(NOW, True)))
    assert sink.again[-1] is False, "a life's end is offered once"


async def test_what_the_feed_remembers_is_bounded() -> None:
    sink = FakeSink()
    feed = make_feed(sink, max_live_pods=2)
    record = crash_loop_until(4)
    pods = [(NS, f"web-{n}", dataclasses.replace(record, pod_uid=None)) for n in range(3)]
    await feed.live_pass(pods)
    assert len(feed._live) == 2
    await feed.live_pass(pods[:1])
    assert len(feed._live) == 1, "records no longer there are forgotten"


async def test_live_passes_run_every_interval() -> None:
    time = FakeTime()
    feed = make_feed(FakeSink(), interval_seconds=60.0, sleep=time.sleep)
    passes: list[float] = []

    def records() -> Iterator[tuple[str, str, core.Record]]:
        passes.append(time.now)
        return iter(())

    task = asyncio.create_task(feed.follow_live(records))
    try:
        await time.advance(59)
        assert passes == []
        await time.advance(61)
        assert len(passes) == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- the writer's hook ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def writer_with_hook(
    hook: Callable[[str, str, core.Record], None] | None = None,
) -> AsyncIterator[tuple[Harness, list[tuple[str, str, core.Record]]]]:
    handed: list[tuple[str, str, core.Record]] = []

    def note(namespace: str, name: str, record: core.Record) -> None:
        handed.append((namespace, name, record))
        if hook is not None:
            hook(namespace, name, record)

    async with running(on_ended=note) as harness:
        yield harness, handed


def gone() -> core.PodGone:
    return core.PodGone(NS, POD, b.UID, clock(), True)


async def test_the_writer_hands_a_removed_pods_record_over_once_it_settles() -> None:
    async with writer_with_hook() as (h, handed):
        h.writer.submit(core.observe_pod(running_pod()))
        h.writer.submit(gone())
        await h.settle()
        assert handed == [], "kept in full for late Events first"
        await h.time.advance(30)
        ((namespace, name, record),) = handed
        assert (namespace, name) == (NS, POD)
        assert record.removal is not None and record.pod_uid == b.UID
        state = h.writer.get(NS, POD)
        assert state is not None and state.evicted, "handed over as it became a stub"
        h.writer.submit(gone())
        await h.time.advance(60)
        h.writer.announce_ended()
        assert len(handed) == 1


async def test_at_shutdown_the_writer_hands_over_what_has_not_settled() -> None:
    async with writer_with_hook() as (h, handed):
        h.writer.submit(core.observe_pod(running_pod()))
        await h.settle()
        h.writer.announce_ended()
        assert handed == [], "a live pod's record is not handed over"
        h.writer.submit(gone())
        await h.settle()
        h.writer.announce_ended()
        assert len(handed) == 1
        await h.time.advance(30)
        assert len(handed) == 1


async def test_a_failing_hook_does_not_stop_the_writer() -> None:
    def broken(namespace: str, name: str, record: core.Record) -> None:
        raise RuntimeError("broken")

    async with writer_with_hook(broken) as (h, handed):
        h.writer.submit(core.observe_pod(running_pod()))
        h.writer.submit(gone())
        await h.settle()
        await h.time.advance(30)
        assert len(handed) == 1
        state = h.writer.get(NS, POD)
        assert state is not None and state.evicted


async def test_a_pods_life_goes_from_the_writer_to_the_collector() -> None:
    async with exporting() as run:
        feed = TraceFeed(run.exporter, limits=core.Limits(), clock=clock)
        async with running(on_ended=feed.ended) as h:
            h.writer.submit(core.observe_pod(running_pod()))
            h.writer.submit(gone())
            await h.settle()
            await h.time.advance(30)
        await run.time.advance(5)
        await until(lambda: run.exported > 0)
        names = [span.name for span in run.collector.exported]
        assert names[0] == f"pod {NS}/{POD}" and "container app" in names


# --- assembly, and the SDK's own exporters -------------------------------------------------


def settings_for(*argv: str) -> PodtrailSettings:
    return parse_settings(list(argv), env={"PODTRAIL_LOG_FORMAT": "json"})


def test_no_endpoint_no_traces() -> None:
    assert build_tracing(settings_for(), Metrics()) is None


def test_an_exporter_that_cannot_be_made_leaves_traces_off(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    settings = settings_for("--otlp-endpoint", "collector:4317", "--otlp-certificate", missing)
    assert build_tracing(settings, Metrics()) is None


def test_the_http_endpoint_gets_the_traces_path() -> None:
    assert http_traces_url("http://tempo:4318") == "http://tempo:4318/v1/traces"
    assert http_traces_url("https://tempo:4318/") == "https://tempo:4318/v1/traces"
    assert http_traces_url("https://gw.example/otlp/v1/traces") == (
        "https://gw.example/otlp/v1/traces"
    )


def test_settings_refuse_contradictions_and_bad_headers(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--otlp-protocol", "http", "--otlp-endpoint", "tempo:4318"],
        ["--otlp-insecure", "--otlp-certificate", "/ca.pem"],
        ["--otlp-header", "Bearer secret"],
        ["--otlp-live-interval-seconds", "-1"],
        ["--otlp-queue-spans", "0"],
    ):
        with pytest.raises(SystemExit):
            parse_settings(argv, env={})
        error = capsys.readouterr().err
        assert "--otlp-" in error and "secret" not in error
    headers = parse_settings([], env={"PODTRAIL_OTLP_HEADERS": "Authorization=Bearer%20x,a=b"})
    assert headers.otlp_headers == ("Authorization=Bearer x", "a=b")


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.requests: list[tuple[trace_service_pb2.ExportTraceServiceRequest, Any]] = []

    def Export(self, request: Any, context: Any) -> Any:
        self.requests.append((request, dict(context.invocation_metadata())))
        return trace_service_pb2.ExportTraceServiceResponse()


@contextlib.contextmanager
def grpc_receiver() -> Iterator[tuple[Receiver, int]]:
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield receiver, port
    finally:
        server.stop(None)


async def send_through(settings: PodtrailSettings, trace: PodTrace) -> Metrics:
    metrics = Metrics()
    tracing = build_tracing(settings, metrics)
    assert tracing is not None
    exporter = TraceExporter(
        tracing.exporter._exporter, metrics=metrics, batch_seconds=0.05, timeout_seconds=2.0
    )
    task = asyncio.create_task(exporter.run())
    exporter.offer(trace)
    exported = "podtrail_trace_spans_exported_total"
    try:
        await until(lambda: (metrics.registry.get_sample_value(exported) or 0) > 0, 10)
    finally:
        await exporter.close(timeout=2.0)
        await asyncio.gather(task, return_exceptions=True)
    return metrics


async def test_a_trace_reaches_an_otlp_grpc_receiver() -> None:
    trace = scenario_trace("killed_after_grace")
    with grpc_receiver() as (receiver, port):
        settings = settings_for(
            "--otlp-endpoint", f"127.0.0.1:{port}", "--otlp-insecure", "--otlp-header", "X-Team=a"
        )
        await send_through(settings, trace)
    ((request, metadata),) = receiver.requests
    sent = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(sent) == len(trace.spans)
    assert {s.trace_id for s in sent} == {uuid.UUID(b.UID).bytes}
    assert metadata["x-team"] == "a"


async def test_a_trace_reaches_an_otlp_http_receiver() -> None:
    received: list[tuple[bytes, str | None]] = []

    async def take(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers.get("x-team")))
        return web.Response(
            body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", take)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        settings = settings_for(
            "--otlp-protocol",
            "http",
            "--otlp-endpoint",
            f"http://127.0.0.1:{port}",
            "--otlp-header",
            "x-team=b",
        )
        await send_through(settings, scenario_trace("graceful"))
    finally:
        await runner.cleanup()
    ((body, team),) = received
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    assert request.resource_spans[0].scope_spans[0].scope.name == "podtrail"
    assert team == "b"


async def test_an_unreachable_collector_costs_a_bounded_time() -> None:
    with grpc_receiver() as (_, port):
        pass  # the port is free again: nothing listens there
    settings = settings_for(
        "--otlp-endpoint", f"127.0.0.1:{port}", "--otlp-insecure", "--otlp-timeout-seconds", "1"
    )
    tracing = build_tracing(settings, Metrics())
    assert tracing is not None
    sdk = tracing.exporter._exporter
    started = real_time.monotonic()
    trace = synthetic(1, 2)
    spans = readable_spans([(1, trace.resource, s) for s in trace.spans], Resource.get_empty())
    result = await asyncio.to_thread(sdk.export, spans)
    assert result is SpanExportResult.FAILURE
    assert real_time.monotonic() - started < 5
    await asyncio.to_thread(sdk.shutdown)


def test_times_are_whole_nanoseconds() -> None:
    moment = b.at(0) + timedelta(microseconds=123_456)
    assert nanoseconds(moment) % 10**9 == 123_456_000


# --- the runtime's wiring ------------------------------------------------------------------


class Journaled(handlers.NamedTasks):
    """A runtime whose parts say what is done to them, in order."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.settings = PodtrailSettings()
        self.kube = self
        self.writer = self
        self.tracing = Tracing(
            cast(TraceExporter, self), cast(TraceFeed, None), live_interval_seconds=60.0
        )
        self.tasks = {}
        for name in ("pods-all", handlers.WRITER_TASK, handlers.TRACES_TASK, "trace-live"):
            self.spawn(name, self._loop(name))

    async def _loop(self, name: str) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.journal.append(f"{name} stopped")
            raise

    async def flush_all(self, timeout: float) -> list[tuple[str, str]]:
        self.journal.append("records flushed")
        return []

    def announce_ended(self) -> None:
        self.journal.append("ends handed over")

    async def close(self, timeout: float | None = None) -> None:
        self.journal.append("closed" if timeout is None else f"traces closed within {timeout:g} s")


async def test_shutdown_hands_the_last_ends_over_then_gives_the_traces_their_time() -> None:
    journal: list[str] = []
    runtime = Journaled(journal)
    await asyncio.sleep(0)
    await handlers._stop_runtime(cast(handlers.Runtime, runtime))
    assert journal == [
        "pods-all stopped",
        "trace-live stopped",
        "records flushed",
        "closed",  # the writer
        "ends handed over",
        f"traces closed within {handlers.TRACE_FLUSH_SECONDS:g} s",
        "record-writer stopped",
        "trace-exporter stopped",
        "closed",  # the API connection
    ]
