"""The status writer against an in-memory API: coalescing, flushing, conflicts, failures."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import heapq
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from podtrail import core
from podtrail.shell import kube
from podtrail.shell.backoff import Backoff
from podtrail.shell.metrics import Metrics
from podtrail.shell.persist import RecordWriter
from podtrail.shell.settings import PodtrailSettings
from podtrail.shell.sweep import sweep_once
from tests.unit import builders as b

NS, NAME = b.NAMESPACE, b.POD
OWN = {  # the operator's labels for the builders' pod (a ReplicaSet's, web-<hash>, on worker-1)
    "podtrail.io/owner-kind": "Deployment",
    "podtrail.io/owner-name": "web",
    "podtrail.io/node": "worker-1",
}


class FakeTime:
    """A monotonic clock and a sleep that only move when a test advances them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = 0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sequence += 1
        heapq.heappush(self._sleepers, (self.now + seconds, self._sequence, future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time on, waking each sleeper at its own deadline, in order."""
        target = self.now + seconds
        await turn()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self.now = max(self.now, deadline)
            future.set_result(None)
            await turn()
        self.now = target
        await turn()


async def turn(times: int = 40) -> None:
    """Let every ready task run (no time passes)."""
    for _ in range(times):
        await asyncio.sleep(0)


class FakeStore:
    """Records in memory with resourceVersions, like the API server keeps them.

    `fail_next` fails the next create or status write once each; `failing` fails every one
    (until changed); `hanging` makes every call about those records wait for ever; `attempts`
    notes (call, time) of every create and status write.
    """

    def __init__(self, time: FakeTime | None = None) -> None:
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.calls: list[str] = []
        self.fail_next: list[Exception] = []
        self.failing: Exception | None = None
        self.failing_deletes: dict[str, Exception] = {}
        self.hanging: set[tuple[str, str]] = set()
        self.gone_namespaces: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self.event_failure: Exception | None = None
        self.attempts: list[tuple[str, float]] = []
        self.time = time

    def _bump(self, record: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        record["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(record)

    async def _enter(self, call: str, namespace: str, name: str) -> None:
        self.calls.append(call)
        if call in ("create", "status"):
            self.attempts.append((call, self.time.now if self.time else 0.0))
        if (namespace, name) in self.hanging:
            await asyncio.get_running_loop().create_future()  # never answered
        if call in ("create", "status"):
            if self.fail_next:
                raise self.fail_next.pop(0)
            if self.failing is not None:
                raise self.failing

    async def get_record(self, namespace: str, name: str) -> dict[str, Any] | None:
        await self._enter("get", namespace, name)
        record = self.records.get((namespace, name))
        return copy.deepcopy(record) if record else None

    async def create_record(
        self, namespace: str, name: str, labels: Mapping[str, str]
    ) -> dict[str, Any]:
        await self._enter("create", namespace, name)
        if namespace in self.gone_namespaces:
            raise kube.NamespaceGoneError(namespace)
        if (namespace, name) in self.records:
            raise kube.AlreadyExistsError(name)
        record = {
            "metadata": {
                "namespace": namespace,
                "name": name,
                "uid": f"uid-{self.version}",
                "labels": dict(labels),
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "generation": 1,
            },
            "spec": {"podName": name},
        }
        self.records[(namespace, name)] = record
        return self._bump(record)

    async def replace_record_status(
        self, namespace: str, name: str, resource_version: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        await self._enter("status", namespace, name)
        record = self.records.get((namespace, name))
        if record is None:
            raise kube.NotFoundError(name)
        if record["metadata"]["resourceVersion"] != resource_version:
            raise kube.ConflictError(name)
        record["status"] = copy.deepcopy(dict(status))
        return self._bump(record)

    async def patch_record_labels(
        self, namespace: str, name: str, changes: Mapping[str, str | None], resource_version: str
    ) -> dict[str, Any]:
        await self._enter("labels", namespace, name)
        record = self.records[(namespace, name)]
        if record["metadata"]["resourceVersion"] != resource_version:
            raise kube.ConflictError(name)
        labels = dict(record["metadata"].get("labels") or {})
        labels.update(changes)
        record["metadata"]["labels"] = {k: v for k, v in labels.items() if v is not None}
        return self._bump(record)

    async def delete_record(self, namespace: str, name: str, uid: str) -> None:
        await self._enter("delete", namespace, name)
        if name in self.failing_deletes:
            raise self.failing_deletes[name]
        record = self.records.get((namespace, name))
        if record is not None and record["metadata"]["uid"] == uid:
            del self.records[(namespace, name)]

    async def post_record_event(
        self,
        namespace: str,
        name: str,
        uid: str,
        reason: str,
        message: str,
        type: str = "Warning",
    ) -> None:
        self.calls.append("event")
        if self.event_failure is not None:
            raise self.event_failure
        self.events.append(
            {
                "namespace": namespace,
                "name": name,
                "uid": uid,
                "reason": reason,
                "message": message,
                "type": type,
                "at": self.time.now if self.time else 0.0,
            }
        )

    def status(self, name: str = NAME, *, marks: bool = False) -> dict[str, Any]:
        """The stored status; without the label marks unless asked (the core alone has none)."""
        status: dict[str, Any] = copy.deepcopy(self.records[(NS, name)].get("status") or {})
        if not marks:
            (status.get("tracking") or {}).pop("labels", None)
        return status

    def labels(self, name: str = NAME) -> dict[str, str]:
        labels: dict[str, str] = self.records[(NS, name)]["metadata"].get("labels") or {}
        return labels


def clock() -> datetime:
    return datetime(2026, 1, 1, 0, 5, tzinfo=UTC)


@dataclasses.dataclass
class Harness:
    store: FakeStore
    writer: RecordWriter
    time: FakeTime
    metrics: Metrics

    async def settle(self, seconds: float = 0.6) -> None:
        await self.time.advance(seconds)
        assert self.writer.pending_count() == 0

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def steady_backoff() -> Backoff:
    return Backoff(jitter=lambda: 1.0)  # no jitter: delays of exactly 0.5, 1, 2 … 30 s


def make_writer(store: FakeStore, time: FakeTime, metrics: Metrics, **options: Any) -> RecordWriter:
    settings: dict[str, Any] = {
        "limits": core.Limits(),
        "window_seconds": 0.2,
        "concurrency": 4,
        "metrics": metrics,
        "clock": clock,
        "monotonic": time.monotonic,
        "sleep": time.sleep,
        "backoff": steady_backoff,
    } | options
    return RecordWriter(store, **settings)


@contextlib.asynccontextmanager
async def running(**options: Any) -> AsyncIterator[Harness]:
    time = FakeTime()
    store = FakeStore(time)
    metrics = Metrics()
    writer = make_writer(store, time, metrics, **options)
    task = asyncio.create_task(writer.run())
    try:
        yield Harness(store, writer, time, metrics)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await writer.close()


@pytest.fixture
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with running(window_seconds=getattr(request, "param", 0.2)) as made:
        yield made


def pending_pod() -> dict[str, Any]:
    return b.pod(phase="Pending", conditions=[b.condition("PodScheduled", "True", 1)])


def running_pod() -> dict[str, Any]:
    return b.pod(
        phase="Running",
        statuses=[b.running("app", started_at=10, ready=True)],
        conditions=b.running_conditions(),
    )


def finished_pod() -> dict[str, Any]:
    return b.pod(
        phase="Succeeded",
        statuses=[b.terminated("app", exit_code=0, started_at=10, finished_at=20)],
        conditions=b.running_conditions(),
    )


def expected_status(*raws: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for raw in raws:
        status = core.advance(status, core.observe_pod(raw), now=clock()).status
    return status


async def test_a_new_record_is_created_at_once_and_later_changes_wait_for_the_window(
    harness: Harness,
) -> None:
    store, writer = harness.store, harness.writer
    assert writer.submit(core.observe_pod(pending_pod()), labels={"app": "web"})
    await harness.time.advance(0.1)
    # Created at once: an operator killed now leaves a record the next one completes.
    assert store.calls == ["create", "status"]
    assert store.status() == expected_status(pending_pod())
    assert store.labels() == {"app": "web"} | OWN, "the pod's labels and the operator's"
    assert writer.submit(core.observe_pod(running_pod()), labels={"app": "web"})
    await harness.time.advance(0.1)
    assert store.calls == ["create", "status"], "the window is still open"
    await harness.settle()
    assert store.calls == ["create", "status", "status"]
    assert store.status() == expected_status(pending_pod(), running_pod())


async def test_seeing_the_same_pod_again_writes_nothing(harness: Harness) -> None:
    store, writer = harness.store, harness.writer
    writer.submit(core.observe_pod(running_pod()), labels={"app": "web"})
    await harness.settle()
    calls = list(store.calls)
    assert writer.submit(core.observe_pod(running_pod()), labels={"app": "web"}) == ()
    await harness.settle()
    assert store.calls == calls


@pytest.mark.parametrize("harness", [30.0], indirect=True)
async def test_terminal_facts_are_written_at_once(harness: Harness) -> None:
    store, writer = harness.store, harness.writer
    writer.submit(core.observe_pod(pending_pod()))
    await harness.time.advance(0.3)  # the record is created at once
    writer.submit(core.observe_pod(running_pod()))
    await harness.time.advance(0.3)
    assert store.calls == ["create", "status"], "a 30 s window holds the running pod back"
    assert writer.pending_count() == 1
    writer.submit(core.PodGone(NS, NAME, b.UID, clock(), True))
    await harness.settle(0.0)
    assert (store.status().get("times") or {}).get("deleted")


@pytest.mark.parametrize("harness", [30.0], indirect=True)
async def test_shutdown_writes_what_is_pending(harness: Harness) -> None:
    store, writer = harness.store, harness.writer
    writer.submit(core.observe_pod(running_pod()))
    assert await writer.flush_all() == []
    assert store.status() == expected_status(running_pod())


async def test_a_conflict_reapplies_the_window_on_the_fresh_status(harness: Harness) -> None:
    store, writer = harness.store, harness.writer
    writer.submit(core.observe_pod(running_pod()))
    await harness.settle()
    # Someone else (another replica, a user) wrote the record meanwhile: our version is stale.
    other = store.records[(NS, NAME)]
    other["status"] = expected_status(running_pod(), finished_pod())
    store._bump(other)
    writer.submit(core.observe_pod(finished_pod()))
    writer.submit(core.PodGone(NS, NAME, b.UID, clock(), True))
    await harness.settle()
    assert "get" in store.calls
    assert store.status()["outcome"] == "Succeeded"
    keys = b.timeline_keys(store.status())
    assert len(keys) == len(set(keys)), "re-applying the window adds nothing twice"


async def test_a_failed_write_is_retried_and_loses_nothing(harness: Harness) -> None:
    store, writer = harness.store, harness.writer
    store.fail_next = [RuntimeError("apiserver unavailable")]
    writer.submit(core.observe_pod(running_pod()))
    await harness.settle(1.0)
    assert store.calls.count("create") == 2
    assert store.status() == expected_status(running_pod())


async def test_a_record_deleted_under_the_writer_is_created_again(harness: Harness) -> None:
    store, writer = harness.store, harness.writer
    writer.submit(core.observe_pod(running_pod()))
    await harness.settle()
    del store.records[(NS, NAME)]
    writer.submit(core.observe_pod(finished_pod()))
    await harness.settle()
    assert store.status() == expected_status(running_pod(), finished_pod())


async def test_the_sweep_deletes_records_whose_retention_passed(harness: Harness) -> None:
    store, writer = harness.store, harness.writer
    writer.submit(core.observe_pod(finished_pod()))
    writer.submit(core.PodGone(NS, NAME, b.UID, clock(), True))
    await harness.settle()
    settings = PodtrailSettings(retention_seconds=60)
    early = await sweep_once(store, writer, settings, Metrics(), clock() + timedelta(seconds=59))
    assert early == [] and (NS, NAME) in store.records
    late = await sweep_once(store, writer, settings, Metrics(), clock() + timedelta(seconds=60))
    assert [r.reason for r in late] == ["retention"]
    assert (NS, NAME) not in store.records
    assert writer.get(NS, NAME) is None


async def test_the_sweep_keeps_the_record_of_a_live_pod(harness: Harness) -> None:
    store, writer = harness.store, harness.writer
    writer.submit(core.observe_pod(running_pod()))
    await harness.settle()
    settings = PodtrailSettings(retention_seconds=0, max_records=1, max_records_per_namespace=1)
    assert await sweep_once(store, writer, settings, Metrics(), clock() + timedelta(days=9)) == []
    assert (NS, NAME) in store.records


async def test_a_record_in_a_namespace_being_deleted_is_given_up(harness: Harness) -> None:
    store, writer = harness.store, harness.writer
    store.gone_namespaces.add(NS)
    writer.submit(core.observe_pod(running_pod()))
    await harness.settle(1.0)
    assert store.calls == ["create"], "no retry loop against a namespace that is gone"
    assert writer.get(NS, NAME) is None
