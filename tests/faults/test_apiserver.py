"""The API server stopped for 30 s and started again, then frozen (SIGSTOP) for 60 s.

Exclusive: it runs alone, after every other scenario, and always leaves the API server running
and ready (try/finally). Throughout, a sampler asks the operator's /healthz and /metrics once a
second: the operator must keep answering, back off while the server is away (its request and
stream-restart counters say how often it tried), be back within 10 s of the server's return
(time from /readyz ok to the first fact of a pod created after the return), and have lost and
doubled nothing. While the server is stopped, etcd's history is compacted (what the server
does every 5 minutes), so every stream resumes from a version that is gone: 410 Gone, a relist,
and still nothing doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tests.e2e.support import container, pod
from tests.faults.conftest import plays
from tests.faults.support import (
    ApiServer,
    FaultHarness,
    Obj,
    compact_etcd,
    describe,
    duplicate_keys,
    record_figures,
    status_of,
    timeline,
)
from tests.support.kube import wait_for
from tests.support.operator import MetricKey, OperatorProcess, has_metric, metric_sum

STOP_SECONDS = 30
FREEZE_SECONDS = 60
RECOVERY_BUDGET_SECONDS = 10
# What "backing off" means here: a stream retrying at most this often per minute while the
# server is away (a client without backoff retries many times a second).
MAX_TRIES_PER_STREAM_MINUTE = 30
STREAMS = ("pods", "events", "endpointslices", "records")

T = TypeVar("T")


@dataclass
class Sample:
    at: float
    health: int | None
    health_seconds: float
    metrics: dict[MetricKey, float] | None
    metrics_seconds: float


@dataclass
class Sampler:
    """Asks the operator's own endpoints once a second; never the API server."""

    operator: OperatorProcess
    samples: list[Sample] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="sampler")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        while True:
            began = time.monotonic()
            health, health_seconds = await self._timed(self.operator.healthz(timeout=5))
            metrics, metrics_seconds = await self._timed(self.operator.metrics(timeout=5))
            self.samples.append(Sample(began, health, health_seconds, metrics, metrics_seconds))
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))

    @staticmethod
    async def _timed(call: Awaitable[T]) -> tuple[T | None, float]:
        began = time.monotonic()
        try:
            return await call, time.monotonic() - began
        except Exception:
            return None, time.monotonic() - began

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]


async def retried(call: Callable[[], Awaitable[T]], attempts: int = 20) -> T:
    """An API call just after the server's return: its first tries may meet a dead connection."""
    for attempt in range(attempts):
        try:
            return await call()
        except Exception:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


def deltas(
    before: dict[MetricKey, float], after: dict[MetricKey, float], name: str
) -> dict[str, float]:
    """Per label set, how much a counter grew (labels shown as k=v,...)."""
    grown: dict[str, float] = {}
    for key, value in after.items():
        if key[0] != name:
            continue
        change = value - before.get(key, 0.0)
        if change:
            grown[",".join(f"{k}={v}" for k, v in key[1])] = change
    return grown


async def first_fact_of_new_pod(h: FaultHarness, namespace: str, name: str) -> float:
    """Create a pod now; the moment its record first holds a fact (monotonic clock)."""
    body = pod(name, container("app", "sleep 3600"), grace=1)
    await retried(lambda: h.create_pod(namespace, body))
    await h.wait_record(
        namespace, name, lambda r: bool(timeline(r)), timeout=120, what="a first fact", interval=0.2
    )
    return time.monotonic()


@dataclass
class Subject:
    """One operator under the outage, in its own namespace, with its own sampler."""

    name: str
    namespace: str
    operator: OperatorProcess
    sampler: Sampler


async def prepare(h: FaultHarness, name: str, *options: str, lease: bool) -> Subject:
    namespace = await h.namespace(f"apiserver-{name}")
    operator = h.operator(f"apiserver-{name}", [namespace], *options, lease=lease)
    await operator.start()
    for index in range(3):
        body = pod(f"steady-{index}", container("app", "sleep 3600"), grace=1)
        await h.create_pod(namespace, body)
    for index in range(3):
        await h.wait_record(
            namespace, f"steady-{index}", lambda r: status_of(r).get("phase") == "Running"
        )
    sampler = Sampler(operator)
    sampler.start()
    return Subject(name, namespace, operator, sampler)


