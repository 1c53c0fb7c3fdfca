"""The sweep on a shared cluster: placeholders, fair shares between namespaces, failed deletes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from podtrail import core
from podtrail.shell.settings import PodtrailSettings
from podtrail.shell.sweep import sweep_once
from tests.shell.test_persist import NAME, NS, Harness, clock, running
from tests.shell.test_persist_faults import api_error, written_and_ended
from tests.unit import builders as b

LATER = clock() + timedelta(seconds=30)


def placeholder(namespace: str, name: str, created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    """A record a user created ahead of a pod (no status yet)."""
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"uid-{namespace}-{name}",
            "resourceVersion": "3",
            "creationTimestamp": created,
        },
        "spec": {"podName": name},
    }


def ended(namespace: str, name: str) -> dict[str, Any]:
    """A record of a pod gone 30 s before `clock()`."""
    status = core.advance(None, core.observe_pod(b.pod(name=name)), now=clock()).status
    gone = core.PodGone(namespace, name, b.UID, clock() - timedelta(seconds=30), True)
    record = placeholder(namespace, name)
    record["status"] = core.advance(status, gone, now=clock()).status
    return record


async def adopt_all(h: Harness, records: list[dict[str, Any]]) -> None:
    for record in records:
        h.store.records[(record["metadata"]["namespace"], record["metadata"]["name"])] = record
        h.writer.adopt(record)


async def test_a_placeholder_is_removed_after_the_retention_from_its_creation() -> None:
    async with running() as h:
        await adopt_all(h, [placeholder(NS, "ahead", created="2026-01-01T00:00:00Z")])
        settings = PodtrailSettings(retention_seconds=600)
        early = clock().replace(minute=9)
        assert await sweep_once(h.store, h.writer, settings, h.metrics, early) == []
        late = clock().replace(minute=10)
        removals = await sweep_once(h.store, h.writer, settings, h.metrics, late)
        assert [(r.name, r.reason) for r in removals] == [("ahead", "retention")]
        assert h.writer.get(NS, "ahead") is None


async def test_a_flood_of_placeholders_cannot_push_out_another_namespaces_records() -> None:
    async with running() as h:
        flood = [placeholder("flood", f"p{i:02}") for i in range(12)]
        await adopt_all(h, flood + [ended(NS, f"g{i}") for i in range(3)])
        settings = PodtrailSettings(max_records=12, max_records_per_namespace=1_000)
        removals = await sweep_once(h.store, h.writer, settings, h.metrics, LATER)
        assert {r.namespace for r in removals} == {"flood"}
        assert len(removals) == 3
        assert all(h.writer.get(NS, f"g{i}") is not None for i in range(3))


async def test_a_failed_delete_does_not_stop_the_sweep() -> None:
    async with running() as h:
        await adopt_all(h, [ended(NS, name) for name in ("a", "b", "c", "d")])
        h.store.failing_deletes = {
            "a": TimeoutError(),
            "b": api_error(429, "too many requests", retry_after=5),
            "c": api_error(500, "etcd unavailable"),
        }
        settings = PodtrailSettings(retention_seconds=10)
        removals = await sweep_once(h.store, h.writer, settings, h.metrics, LATER)
        assert len(removals) == 4
        assert [key[1] for key in h.store.records] == ["a", "b", "c"]
        assert h.writer.get(NS, "d") is None
        for reason in ("timeout", "throttled", "server-error"):
            assert h.metric("podtrail_record_delete_failures_total", reason=reason) == 1
        h.store.failing_deletes = {}
        await sweep_once(h.store, h.writer, settings, h.metrics, LATER)
        assert h.store.records == {}, "the next sweep deletes them"


async def test_a_stub_is_swept_like_any_record() -> None:
    async with running(evict_after_seconds=0) as h:
        await written_and_ended(h)
        await h.time.advance(0.1)
        state = h.writer.get(NS, NAME)
        assert state is not None and state.evicted
        settings = PodtrailSettings(retention_seconds=60)
        later = clock() + timedelta(seconds=60)
        removals = await sweep_once(h.store, h.writer, settings, h.metrics, later)
        assert [r.reason for r in removals] == ["retention"]
        assert h.writer.get(NS, NAME) is None and h.store.records == {}
        assert h.metric("podtrail_records_in_memory", form="stub") == 0
