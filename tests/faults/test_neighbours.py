"""Hostile neighbours: what a user of one namespace can create must not change another's records.

- An EndpointSlice in namespace A naming a pod of namespace B: B's record stays as it was.
- A flood of records for pods that never existed in one namespace, past the cluster-wide bound:
  the bound removes the flood, never the other namespace's records of gone pods.
- A pod with 100 containers, 10,000 Events about one pod, Events with 4-byte characters and
  the longest message the API accepts: every record stays within its bounds, the operator up.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client

from tests.e2e.support import container, pod
from tests.faults.conftest import plays
from tests.faults.support import (
    GROUP,
    PLURAL,
    RECORD_BUDGET_BYTES,
    VERSION,
    FaultHarness,
    Obj,
    describe,
    duplicate_keys,
    entries,
    record_bytes,
    record_figures,
    status_of,
    timeline,
)
from tests.support.kube import pod_ready, wait_for
from tests.support.operator import metric_sum

TIMELINE_ENTRIES = 200  # the operator's default --timeline-entries
MESSAGE_LENGTH = 256  # the operator's default --message-length
SEEN_EVENTS = 256  # what a record remembers of the Events it has counted
CONTAINERS_KEPT = 64  # a record keeps the first 64 containers of a pod (docs/facts.md)
FLOOD_WANTED = 20_000
FLOOD_TIME_BUDGET_SECONDS = float(os.environ.get("PODTRAIL_FAULT_FLOOD_SECONDS", "120"))
EVENT_FLOOD = 10_000
UNHEALTHY_SHARE = 4  # one Event in this many is a readiness probe failure
FLOOD_REASONS = 300  # distinct Warning reasons: more kinds of fact than a timeline keeps
EMOJI = "\N{ROCKET}"  # 4 bytes in UTF-8, a surrogate pair in UTF-16
EDGE_OFFSETS = range(MESSAGE_LENGTH - 16, MESSAGE_LENGTH + 1)
TRUNCATION_MARK = "[truncated]"


async def bounded(calls: list[Callable[[], Awaitable[Any]]], concurrency: int) -> list[Any]:
    """Run the calls, at most `concurrency` at once, in order of the list; their results."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(call) for call in calls))


# --- an EndpointSlice naming another namespace's pod -------------------------------------------


