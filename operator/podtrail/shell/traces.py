"""Pods' lives as OpenTelemetry traces, sent over OTLP to a collector (only with --otlp-endpoint).

Two parts. `TraceFeed` chooses what goes and when: a removed pod's whole life once, when the
writer hands over its settled record (`RecordWriter`'s `on_ended` hook: shortly after the
removal, once the late Events are in); and, every --otlp-live-interval-seconds, the spans of
live pods that have closed (a container run that ended, the scheduling, the sandbox), each
once. A live pod's root span, and any span still open, wait for the pod's end. `TraceExporter`
sends: a bounded queue of spans that one task drains in batches, handing each batch to the
OpenTelemetry SDK's OTLP exporter in a worker thread (the SDK's `export` blocks; the SDK's side,
spans and exporter, is podtrail.shell.otlp).

A collector that is down or slow costs dropped spans, counted, and nothing else:
- the queue holds at most `max_spans`; a trace (or a live pod's closed spans) offered when it
  does not fit is dropped whole, the newest go: what is queued keeps its order and no trace
  is cut in the queue;
- one export at a time, bounded by the SDK's timeout (its own retries included) and a watchdog
  over it; a batch gets `attempts` tries, then is dropped; after a failure the next try waits
  a backoff (0.5 s doubling to 30 s) that carries over to the next batches until one succeeds;
- at shutdown what is queued gets `close`'s time bound, one try a batch, and the rest is
  dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from podtrail import core
from podtrail.core.trace import PodTrace, Span, pod_trace, trace_id
from podtrail.shell.backoff import Backoff
from podtrail.shell.logs import get_logger
from podtrail.shell.metrics import Metrics
from podtrail.shell.otlp import Queued, otlp_exporter, readable_spans
from podtrail.shell.settings import PodtrailSettings, record_limits

log = get_logger(__name__)

QUEUE_SPANS = 20_000
"""Spans queued at most (--otlp-queue-spans)."""
BATCH_SPANS = 512
"""Spans in one export at most (the SDK's batch processor's default)."""
BATCH_SECONDS = 5.0
"""How long a batch waits to fill before it goes anyway."""
ATTEMPTS = 3
"""Tries of one batch before it is dropped."""
WATCHDOG_SLACK_SECONDS = 5.0
"""Past the SDK's own timeout, an export is given up (its thread is left to end by itself)."""
SHUTDOWN_SECONDS = 2.0
"""The most the SDK exporter's shutdown (closing its channel) is waited for."""
LOG_INTERVAL_SECONDS = 60.0
"""One log line per kind of trouble in this time, with the count since the last."""
LIVE_INTERVAL_SECONDS = 60.0
MAX_LIVE_PODS = 100_000
"""Live pods whose sent spans are remembered (more than the records an operator keeps)."""
REMEMBERED_ENDS = 10_000
"""Ended pods remembered, so that a life is sent once even if its end is handed over again."""
PASS_CHUNK = 20
"""Records a live pass handles between two yields to the event loop (a trace: some 200 µs)."""
CONVERT_CHUNK = 64
"""Spans made into SDK spans between two yields to the event loop (some 40 µs each)."""

LiveRecord = tuple[str, str, core.Record]
"""A record as a live pass sees it: namespace, name, the record."""


class SpanSink(Protocol):
    """What the feed offers traces to (TraceExporter)."""

    def offer(
        self, trace: PodTrace, spans: Sequence[Span] | None = None, *, again: bool = False
    ) -> bool:
        """Queue the trace's spans (or these of them); False if they were not."""


# --- The exporter --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Quiet:
    """A repeated trouble said at most once per interval, with how much happened meanwhile."""

    interval: float
    said_at: float | None = None
    count: int = 0

    def note(self, now: float, count: int) -> int | None:
        """Add `count`; the total to say now, or None while it is too soon to say it again."""
        self.count += count
        if self.said_at is not None and now - self.said_at < self.interval:
            return None
        total, self.count, self.said_at = self.count, 0, now
        return total


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a thread's outcome as seen (one given up on may fail after nobody waits for it)."""
    if not future.cancelled():
        future.exception()