async def one_outage(
    h: FaultHarness, subjects: list[Subject], server: ApiServer, mode: str
) -> dict[str, Any]:
    """Stop (or freeze) the API server for its time, bring it back, measure each return."""
    seconds = STOP_SECONDS if mode == "stop" else FREEZE_SECONDS
    for subject in subjects:  # a pod that ends while the server is away
        body = pod(f"ender-{mode}", container("app", "sleep 12; exit 0"), restart="Never")
        await h.create_pod(subject.namespace, body)
    for subject in subjects:
        await h.wait_record(
            subject.namespace, f"ender-{mode}", lambda r: status_of(r).get("phase") == "Running"
        )
    before = [await s.operator.metrics() for s in subjects]
    down_at = time.monotonic()
    compacted = None
    if mode == "stop":
        await server.stop()
        compacted = await compact_etcd()  # every stream resumes from a compacted version
    else:
        server.freeze()
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - down_at)))
    during = [await s.operator.metrics() for s in subjects]
    back_at = time.monotonic()
    if mode == "stop":
        server.start()
    else:
        server.thaw()
    ready_at = await server.wait_ready()
    facts_at = await asyncio.gather(
        *(first_fact_of_new_pod(h, s.namespace, f"after-{mode}") for s in subjects)
    )
    await asyncio.sleep(15)  # let the streams settle before the after-counters
    after = [await s.operator.metrics() for s in subjects]
    return {
        "mode": mode,
        "compacted": compacted,
        "seconds_down": back_at - down_at,
        "ready_after_return": ready_at - back_at,
        "per": {
            s.name: {
                "recovery": fact_at - ready_at,
                "before": b,
                "during": d,
                "after": a,
                "samples": s.sampler.between(down_at, ready_at),
            }
            for s, fact_at, b, d, a in zip(subjects, facts_at, before, during, after)
        },
    }


async def apiserver_outages(h: FaultHarness) -> dict[str, Any]:
    # As deployed (leader election on), and without it, to see the streams' own relist: a
    # single replica that loses its Lease in an outage restarts its streams from a fresh list.
    subjects = [
        await prepare(h, "lease", lease=True),
        await prepare(h, "nolease", lease=False),
    ]
    server = ApiServer(h.kubectl, h.kubeconfig)
    outages = []
    try:
        for mode in ("stop", "freeze"):
            outages.append(await one_outage(h, subjects, server, mode))
    finally:
        await server.ensure_running()
        for subject in subjects:
            await subject.sampler.stop()
    return {
        "outages": outages,
        "lost": {s.name: await unmatched_records(h, s.namespace) for s in subjects},
        "records": {s.name: await retried(lambda s=s: h.records(s.namespace)) for s in subjects},
        "alive": {s.name: s.operator.running for s in subjects},
    }


async def unmatched_records(h: FaultHarness, namespace: str) -> list[str]:
    """Pods the API still shows whose record disagrees (phase, outcome) after a grace of 60 s."""
    problems: list[str] = []

    async def all_match() -> bool:
        problems.clear()
        pods = await retried(lambda: h.pods(namespace))
        records = {r["metadata"]["name"]: r for r in await retried(lambda: h.records(namespace))}
        for found in pods:
            name = found["metadata"]["name"]
            record = records.get(name)
            phase = status_of(found).get("phase")
            if record is None or status_of(record).get("phase") != phase:
                problems.append(f"{name}: pod {phase}, record {describe(record)}")
            elif phase == "Succeeded" and status_of(record).get("outcome") != "Succeeded":
                problems.append(
                    f"{name}: Succeeded, record outcome {status_of(record).get('outcome')}"
                )
        return not problems

    with contextlib.suppress(AssertionError):
        await wait_for(all_match, timeout=60, what="records to match their pods", interval=2)
    return list(problems)


def outage_figures(outage: dict[str, Any], name: str) -> dict[str, Any]:
    mine = outage["per"][name]
    before, during, after = mine["before"], mine["during"], mine["after"]
    minutes = outage["seconds_down"] / 60
    requests = deltas(before, during, "podtrail_api_requests_total")
    per_stream = {
        stream: metric_sum(during, "podtrail_stream_restarts_total", stream=stream)
        - metric_sum(before, "podtrail_stream_restarts_total", stream=stream)
        for stream in STREAMS
    }
    samples: list[Sample] = mine["samples"]
    return {
        "seconds down": round(outage["seconds_down"], 1),
        "API requests while down (all calls)": sum(requests.values()),
        "API requests while down, by call and result": requests,
        "stream restarts while down, by stream and cause": deltas(
            before, during, "podtrail_stream_restarts_total"
        ),
        "highest stream restarts per stream per minute": round(
            max(per_stream.values(), default=0) / minutes, 1
        ),
        "requests per stream per minute": round(sum(requests.values()) / len(STREAMS) / minutes, 1),
        "healthz/metrics samples while down": len(samples),
        "healthz unanswered": sum(1 for s in samples if s.health is None),
        "healthz answers other than 200": sum(1 for s in samples if s.health not in (None, 200)),
        "metrics unanswered": sum(1 for s in samples if s.metrics is None),
        "slowest healthz answer (s)": round(max((s.health_seconds for s in samples), default=0), 2),
        "slowest metrics answer (s)": round(
            max((s.metrics_seconds for s in samples), default=0), 2
        ),
        "/readyz ok after the return (s)": round(outage["ready_after_return"], 1),
        "first new fact after /readyz ok (s)": round(mine["recovery"], 1),
        "stream restarts after the return, by stream and cause": deltas(
            during, after, "podtrail_stream_restarts_total"
        ),
    }


