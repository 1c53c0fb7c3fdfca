"""The status writer against an in-memory API: coalescing, flushing, conflicts, failures."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.unit import builders as b

from podtrail import core
from podtrail.shell import kube
from podtrail.shell.metrics import Metrics
from podtrail.shell.persist import RecordWriter
from podtrail.shell.settings import PodtrailSettings
from podtrail.shell.sweep import sweep_once

NS, NAME = b.NAMESPACE, b.POD


class FakeStore:
    """Records in memory with resourceVersions, like the API server keeps them."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.calls: list[str] = []
        self.fail_next: list[Exception] = []
        self.gone_namespaces: set[str] = set()

    def _bump(self, record: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        record["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(record)

    def _maybe_fail(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    async def get_record(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append("get")
        record = self.records.get((namespace, name))
        return copy.deepcopy(record) if record else None

    async def create_record(
        self, namespace: str, name: str, labels: Mapping[str, str]
    ) -> dict[str, Any]:
        self.calls.append("create")
        self._maybe_fail()
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
            },
            "spec": {"podName": name},
        }
        self.records[(namespace, name)] = record
        return self._bump(record)

    async def replace_record_status(
        self, namespace: str, name: str, resource_version: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.calls.append("status")
        self._maybe_fail()
        record = self.records.get((namespace, name))
        if record is None:
            raise kube.NotFoundError(name)
        if record["metadata"]["resourceVersion"] != resource_version:
            raise kube.ConflictError(name)
        record["status"] = copy.deepcopy(dict(status))
        return self._bump(record)

    async def patch_record_labels(
        self, namespace: str, name: str, labels: Mapping[str, str]
    ) -> dict[str, Any]:
        self.calls.append("labels")
        record = self.records[(namespace, name)]
        record["metadata"]["labels"] = dict(labels)
        return self._bump(record)

    async def delete_record(self, namespace: str, name: str, uid: str) -> None:
        self.calls.append("delete")
        record = self.records.get((namespace, name))
        if record is not None and record["metadata"]["uid"] == uid:
            del self.records[(namespace, name)]

    def status(self) -> dict[str, Any]:
        return self.records[(NS, NAME)].get("status") or {}


def clock() -> datetime:
    return datetime(2026, 1, 1, 0, 5, tzinfo=UTC)


@pytest.fixture
async def store_and_writer(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[FakeStore, RecordWriter]]:
    window = getattr(request, "param", 0.2)
    store = FakeStore()
    writer = RecordWriter(
        store,
        limits=core.Limits(),
        window_seconds=window,
        concurrency=4,
        metrics=Metrics(),
        clock=clock,
    )
    task = asyncio.create_task(writer.run())
    yield store, writer
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


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


async def settle(writer: RecordWriter, seconds: float = 0.6) -> None:
    await asyncio.sleep(seconds)
    assert writer.pending_count() == 0


async def test_observations_in_one_window_make_one_create_and_one_status_write(
    store_and_writer: tuple[FakeStore, RecordWriter],
) -> None:
    store, writer = store_and_writer
    assert writer.submit(core.observe_pod(pending_pod()), labels={"app": "web"})
    assert writer.submit(core.observe_pod(running_pod()), labels={"app": "web"})
    await settle(writer)
    assert store.calls == ["create", "status"]
    assert store.status() == expected_status(pending_pod(), running_pod())
    assert store.records[(NS, NAME)]["metadata"]["labels"] == {"app": "web"}


async def test_seeing_the_same_pod_again_writes_nothing(
    store_and_writer: tuple[FakeStore, RecordWriter],
) -> None:
    store, writer = store_and_writer
    writer.submit(core.observe_pod(running_pod()), labels={"app": "web"})
    await settle(writer)
    calls = list(store.calls)
    assert writer.submit(core.observe_pod(running_pod()), labels={"app": "web"}) == ()
    await settle(writer)
    assert store.calls == calls


@pytest.mark.parametrize("store_and_writer", [30.0], indirect=True)
async def test_terminal_facts_are_written_at_once(
    store_and_writer: tuple[FakeStore, RecordWriter],
) -> None:
    store, writer = store_and_writer
    writer.submit(core.observe_pod(running_pod()))
    await asyncio.sleep(0.3)
    assert "status" not in store.calls, "a 30 s window holds the running pod back"
    assert writer.pending_count() == 1
    writer.submit(core.PodGone(NS, NAME, b.UID, clock(), True))
    await settle(writer, 0.3)
    assert (store.status().get("times") or {}).get("deleted")


@pytest.mark.parametrize("store_and_writer", [30.0], indirect=True)
async def test_shutdown_writes_what_is_pending(
    store_and_writer: tuple[FakeStore, RecordWriter],
) -> None:
    store, writer = store_and_writer
    writer.submit(core.observe_pod(running_pod()))
    await writer.flush_all()
    assert store.status() == expected_status(running_pod())


async def test_a_conflict_reapplies_the_window_on_the_fresh_status(
    store_and_writer: tuple[FakeStore, RecordWriter],
) -> None:
    store, writer = store_and_writer
    writer.submit(core.observe_pod(running_pod()))
    await settle(writer)
    # Someone else (another replica, a user) wrote the record meanwhile: our version is stale.
    other = store.records[(NS, NAME)]
    other["status"] = expected_status(running_pod(), finished_pod())
    store._bump(other)
    writer.submit(core.observe_pod(finished_pod()))
    writer.submit(core.PodGone(NS, NAME, b.UID, clock(), True))
    await settle(writer)
    assert "get" in store.calls
    assert store.status()["outcome"] == "Succeeded"
    keys = [entry["key"] for entry in store.status()["timeline"]]
    assert len(keys) == len(set(keys)), "re-applying the window adds nothing twice"


async def test_a_failed_write_is_retried_and_loses_nothing(
    store_and_writer: tuple[FakeStore, RecordWriter],
) -> None:
    store, writer = store_and_writer
    store.fail_next = [RuntimeError("apiserver unavailable")]
    writer.submit(core.observe_pod(running_pod()))
    await settle(writer, 1.0)
    assert store.calls.count("create") == 2
    assert store.status() == expected_status(running_pod())


async def test_a_record_deleted_under_the_writer_is_created_again(
    store_and_writer: tuple[FakeStore, RecordWriter],
) -> None:
    store, writer = store_and_writer
    writer.submit(core.observe_pod(running_pod()))
    await settle(writer)
    del store.records[(NS, NAME)]
    writer.submit(core.observe_pod(finished_pod()))
    await settle(writer)
    assert store.status() == expected_status(running_pod(), finished_pod())


async def test_the_sweep_deletes_records_whose_retention_passed(
    store_and_writer: tuple[FakeStore, RecordWriter],
) -> None:
    store, writer = store_and_writer
    writer.submit(core.observe_pod(finished_pod()))
    writer.submit(core.PodGone(NS, NAME, b.UID, clock(), True))
    await settle(writer)
    settings = PodtrailSettings(retention_seconds=60)
    early = await sweep_once(store, writer, settings, Metrics(), clock() + timedelta(seconds=59))
    assert early == [] and (NS, NAME) in store.records
    late = await sweep_once(store, writer, settings, Metrics(), clock() + timedelta(seconds=60))
    assert [r.reason for r in late] == ["retention"]
    assert (NS, NAME) not in store.records
    assert writer.get(NS, NAME) is None


async def test_the_sweep_keeps_the_record_of_a_live_pod(
    store_and_writer: tuple[FakeStore, RecordWriter],
) -> None:
    store, writer = store_and_writer
    writer.submit(core.observe_pod(running_pod()))
    await settle(writer)
    settings = PodtrailSettings(retention_seconds=0, max_records=1, max_records_per_namespace=1)
    assert await sweep_once(store, writer, settings, Metrics(), clock() + timedelta(days=9)) == []
    assert (NS, NAME) in store.records


async def test_a_record_in_a_namespace_being_deleted_is_given_up(
    store_and_writer: tuple[FakeStore, RecordWriter],
) -> None:
    store, writer = store_and_writer
    store.gone_namespaces.add(NS)
    writer.submit(core.observe_pod(running_pod()))
    await settle(writer, 1.0)
    assert store.calls == ["create"], "no retry loop against a namespace that is gone"
    assert writer.get(NS, NAME) is None