class TraceExporter:
    """A bounded queue of spans, and the task (`run`) that exports them in batches.

    See the module's docstring for the bounds. `monotonic` and `sleep` are one clock (tests
    pass a fake clock's); `backoff` makes the delays between failed tries.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        metrics: Metrics,
        max_spans: int = QUEUE_SPANS,
        batch_spans: int = BATCH_SPANS,
        batch_seconds: float = BATCH_SECONDS,
        attempts: int = ATTEMPTS,
        timeout_seconds: float = 10.0,
        resource: Resource | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff: Callable[[], Backoff] = Backoff,
        log_interval_seconds: float = LOG_INTERVAL_SECONDS,
    ) -> None:
        self._exporter = exporter
        self._metrics = metrics
        self._max_spans = max(1, max_spans)
        self._batch_spans = max(1, batch_spans)
        self._batch_seconds = batch_seconds
        self._attempts = max(1, attempts)
        self._watchdog = timeout_seconds + WATCHDOG_SLACK_SECONDS
        self._resource = resource if resource is not None else Resource.create({})
        self._monotonic = monotonic
        self._sleep = sleep
        self._backoff = backoff()
        self._queue: deque[Queued] = deque()
        self._wakeup = asyncio.Event()  # an offer, or the close
        self._closed = asyncio.Event()
        self._runner: asyncio.Task[Any] | None = None
        self._thread: asyncio.Future[SpanExportResult] | None = None
        self._delay = 0.0  # before the next try: the backoff after a failure, else 0
        self._failing = False
        self._last_error: str | None = None
        self._full_log = _Quiet(log_interval_seconds)
        self._failed_log = _Quiet(log_interval_seconds)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def exporting(self) -> bool:
        """Whether an export's thread still runs (one given up on included)."""
        return self._thread is not None and not self._thread.done()

    def offer(
        self, trace: PodTrace, spans: Sequence[Span] | None = None, *, again: bool = False
    ) -> bool:
        """Queue the trace's spans, or these of them, whole or not at all; never waits.

        Returns False when they were not queued: they do not all fit in the queue, or the
        exporter is closing. They are then dropped and counted, unless `again` says that the
        caller offers them again later (a live pass): then they are not dropped yet.
        """
        chosen = trace.spans if spans is None else spans
        if not chosen:
            return True
        if self._closed.is_set():
            if not again:
                self._metrics.trace_spans_dropped.labels(reason="shutdown").inc(len(chosen))
            return False
        if len(self._queue) + len(chosen) > self._max_spans:
            if again:
                return False
            self._metrics.trace_spans_dropped.labels(reason="queue_full").inc(len(chosen))
            dropped = self._full_log.note(self._monotonic(), len(chosen))
            if dropped is not None:
                log.warning(
                    "trace spans dropped: the export queue is full",
                    spans=dropped,
                    queue_spans=self._max_spans,
                    exporting=not self._failing,
                    error=self._last_error,
                )
            return False
        self._queue.extend((trace.trace_id, trace.resource, span) for span in chosen)
        self._metrics.trace_queue.set(len(self._queue))
        self._wakeup.set()
        return True

    async def run(self) -> None:
        """Export batches until closed and empty, or cancelled."""
        self._runner = asyncio.current_task()
        while await self._gather():
            count = min(self._batch_spans, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            self._metrics.trace_queue.set(len(self._queue))
            try:
                await self._deliver(batch)
            except asyncio.CancelledError:
                self._metrics.trace_spans_dropped.labels(reason="shutdown").inc(len(batch))
                raise
            except Exception as error:  # a batch that cannot even be built: drop it, go on
                log.error("trace batch dropped", spans=len(batch), error=repr(error))
                self._metrics.trace_spans_dropped.labels(reason="export_failed").inc(len(batch))

    async def close(self, timeout: float) -> None:
        """Export what is queued within `timeout` seconds (one try a batch), drop the rest.

        Then the SDK exporter is shut down (its channel closed), waited for a short while.
        `run` returns once the queue is empty; past the bound it is cancelled.
        """
        self._closed.set()
        self._wakeup.set()
        runner = self._runner
        if runner is not None and not runner.done():
            if timeout > 0:
                await self._wait_for(runner, timeout)
            if not runner.done():
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
        if self._queue:
            self._metrics.trace_spans_dropped.labels(reason="shutdown").inc(len(self._queue))
            log.warning("trace spans dropped at shutdown", spans=len(self._queue))
            self._queue.clear()
            self._metrics.trace_queue.set(0)
        shutdown = asyncio.ensure_future(asyncio.to_thread(self._exporter.shutdown))
        shutdown.add_done_callback(_retrieve)
        await self._wait_for(shutdown, SHUTDOWN_SECONDS)

    # --- batches -------------------------------------------------------------------------------

    async def _gather(self) -> bool:
        """Until a batch is full or has waited `batch_seconds`; False once closed and empty."""
        while not self._queue:
            if self._closed.is_set():
                return False
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = self._monotonic() + self._batch_seconds
        while len(self._queue) < self._batch_spans and not self._closed.is_set():
            left = deadline - self._monotonic()
            if left <= 0:
                break
            self._wakeup.clear()
            await self._wait_for(self._wakeup.wait(), left)
        return True

    async def _deliver(self, batch: Sequence[Queued]) -> None:
        """Try a batch up to `attempts` times, backing off between; drop it if none works."""
        spans = await self._convert(batch)
        result = "failed"
        for _ in range(self._attempts):
            if self._delay > 0 and not self._closed.is_set():
                await self._wait_for(self._closed.wait(), self._delay)
            result = await self._export(spans)
            if result == "ok":
                self._succeeded(len(spans))
                return
            self._delay = self._backoff.next_delay()
            if self._closed.is_set():
                break  # at shutdown one try each: the time is for the batches still queued
        self._dropped(len(spans), result)

    async def _convert(self, batch: Sequence[Queued]) -> list[ReadableSpan]:
        """The batch as SDK spans, made in slices: the event loop runs between them."""
        resources: dict[int, Resource] = {}
        spans: list[ReadableSpan] = []
        for start in range(0, len(batch), CONVERT_CHUNK):
            if start:
                await asyncio.sleep(0)
            chunk = batch[start : start + CONVERT_CHUNK]
            spans += readable_spans(chunk, self._resource, resources)
        return spans

    async def _export(self, spans: list[ReadableSpan]) -> str:
        """One try: ok, failed, timeout, or busy (a try given up on still runs in its thread).

        One export thread at most: a thread cannot be stopped, so no other is started while
        one given up on still runs (the SDK's timeout ends it, unless the SDK itself hangs).
        """
        if self.exporting:
            return "busy"
        started = self._monotonic()
        thread = asyncio.ensure_future(asyncio.to_thread(self._exporter.export, spans))
        thread.add_done_callback(_retrieve)
        self._thread = thread
        await self._wait_for(thread, self._watchdog)
        if not thread.done():
            result = "timeout"
            self._last_error = f"no answer within {self._watchdog:g} s"
        else:
            self._metrics.trace_export_seconds.observe(max(0.0, self._monotonic() - started))
            result = self._result_of(thread)
        self._metrics.trace_exports.labels(result=result).inc()
        return result

    def _result_of(self, thread: asyncio.Future[SpanExportResult]) -> str:
        error = thread.exception()
        if error is not None:
            self._last_error = repr(error)[:300]
            return "failed"
        if thread.result() is SpanExportResult.SUCCESS:
            return "ok"
        self._last_error = "the exporter reported a failure (its log says why)"
        return "failed"

    def _succeeded(self, count: int) -> None:
        self._metrics.trace_spans_exported.inc(count)
        self._backoff.reset()
        self._delay = 0.0
        if self._failing:
            self._failing = False
            log.info("trace export works again", spans=count)

    def _dropped(self, count: int, result: str) -> None:
        self._failing = True
        self._metrics.trace_spans_dropped.labels(reason="export_failed").inc(count)
        dropped = self._failed_log.note(self._monotonic(), count)
        if dropped is not None:
            log.warning(
                "trace spans dropped: the collector did not take them",
                spans=dropped,
                attempts=self._attempts,
                result=result,
                error=self._last_error,
                retry_in_seconds=round(self._delay, 1),
            )

    async def _wait_for(self, awaitable: Awaitable[Any], seconds: float) -> None:
        """Until `awaitable` is done or `seconds` pass on the exporter's clock.

        A task or future is left running when the time is up; a bare coroutine is cancelled.
        """
        work = asyncio.ensure_future(awaitable)
        timer = asyncio.ensure_future(self._sleep(max(0.0, seconds)))
        try:
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if work is not awaitable and not work.done():
                work.cancel()


# --- What is sent, and when ----------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Sent:
    """A live pod's spans already offered, and its record's mark when they were."""

    mark: tuple[int, int]
    spans: set[int]


def _mark(record: core.Record) -> tuple[int, int]:
    """Changes whenever an entry joins the timeline: the only way a span can close."""
    return (len(record.timeline), record.timeline_dropped)


class TraceFeed:
    """Offers each removed pod's life once, and live pods' closed spans once each.

    `ended` is the writer's `on_ended` hook; `follow_live` the task of the live passes.
    `clock` dates the end of a life not over yet (the root span, never sent before the end).
    """

    def __init__(
        self,
        sink: SpanSink,
        *,
        limits: core.Limits,
        interval_seconds: float = LIVE_INTERVAL_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_live_pods: int = MAX_LIVE_PODS,
        remembered_ends: int = REMEMBERED_ENDS,
        chunk: int = PASS_CHUNK,
    ) -> None:
        self._sink = sink
        self._limits = limits
        self._interval = interval_seconds
        self._clock = clock
        self._sleep = sleep
        self._max_live = max(1, max_live_pods)
        self._max_ends = max(1, remembered_ends)
        self._chunk = max(1, chunk)
        self._live: OrderedDict[int, _Sent] = OrderedDict()
        self._ended: OrderedDict[int, None] = OrderedDict()

    def ended(self, namespace: str, name: str, record: core.Record) -> None:
        """A removed pod's settled record: its life goes once, less what went while it lived.

        Never raises: the writer calls it.
        """
        try:
            self._offer_end(namespace, name, record)
        except Exception as error:
            log.warning("pod's trace not made", namespace=namespace, pod=name, error=repr(error))

    async def follow_live(self, records: Callable[[], Iterable[LiveRecord]]) -> None:
        """A live pass every interval, over the records `records()` gives; until cancelled."""
        while True:
            await self._sleep(self._interval)
            try:
                await self.live_pass(records())
            except Exception as error:  # the next pass tries again
                log.warning("live pods' spans not offered", error=repr(error))

    async def live_pass(self, records: Iterable[LiveRecord]) -> int:
        """Offer the closed spans of live pods not offered before; return how many were.

        Yields to the event loop every `chunk` records: a pass over many records is spread.
        """
        seen: set[int] = set()
        offered = 0
        for count, (namespace, name, record) in enumerate(records, 1):
            if count % self._chunk == 0:
                await asyncio.sleep(0)
            tid = trace_id(record.pod_uid, namespace, name, record.created)
            seen.add(tid)  # a removed pod's too: its end, soon, subtracts what went
            if record.removal is None and tid not in self._ended:
                offered += self._offer_closed(tid, namespace, name, record)
        for tid in [tid for tid in self._live if tid not in seen]:
            del self._live[tid]  # its record is gone (deleted, or another pod's now)
        return offered

    def _offer_end(self, namespace: str, name: str, record: core.Record) -> None:
        trace = pod_trace(record, namespace, name, now=self._clock(), limits=self._limits)
        if trace is None or trace.trace_id in self._ended:
            return
        self._ended[trace.trace_id] = None
        while len(self._ended) > self._max_ends:
            self._ended.popitem(last=False)
        sent = self._live.pop(trace.trace_id, None)
        spans = trace.spans
        if sent is not None:
            spans = tuple(span for span in spans if span.span_id not in sent.spans)
        self._sink.offer(trace, spans)

    def _offer_closed(self, tid: int, namespace: str, name: str, record: core.Record) -> int:
        """Offer a live pod's spans that closed since its last pass; how many were offered.

        Closed: ending before the root does (an open span is cut at the root's end, now).
        """
        mark = _mark(record)
        sent = self._live.get(tid)
        if sent is not None and sent.mark == mark:
            self._live.move_to_end(tid)
            return 0
        trace = pod_trace(record, namespace, name, now=self._clock(), limits=self._limits)
        if trace is None:
            return 0
        done = sent.spans if sent is not None else set()
        end = trace.root.end
        closed = [s for s in trace.spans[1:] if s.end < end and s.span_id not in done]
        if closed and not self._sink.offer(trace, closed, again=True):
            return 0  # not taken (a full queue): the next pass offers them again
        if sent is None:
            sent = self._live[tid] = _Sent(mark, set())
        sent.mark = mark
        sent.spans.update(span.span_id for span in closed)
        self._live.move_to_end(tid)
        while len(self._live) > self._max_live:
            self._live.popitem(last=False)
        return len(closed)


# --- Assembly ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Tracing:
    """The exporter and its feed, as the runtime runs them."""

    exporter: TraceExporter
    feed: TraceFeed
    live_interval_seconds: float


def build_tracing(settings: PodtrailSettings, metrics: Metrics) -> Tracing | None:
    """The trace exporter the settings ask for; None when off, or when it cannot be made.

    An exporter that cannot be made (an unreadable CA bundle) is logged and left off: the
    records matter more than their traces, and the operator runs on without them.
    """
    if not settings.otlp_endpoint:
        return None
    try:
        sdk_exporter = otlp_exporter(settings)
    except Exception as error:
        log.error(
            "traces off: the OTLP exporter cannot be made",
            endpoint=settings.otlp_endpoint,
            protocol=settings.otlp_protocol,
            error=repr(error),
        )
        return None
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # The SDK logs a warning per retry of every failed export; its errors stay, and the
        # exporter's own rate-limited lines say the rest.
        logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    exporter = TraceExporter(
        sdk_exporter,
        metrics=metrics,
        max_spans=settings.otlp_queue_spans,
        timeout_seconds=settings.otlp_timeout_seconds,
    )
    feed = TraceFeed(
        exporter,
        limits=record_limits(settings),
        interval_seconds=settings.otlp_live_interval_seconds,
    )
    log.info(
        "traces on",
        endpoint=settings.otlp_endpoint,
        protocol=settings.otlp_protocol,
        live_interval_seconds=settings.otlp_live_interval_seconds,
        queue_spans=settings.otlp_queue_spans,
    )
    return Tracing(exporter, feed, settings.otlp_live_interval_seconds)
