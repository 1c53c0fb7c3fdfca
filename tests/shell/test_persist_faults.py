"""The writer on a sick or shared cluster: throttling, quotas, refusals, hung calls, memory."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import sys
import tracemalloc
from datetime import timedelta
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from podtrail import core
from podtrail.core import model
from podtrail.shell.persist import RecordState, failure_reason
from tests.shell.test_persist import (
    NAME,
    NS,
    OWN,
    Harness,
    clock,
    expected_status,
    finished_pod,
    running,
    running_pod,
)
from tests.unit import builders as b


def api_error(status: int, message: str, retry_after: float | None = None) -> ApiException:
    """An API error as kube.py raises it from a raw response (Status body, headers)."""
    error = ApiException(status=status, reason="")
    error.body = json.dumps({"kind": "Status", "message": message, "code": status}).encode()
    error.headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return error


QUOTA = api_error(
    403,
    'podlifecyclerecords.podtrail.io "web-0" is forbidden: exceeded quota: records, requested: '
    "count/podlifecyclerecords.podtrail.io=1, used: count/podlifecyclerecords.podtrail.io=10, "
    "limited: count/podlifecyclerecords.podtrail.io=10",
)
INVALID = api_error(422, 'PodLifecycleRecord.podtrail.io "web-0" is invalid: status.timeline')


def pod_named(name: str) -> dict[str, Any]:
    return b.pod(name=name, uid=f"uid-of-{name}", phase="Running")


def probe_failure(index: int) -> core.Observation:
    event = b.event(
        "Unhealthy", f"Readiness probe failed: {index}", first=20, container="app", name=f"e{index}"
    )
    observation = core.observe_event(event)
    assert observation is not None
    return observation


def gaps(times: list[float]) -> list[float]:
    return [round(later - earlier, 6) for earlier, later in zip(times, times[1:], strict=False)]


async def written_and_ended(h: Harness) -> None:
    h.writer.submit(core.observe_pod(running_pod()), labels={"app": "web"})
    h.writer.submit(core.observe_pod(finished_pod()), labels={"app": "web"})
    h.writer.submit(core.PodGone(NS, NAME, b.UID, clock(), True))
    await h.settle()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (api_error(429, "slow down", 3), "throttled"),
        (QUOTA, "quota"),
        (api_error(403, "cannot create"), "forbidden"),
        (INVALID, "invalid"),
        (api_error(413, "Request entity too large"), "too-large"),
        (api_error(500, "etcdserver: request is too large"), "too-large"),
        (api_error(503, "unavailable"), "server-error"),
        (TimeoutError(), "timeout"),
        (ConnectionResetError(), "connection"),
    ],
)
def test_failures_are_told_apart(error: BaseException, reason: str) -> None:
    assert failure_reason(error) == reason


async def test_a_throttled_write_waits_for_retry_after() -> None:
    async with running() as h:
        h.writer.submit(core.observe_pod(running_pod()))
        await h.settle()
        h.store.attempts.clear()
        h.store.fail_next = [api_error(429, "too many requests", retry_after=7)]
        h.writer.submit(core.observe_pod(finished_pod()))
        await h.time.advance(6.9)
        assert len(h.store.attempts) == 1, "not before Retry-After"
        await h.settle(0.2)
        assert gaps([at for _, at in h.store.attempts]) == [7]
        assert h.store.status() == expected_status(running_pod(), finished_pod())
        assert h.metric("podtrail_record_write_failures_total", reason="throttled") == 1


async def test_failed_writes_back_off_to_the_cap_and_new_facts_do_not_hurry_them() -> None:
    async with running() as h:
        h.writer.submit(core.observe_pod(running_pod()))
        await h.settle()
        h.store.attempts.clear()
        h.store.failing = api_error(500, "etcd leader changed")
        h.writer.submit(core.observe_pod(finished_pod()))
        await h.time.advance(10)
        h.writer.submit(core.PodGone(NS, NAME, b.UID, clock(), True))  # terminal: "at once"
        await h.time.advance(190)
        times = [at for call, at in h.store.attempts if call == "status"]
        assert gaps(times)[:7] == [0.5, 1, 2, 4, 8, 16, 30]
        assert set(gaps(times)[7:]) == {30}
        assert h.metric("podtrail_record_write_failures_total", reason="server-error") == len(times)
        h.store.failing = None
        await h.settle(30)
        assert (h.store.status().get("times") or {}).get("deleted")


async def test_a_record_that_cannot_be_created_keeps_few_pending_items() -> None:
    async with running(max_pending=256) as h:
        h.store.failing = QUOTA
        for _ in range(5_000):
            h.writer.submit(core.observe_pod(running_pod()))
        await h.time.advance(60)
        state = h.writer.get(NS, NAME)
        assert state is not None and not state.exists
        assert len(state.pending) == 1, "a submit that changes nothing adds nothing"
        assert h.store.calls.count("create") <= 9, "the creates back off"
        assert h.metric("podtrail_record_write_failures_total", reason="quota") >= 5
        assert h.store.events == [], "no record, so no Event: log and metric only"
        assert h.writer.pending_count() == 1


async def test_pending_items_are_bounded_and_nothing_in_memory_is_lost() -> None:
    async with running(max_pending=256) as h:
        h.store.failing = QUOTA
        h.writer.submit(core.observe_pod(running_pod()))
        for index in range(5_000):
            h.writer.submit(probe_failure(index))
        state = h.writer.get(NS, NAME)
        assert state is not None and len(state.pending) == 256
        dropped = h.metric("podtrail_pending_dropped_total", kind="applied")
        assert dropped == 5_001 - 256
        await h.time.advance(60)
        h.store.failing = None  # the quota was raised
        await h.settle(60)
        assert h.store.status()["probeFailures"]["readiness"] == 5_000


async def test_a_hung_write_does_not_hold_up_the_others() -> None:
    async with running(concurrency=4) as h:
        h.store.hanging.add((NS, "stuck"))
        h.writer.submit(core.observe_pod(pod_named("stuck")))
        h.writer.submit(core.observe_pod(running_pod()))
        await h.time.advance(0.3)
        assert (NS, NAME) in h.store.records
        assert h.writer.pending_count() == 1


async def test_a_hung_write_gives_up_its_slot_after_the_write_timeout() -> None:
    async with running(concurrency=1, write_timeout_seconds=5) as h:
        h.store.hanging.add((NS, "stuck"))
        h.writer.submit(core.observe_pod(pod_named("stuck")))
        await h.time.advance(0.1)
        h.writer.submit(core.observe_pod(running_pod()))
        await h.time.advance(1)
        assert (NS, NAME) not in h.store.records, "the one slot is taken"
        await h.time.advance(5)
        assert (NS, NAME) in h.store.records
        assert h.metric("podtrail_record_write_failures_total", reason="timeout") == 1
        stuck = h.writer.get(NS, "stuck")
        assert stuck is not None and stuck.pending, "its facts are kept for the next try"


async def test_the_shutdown_flush_ends_at_its_bound() -> None:
    async with running(window_seconds=30) as h:
        h.store.hanging.add((NS, "stuck"))
        h.writer.submit(core.observe_pod(pod_named("stuck")))
        h.writer.submit(core.observe_pod(running_pod()))
        flush = asyncio.create_task(h.writer.flush_all(timeout=3))
        await h.time.advance(2.9)
        assert not flush.done()
        assert h.store.status() == expected_status(running_pod())
        await h.time.advance(0.2)
        assert flush.done() and flush.result() == [(NS, "stuck")]


async def test_a_failing_record_gets_one_warning_event_per_interval() -> None:
    async with running(warning_interval_seconds=600) as h:
        h.writer.submit(core.observe_pod(running_pod()))
        await h.settle()
        h.store.failing = INVALID
        h.writer.submit(core.observe_pod(finished_pod()))
        await h.time.advance(1_500)
        events = h.store.events
        assert len(events) == 3
        assert all(
            later - earlier >= 600
            for earlier, later in zip(
                [e["at"] for e in events], [e["at"] for e in events][1:], strict=False
            )
        )
        uid = h.store.records[(NS, NAME)]["metadata"]["uid"]
        assert {(e["reason"], e["type"], e["uid"]) for e in events} == {
            ("RecordWriteFailed", "Warning", uid)
        }
        assert "invalid" in events[0]["message"] and "status.timeline" in events[0]["message"]


async def test_a_failed_event_post_changes_nothing() -> None:
    async with running() as h:
        h.writer.submit(core.observe_pod(running_pod()))
        await h.settle()
        h.store.event_failure = api_error(403, "events is forbidden")
        h.store.fail_next = [api_error(503, "unavailable")]
        h.writer.submit(core.observe_pod(finished_pod()))
        await h.settle(2)
        assert "event" in h.store.calls
        assert h.store.status() == expected_status(running_pod(), finished_pod())


async def test_an_ended_record_is_evicted_then_read_again_for_a_late_event() -> None:
    async with running(evict_after_seconds=5) as h:
        await written_and_ended(h)
        state = h.writer.get(NS, NAME)
        assert state is not None and not state.evicted
        await h.time.advance(5.1)
        assert state.evicted and h.writer.get(NS, NAME) is state
        assert state.pod_gone_at is not None and state.record.pod_uid == b.UID and state.uid
        assert h.metric("podtrail_records_in_memory", form="stub") == 1
        before = h.store.status()
        facts = h.metric("podtrail_facts_total", type="KillingStarted")
        late = core.observe_event(
            b.event("Killing", "Stopping container app", first=21, container="app", name="late")
        )
        assert late is not None
        assert h.writer.submit(late) == ()
        await h.settle()
        after = h.store.status()
        keys = b.timeline_keys(after)
        assert len(keys) == len(set(keys)), "nothing doubled"
        assert set(b.timeline_keys(before)) < set(keys), "nothing lost, one more"
        assert h.metric("podtrail_facts_total", type="KillingStarted") == facts + 1
        assert h.writer.get(NS, NAME) is state and not state.evicted
        await h.time.advance(5.1)
        assert state.evicted, "evicted again once written"
        calls = len(h.store.calls)
        assert h.writer.submit(late) == ()
        await h.settle()
        assert len(h.store.calls) == calls, "an Event already counted needs no read"


async def test_a_pod_recreated_under_the_name_of_a_stub_keeps_the_old_history() -> None:
    async with running(evict_after_seconds=0) as h:
        await written_and_ended(h)
        await h.time.advance(0.1)
        state = h.writer.get(NS, NAME)
        assert state is not None and state.evicted
        reborn = b.pod(uid="second-uid", phase="Pending")
        h.writer.submit(core.observe_pod(reborn), labels={"app": "web", "v": "2"})
        await h.settle()
        status = h.store.status()
        assert status["podUID"] == "second-uid"
        assert [p["uid"] for p in status["previousInstances"]] == [b.UID]
        assert h.store.labels() == {"app": "web", "v": "2"} | OWN


async def test_records_ended_long_ago_are_stubs_from_the_start() -> None:
    ended = expected_status(running_pod(), finished_pod())
    gone = core.PodGone(NS, NAME, b.UID, clock() - timedelta(hours=1), True)
    ended = core.advance(ended, gone, now=clock()).status
    async with running() as h:
        old = h.writer.adopt(stored_record(NAME, ended))
        live = h.writer.adopt(stored_record("live", expected_status(running_pod())))
        assert old.evicted and old.pod_gone_at is not None
        assert not live.evicted
        assert h.writer.pending_count() == 0


def stored_record(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": NS,
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": "7",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "web"},
        },
        "spec": {"podName": name},
        "status": status,
    }


def full_record(salt: str = "") -> core.Record:
    """A record at its bounds: 200 timeline entries, 128 Events counted."""

    def message(index: int) -> str:  # as long as a typical probe failure's first line
        return (
            f"Readiness probe failed: Get http://10.244.1.7:8080/ready: i/o timeout {salt}{index}"
        )

    entries = tuple(
        model.Entry(
            key=f"{b.UID}/ProbeFailed/readiness/{index}",
            time=b.at(index),
            type="ProbeFailed",
            summary=f"Container app: {message(index)}",
            source="event",
            container="app",
            reason="Unhealthy",
            message=message(index),
            probe="readiness",
            count=3,
            last_time=b.at(index + 1),
        )
        for index in range(200)
    )
    seen = tuple(model.SeenEvent(f"{NAME}.18{index:014x}", 3, b.at(index)) for index in range(128))
    return core.Record(pod_uid=b.UID, timeline=entries, seen_events=seen)


def clear_core_caches() -> None:
    """The core memoises loaded and rendered entries (bounded, process-wide): not a record's."""
    for name, module in list(sys.modules.items()):
        if name.startswith("podtrail.core"):
            for value in vars(module).values():
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()


def retained_bytes(make: Any) -> tuple[int, Any]:
    """What an object made by `make` keeps allocated once made (garbage collected)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        made = make()
        clear_core_caches()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, made
    finally:
        tracemalloc.stop()


def test_a_stub_is_a_small_fraction_of_a_full_record() -> None:
    def as_read(salt: str) -> str:  # as a listing page or a GET brings it; new text each time
        ended = dataclasses.replace(full_record(salt), removal=model.Removal(clock(), True))
        return json.dumps(stored_record(NAME, core.render_record(ended)))

    def loaded(text: str, evict: bool) -> RecordState:
        empty = core.load_record(None)
        state = RecordState(NS, NAME, stored=empty, record=empty)
        state.adopt(json.loads(text), core.Limits())
        state.record = state.stored
        if evict:
            state.evict()
        return state

    first, second = as_read("a"), as_read("b")
    full, state = retained_bytes(lambda: loaded(first, evict=False))
    assert len(state.record.timeline) == 200 and len(state.stored.seen_events) == 128
    stub, _ = retained_bytes(lambda: loaded(second, evict=True))
    print(f"record in memory: full {full} bytes, stub {stub} bytes")
    assert full > 15 * stub
    assert stub < 3_000