def check_outage(outage: dict[str, Any], name: str) -> None:
    figures = outage_figures(outage, name)
    during = outage["per"][name]["during"]
    where = f"{name}, {outage['mode']}: {figures}"
    assert figures["healthz unanswered"] == 0, f"/healthz did not answer: {where}"
    assert figures["metrics unanswered"] == 0, f"/metrics did not answer: {where}"
    assert has_metric(during, "podtrail_api_requests_total"), (
        "podtrail_api_requests_total is not exported: the request counter has not landed"
    )
    assert figures["requests per stream per minute"] <= MAX_TRIES_PER_STREAM_MINUTE, where
    assert (
        figures["highest stream restarts per stream per minute"] <= MAX_TRIES_PER_STREAM_MINUTE
    ), where
    assert figures["first new fact after /readyz ok (s)"] <= RECOVERY_BUDGET_SECONDS, where


TITLES = {
    ("stop", "lease"): "2a. API server stopped (leader election on, as deployed)",
    ("stop", "nolease"): "2b. API server stopped (no leader election)",
    ("freeze", "lease"): "2c. API server frozen (leader election on, as deployed)",
    ("freeze", "nolease"): "2d. API server frozen (no leader election)",
}


@plays(apiserver_outages, exclusive=True)
def test_apiserver_stopped_and_frozen(outcome: dict[str, Any]) -> None:
    duplicates = {
        f"{name}/{r['metadata']['name']}": duplicate_keys(r)
        for name, records in outcome["records"].items()
        for r in records
        if duplicate_keys(r)
    }
    lost = [problem for problems in outcome["lost"].values() for problem in problems]
    for outage in outcome["outages"]:
        for name in outage["per"]:
            figures = outage_figures(outage, name)
            figures["records lost or behind (after 60 s)"] = len(outcome["lost"][name])
            figures["duplicate timeline keys"] = sum(
                len(k) for key, k in duplicates.items() if key.startswith(f"{name}/")
            )
            record_figures(TITLES[(outage["mode"], name)], figures)
    assert all(outcome["alive"].values()), f"an operator exited: {outcome['alive']}"
    assert not lost, "\n".join(lost)
    assert not duplicates, f"duplicate timeline keys: {duplicates}"
    failures = []
    for outage in outcome["outages"]:
        for name in outage["per"]:
            try:
                check_outage(outage, name)
            except AssertionError as error:
                failures.append(str(error))
    assert not failures, "\n".join(failures)


@plays(apiserver_outages, exclusive=True)
def test_streams_relist_after_gone(outcome: dict[str, Any]) -> None:
    stop = next(o for o in outcome["outages"] if o["mode"] == "stop")
    mine = stop["per"]["nolease"]
    gone = {
        stream: metric_sum(
            mine["after"], "podtrail_stream_restarts_total", stream=stream, cause="gone"
        )
        - metric_sum(mine["before"], "podtrail_stream_restarts_total", stream=stream, cause="gone")
        for stream in STREAMS
    }
    records: list[Obj] = outcome["records"]["nolease"]
    record_figures(
        "6. 410 Gone on every stream (etcd compacted while the API server was stopped)",
        {
            "etcd compacted to revision": stop["compacted"],
            "streams restarted with cause gone, by stream (no leader election)": gone,
            "duplicate timeline keys": sum(len(duplicate_keys(r)) for r in records),
            "records lost or behind (after 60 s)": len(outcome["lost"]["nolease"]),
        },
    )
    assert all(gone.values()), (
        "not every stream restarted with cause 'gone' after the compaction and restart: "
        f"{deltas(mine['before'], mine['after'], 'podtrail_stream_restarts_total')}"
    )
    assert not any(duplicate_keys(r) for r in records)
    assert not outcome["lost"]["nolease"], outcome["lost"]["nolease"]