def lure_slice(name: str, target_namespace: str, target_name: str, target_uid: str) -> Obj:
    """A slice claiming that a pod (named by namespace, name and UID) is one of its endpoints."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": ["10.88.254.1"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "targetRef": {
                    "kind": "Pod",
                    "namespace": target_namespace,
                    "name": target_name,
                    "uid": target_uid,
                },
            }
        ],
    }


async def play_lure(h: FaultHarness, namespace: str, body: Obj) -> int:
    """Create the slice, mark its endpoint terminating, delete it: the changes made."""
    discovery = client.DiscoveryV1Api(h.kube.api)
    name = body["metadata"]["name"]
    await discovery.create_namespaced_endpoint_slice(namespace, body)
    await asyncio.sleep(3)
    current = await discovery.read_namespaced_endpoint_slice(name, namespace)
    current.endpoints[0].conditions = client.V1EndpointConditions(
        ready=False, serving=True, terminating=True
    )
    await discovery.replace_namespaced_endpoint_slice(name, namespace, current)
    await asyncio.sleep(3)
    await discovery.delete_namespaced_endpoint_slice(name, namespace)
    return 3


async def foreign_endpoint_slice(h: FaultHarness) -> dict[str, Any]:
    attacker = await h.namespace("slice-a")
    victim = await h.namespace("slice-b")
    operator = h.operator("slices", [attacker, victim])
    await operator.start()
    target = await h.create_pod(victim, pod("target", container("app", "sleep 3600"), grace=1))
    await h.wait_record(victim, "target", lambda r: status_of(r).get("phase") == "Running")
    await asyncio.sleep(5)  # let the last condition changes land
    before = await h.record(victim, "target")
    uid = target["metadata"]["uid"]
    changes = await asyncio.gather(
        # Another namespace's slice naming the pod with its true UID.
        play_lure(h, attacker, lure_slice("lure-foreign", victim, "target", uid)),
        # A slice of the pod's own namespace naming it with a UID that is not its own.
        play_lure(h, victim, lure_slice("lure-uid", victim, "target", str(uuid.uuid4()))),
    )
    await asyncio.sleep(5)
    after = await h.record(victim, "target")
    return {
        "before": before,
        "after": after,
        "changes": sum(changes),
        "healthz": await operator.healthz(),
    }


@plays(foreign_endpoint_slice)
def test_endpoint_slice_cannot_touch_another_namespace(outcome: dict[str, Any]) -> None:
    before, after = outcome["before"], outcome["after"]
    added = [e for e in timeline(after) if e not in timeline(before)]
    record_figures(
        "4a. EndpointSlice naming another namespace's pod",
        {
            "slice changes made (2 slices: create, update, delete)": outcome["changes"],
            "entries added to the other namespace's record": len(added),
            "record resourceVersion unchanged": before["metadata"]["resourceVersion"]
            == after["metadata"]["resourceVersion"],
        },
    )
    assert outcome["healthz"] == 200
    assert not added, f"the foreign slice changed the record: {added}"
    assert not entries(after, "EndpointChanged") and not entries(after, "RemovedFromEndpoints")
    assert status_of(after).get("endpoints") in (None, []), status_of(after).get("endpoints")


# --- a flood of records for pods that never existed --------------------------------------------


def placeholder(name: str) -> Obj:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PodLifecycleRecord",
        "metadata": {"name": name},
        "spec": {"podName": name},
    }


async def create_placeholders(
    h: FaultHarness, namespace: str, names: list[str], concurrency: int = 32
) -> float:
    """Create the records (bounded concurrency); the seconds it took."""
    began = time.monotonic()

    def create(name: str) -> Callable[[], Awaitable[Any]]:
        return lambda: h.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, placeholder(name)
        )

    await bounded([create(name) for name in names], concurrency)
    return time.monotonic() - began


async def gone_pod_records(h: FaultHarness, namespace: str, count: int) -> list[str]:
    """Records of pods that ran and were deleted: kept for the retention time."""
    names = [f"gone-{index}" for index in range(count)]
    for name in names:
        await h.create_pod(namespace, pod(name, container("app", "true"), restart="Never"))
    for name in names:
        await h.wait_record(namespace, name, lambda r: status_of(r).get("outcome") == "Succeeded")
        await h.kube.delete_pod(namespace, name)
    for name in names:
        await h.wait_record(
            namespace, name, lambda r: bool((status_of(r).get("times") or {}).get("deleted"))
        )
    return names


async def placeholder_flood(h: FaultHarness) -> dict[str, Any]:
    flood = await h.namespace("flood")
    other = await h.namespace("bystander")
    # Measure the creation rate on a sample, then size the flood to the time budget.
    sample = [f"ghost-{uuid.uuid4().hex[:10]}" for _ in range(500)]
    rate = len(sample) / await create_placeholders(h, flood, sample)
    size = min(FLOOD_WANTED, max(len(sample), int(rate * FLOOD_TIME_BUDGET_SECONDS)))
    cluster_bound = max(100, size // 4)
    operator = h.operator(
        "flood",
        [flood, other],
        "--max-records",
        str(cluster_bound),
        "--max-records-per-namespace",
        str(size + 1_000),
    )
    await operator.start()
    kept = await gone_pod_records(h, other, 3)
    rest = [f"ghost-{uuid.uuid4().hex[:10]}" for _ in range(size - len(sample))]
    seconds = len(sample) / rate + await create_placeholders(h, flood, rest)
    created_at = time.monotonic()

    async def bound_held() -> bool:
        return await h.record_count(flood) + await h.record_count(other) <= cluster_bound

    held = True
    try:
        await wait_for(bound_held, timeout=300, what="the cluster-wide bound", interval=3)
    except AssertionError:
        held = False
    result = {
        "size": size,
        "rate": rate,
        "create_seconds": seconds,
        "cluster_bound": cluster_bound,
        "bound_held": held,
        "bound_seconds": time.monotonic() - created_at,
        "flood_left": await h.record_count(flood),
        "other_kept": [n for n in kept if await h.record(other, n) is not None],
        "kept": kept,
        "metrics": await operator.metrics(),
        "healthz": await operator.healthz(),
    }
    await operator.stop()
    await h.kube.delete_namespace(flood)  # 20,000 objects: start their removal now
    return result


@plays(placeholder_flood)
def test_flood_of_placeholders_spares_other_namespaces(outcome: dict[str, Any]) -> None:
    record_figures(
        "4b. records for pods that never existed",
        {
            "records wanted / created": f"{FLOOD_WANTED} / {outcome['size']}",
            "creation rate (records/s)": round(outcome["rate"], 1),
            "creation time (s)": round(outcome["create_seconds"], 1),
            "--max-records (cluster bound, scaled to the flood)": outcome["cluster_bound"],
            "bound held": outcome["bound_held"],
            "time to enforce the bound (s)": round(outcome["bound_seconds"], 1),
            "flood records left": outcome["flood_left"],
            "records deleted by the operator, by reason": {
                reason: metric_sum(
                    outcome["metrics"], "podtrail_records_deleted_total", reason=reason
                )
                for reason in sorted(
                    {
                        dict(k[1]).get("reason", "")
                        for k in outcome["metrics"]
                        if k[0] == "podtrail_records_deleted_total"
                    }
                )
            },
            "other namespace's records of gone pods kept": len(outcome["other_kept"]),
            "other namespace's records of gone pods before the flood": len(outcome["kept"]),
        },
    )
    assert outcome["healthz"] == 200
    assert outcome["other_kept"] == outcome["kept"], "the bound removed another namespace's records"
    assert outcome["bound_held"], (
        f"{outcome['flood_left']} flood records left, bound {outcome['cluster_bound']}"
    )


# --- a pod with 100 containers -------------------------------------------------------------------


async def hundred_containers(h: FaultHarness) -> dict[str, Any]:
    namespace = await h.namespace("wide")
    operator = h.operator("wide", [namespace])
    await operator.start()
    body = pod("wide", *(container(f"c{index:03d}", "sleep 3600") for index in range(100)), grace=1)
    await h.create_pod(namespace, body)
    await h.kube.wait_pod(
        namespace, "wide", pod_ready, timeout=300, what="100 containers ready", interval=2
    )
    running = await h.wait_record(
        namespace,
        "wide",
        lambda r: (status_of(r).get("summary") or {}).get("readyContainers") == CONTAINERS_KEPT,
        timeout=120,
        what=f"the {CONTAINERS_KEPT} containers it keeps ready",
        interval=2,
    )
    await h.kube.delete_pod(namespace, "wide")
    await h.kube.wait_pod_gone(namespace, "wide", timeout=180)
    ended = await h.wait_record(
        namespace, "wide", lambda r: bool(status_of(r).get("outcome")), timeout=120, interval=2
    )
    return {"running": running, "ended": ended, "healthz": await operator.healthz()}


@plays(hundred_containers)
def test_hundred_containers_record_within_bounds(outcome: dict[str, Any]) -> None:
    running, ended = outcome["running"], outcome["ended"]
    record_figures(
        "4c. a pod with 100 containers",
        {
            "record size running (bytes)": record_bytes(running),
            "record size ended (bytes)": record_bytes(ended),
            "timeline entries running": len(timeline(running)),
            "timeline entries ended": len(timeline(ended)),
            "entries dropped (timelineDropped) at the end": status_of(ended).get("timelineDropped"),
            "containers in the pod": 100,
            "containers kept in the record (the documented cap)": len(
                status_of(ended).get("containers") or []
            ),
            "outcome": status_of(ended).get("outcome"),
        },
    )
    assert outcome["healthz"] == 200
    for record in (running, ended):
        assert record_bytes(record) < RECORD_BUDGET_BYTES
        assert len(timeline(record)) <= TIMELINE_ENTRIES
        assert not duplicate_keys(record)
    assert len(status_of(ended).get("containers") or []) == CONTAINERS_KEPT
    assert status_of(ended).get("outcome"), describe(ended)


# --- 10,000 Events about one pod; emoji and the longest message ---------------------------------


def event_about(target: Obj, reason: str, message: str, kind: str = "Warning") -> Obj:
    meta = target["metadata"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex}"},
        "involvedObject": {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "fieldPath": "spec.containers{app}",
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": "podtrail-fault-suite"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def flood_event(target: Obj, index: int) -> Obj:
    if index % UNHEALTHY_SHARE == 0:
        return event_about(target, "Unhealthy", f"Readiness probe failed: flood {index}")
    return event_about(target, f"FaultFlood{index % FLOOD_REASONS}", f"flood event {index}")


async def create_with_kubectl(h: FaultHarness, namespace: str, body: Obj) -> bool:
    """Create an object through kubectl (a megabyte body stays out of the test's event loop)."""
    proc = await asyncio.create_subprocess_exec(
        h.kubectl,
        "--kubeconfig",
        h.kubeconfig,
        "-n",
        namespace,
        "create",
        "-f",
        "-",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.wait_for(proc.communicate(json.dumps(body).encode()), timeout=60)
    return proc.returncode == 0


async def longest_accepted(h: FaultHarness, target: Obj) -> int:
    """The longest message (bytes, 4-byte characters in it) the API stores in an Event."""
    namespace = target["metadata"]["namespace"]
    for size in (3_000_000, 2_000_000, 1_500_000, 1_000_000, 512_000, 65_536, 4_096, 1_024):
        message = ("longest " + EMOJI * (size // 4))[: size // 4 + 8]
        if await create_with_kubectl(h, namespace, event_about(target, "FaultLongest", message)):
            return len(message.encode())
    raise AssertionError("the API refused every Event message size tried")


async def event_floods(h: FaultHarness) -> dict[str, Any]:
    namespace = await h.namespace("events")
    operator = h.operator("events", [namespace])
    await operator.start()
    target = await h.create_pod(namespace, pod("target", container("app", "sleep 3600"), grace=1))
    talker = await h.create_pod(namespace, pod("talker", container("app", "sleep 3600"), grace=1))
    for name in ("target", "talker"):
        await h.wait_record(namespace, name, lambda r: status_of(r).get("phase") == "Running")
    began = time.monotonic()
    await bounded(
        [
            lambda i=index: h.kube.core.create_namespaced_event(namespace, flood_event(target, i))
            for index in range(EVENT_FLOOD)
        ],
        concurrency=24,
    )
    create_seconds = time.monotonic() - began
    # Wherever the operator cuts (a marker may take some of the room), one of these puts the cut
    # inside a run of emoji.
    edges = {f"FaultEmoji{k}": "a" * k + EMOJI * 8 for k in EDGE_OFFSETS}
    for reason, message in edges.items():
        await h.kube.core.create_namespaced_event(namespace, event_about(talker, reason, message))
    longest = await longest_accepted(h, talker)
    unhealthy = len(range(0, EVENT_FLOOD, UNHEALTHY_SHARE))

    def counted(record: Obj) -> bool:
        return (status_of(record).get("probeFailures") or {}).get("readiness", 0) >= unhealthy

    flooded = await h.wait_record(
        namespace, "target", counted, timeout=300, what="every probe failure counted", interval=3
    )
    talked = await h.wait_record(
        namespace,
        "talker",
        lambda r: (
            {*edges, "FaultLongest"} <= {e.get("reason") for e in entries(r, "EventReported")}
        ),
        timeout=60,
        what="the emoji and longest-message Events",
    )
    await asyncio.sleep(5)  # anything still queued for the target lands
    return {
        "flooded": await h.record(namespace, "target") or flooded,
        "talked": talked,
        "unhealthy": unhealthy,
        "create_seconds": create_seconds,
        "longest": longest,
        "edges": edges,
        "metrics": await operator.metrics(),
        "healthz": await operator.healthz(),
    }


@plays(event_floods)
def test_event_flood_record_within_bounds(outcome: dict[str, Any]) -> None:
    flooded: Obj = outcome["flooded"]
    status = status_of(flooded)
    record_figures(
        "4d. 10,000 Events about one pod",
        {
            "Events created": EVENT_FLOOD,
            "creation time (s)": round(outcome["create_seconds"], 1),
            "Events the operator observed": metric_sum(
                outcome["metrics"], "podtrail_observations_total", stream="events"
            ),
            "readiness failures created / counted": f"{outcome['unhealthy']} / "
            f"{(status.get('probeFailures') or {}).get('readiness')}",
            "record size (bytes)": record_bytes(flooded),
            "timeline entries": len(timeline(flooded)),
            "timeline entries dropped": status.get("timelineDropped"),
            "seen Events kept": len((status.get("tracking") or {}).get("events") or []),
        },
    )
    assert outcome["healthz"] == 200
    assert record_bytes(flooded) < RECORD_BUDGET_BYTES
    assert len(timeline(flooded)) <= TIMELINE_ENTRIES
    assert len((status.get("tracking") or {}).get("events") or []) <= SEEN_EVENTS
    assert (status.get("timelineDropped") or 0) > 0, "300 kinds of Warning cannot all fit"
    assert (status.get("probeFailures") or {}).get("readiness") == outcome["unhealthy"], (
        "each readiness failure counted exactly once"
    )
    assert not duplicate_keys(flooded)


def kept_text(message: str) -> str:
    """A cut message without the operator's truncation marker (an ellipsis and a note)."""
    if not message.endswith(TRUNCATION_MARK):
        return message
    cut = message.rfind("\N{HORIZONTAL ELLIPSIS}")
    return message[:cut] if cut >= 0 else message[: -len(TRUNCATION_MARK)]


@plays(event_floods)
def test_emoji_and_longest_message_are_cut_cleanly(outcome: dict[str, Any]) -> None:
    talked: Obj = outcome["talked"]
    messages = {
        e.get("reason"): str(e.get("message") or "") for e in entries(talked, "EventReported")
    }
    record_figures(
        "4e. 4-byte characters and the longest message",
        {
            "longest Event message the API accepted (bytes)": outcome["longest"],
            "kept of it in the record (characters)": len(messages.get("FaultLongest", "")),
            "Events with a run of emoji across the cut": len(outcome["edges"]),
            "longest emoji message kept (characters)": max(
                (len(messages.get(reason, "")) for reason in outcome["edges"]), default=0
            ),
            "record size (bytes)": record_bytes(talked),
        },
    )
    assert outcome["healthz"] == 200
    assert {*outcome["edges"], "FaultLongest"} <= set(messages), describe(talked)
    for reason, message in messages.items():
        assert len(message) <= MESSAGE_LENGTH, f"{reason}: {len(message)} characters kept"
        message.encode("utf-8")  # a lone surrogate (half an emoji) would raise here
        assert "\ufffd" not in message, f"{reason}: a character was broken: {message!r}"
    for reason, original in outcome["edges"].items():
        assert original.startswith(kept_text(messages[reason])), (reason, messages[reason])
    assert EMOJI in messages["FaultLongest"]
    assert ("longest " + EMOJI * 300).startswith(kept_text(messages["FaultLongest"]))
    assert record_bytes(talked) < RECORD_BUDGET_BYTES
