"""Termination, step by step, as the kubelet does it: each outcome on a real node."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from tests.e2e.conftest import Harness, plays
from tests.e2e.support import (
    container,
    entries,
    entry,
    has_entry,
    has_outcome,
    has_phase,
    parse_time,
    pod,
    pod_ready,
    pod_running,
    status_of,
)
from tests.e2e.test_lifecycle import assert_causal_order

TRAP_TERM = "trap 'echo bye; exit 0' TERM; while true; do sleep 0.2; done"
IGNORE_TERM = "while true; do sleep 1; done"  # a PID-1 shell without a trap ignores TERM


async def _delete_running(h: Harness, prefix: str, body: dict[str, Any], **delete: Any) -> Any:
    namespace = await h.namespace(prefix)
    name = body["metadata"]["name"]
    await h.kube.create_pod(namespace, body)
    await h.kube.wait_pod(namespace, name, pod_running, what="Running")
    await h.kube.wait_record(namespace, name, has_phase("Running"))
    await h.kube.delete_pod(namespace, name, **delete)
    await h.kube.wait_pod_gone(namespace, name)
    return await h.kube.wait_record(
        namespace,
        name,
        lambda r: bool((status_of(r).get("times") or {}).get("deleted")),
        what="the pod's removal",
    )


async def exits_on_term(h: Harness) -> Any:
    return await _delete_running(h, "term", pod("trapper", container("app", TRAP_TERM), grace=20))


async def ignores_term(h: Harness) -> Any:
    record = await _delete_running(
        h, "kill", pod("stubborn", container("app", IGNORE_TERM), grace=3)
    )
    # the outcome label follows the status write that settles the outcome
    return await h.kube.wait_record(
        record["metadata"]["namespace"],
        "stubborn",
        lambda r: "podtrail.io/outcome" in (r["metadata"].get("labels") or {}),
        what="the outcome label",
    )


async def prestop_in_time(h: Harness) -> Any:
    hook = {"preStop": {"exec": {"command": ["sh", "-c", "sleep 1"]}}}
    body = pod("hooked", container("app", TRAP_TERM, lifecycle=hook), grace=20)
    return await _delete_running(h, "prestop", body)


async def short_prestop_then_killed(h: Harness) -> Any:
    hook = {"preStop": {"exec": {"command": ["sh", "-c", "sleep 1"]}}}
    body = pod("shorthook", container("app", IGNORE_TERM, lifecycle=hook), grace=3)
    return await _delete_running(h, "shorthook", body)


async def prestop_outlasts_grace(h: Harness) -> Any:
    hook = {"preStop": {"exec": {"command": ["sh", "-c", "sleep 20"]}}}
    body = pod("slowhook", container("app", IGNORE_TERM, lifecycle=hook), grace=3)
    record = await _delete_running(h, "slowhook", body)
    # The kubelet's FailedPreStopHook Event races the pod's removal: wait for it too.
    namespace = record["metadata"]["namespace"]
    return await h.kube.wait_record(
        namespace, "slowhook", has_entry("PreStopHookFailed", "app"), what="PreStopHookFailed"
    )


async def force_deleted(h: Harness) -> Any:
    return await _delete_running(h, "force", pod("forced", container("app", IGNORE_TERM)), grace=0)


async def out_of_endpoints(h: Harness) -> Any:
    namespace = await h.namespace("endpoints")
    ready = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    body = pod("web", container("app", TRAP_TERM, readinessProbe=ready), grace=10)
    await h.kube.core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    await h.kube.create_pod(namespace, body)
    await h.kube.wait_pod(namespace, "web", pod_ready, what="Ready")
    await h.kube.wait_record(namespace, "web", lambda r: bool(entries(r, "EndpointChanged")))
    await h.kube.delete_pod(namespace, "web")
    await h.kube.wait_pod_gone(namespace, "web")
    return await h.kube.wait_record(
        namespace,
        "web",
        lambda r: bool(entries(r, "RemovedFromEndpoints")),
        what="the removal from the Service's endpoints",
    )


async def evicted(h: Harness) -> Any:
    namespace = await h.namespace("evict")
    await h.kube.create_pod(namespace, pod("evictee", container("app", TRAP_TERM), grace=5))
    await h.kube.wait_pod(namespace, "evictee", pod_running, what="Running")
    await h.kube.core.create_namespaced_pod_eviction(
        "evictee",
        namespace,
        {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "evictee", "namespace": namespace},
        },
    )
    await h.kube.wait_pod_gone(namespace, "evictee")
    return await h.kube.wait_record(namespace, "evictee", has_outcome("Evicted"), what="Evicted")


async def preempted(h: Harness) -> Any:
    namespace = await h.namespace("preempt")
    suffix = namespace.rsplit("-", 1)[-1]
    for name, value in ((f"e2e-low-{suffix}", -10), (f"e2e-high-{suffix}", 1_000_000)):
        await h.kube.scheduling.create_priority_class(
            {"metadata": {"name": name}, "value": value, "preemptionPolicy": "PreemptLowerPriority"}
        )
    # Most of the node's CPU for each: the high-priority pod fits only if the low one goes.
    big = {"requests": {"cpu": "1500m"}}
    low = pod(
        "victim",
        container("app", TRAP_TERM, resources=big),
        grace=2,
        priorityClassName=f"e2e-low-{suffix}",
    )
    high = pod(
        "vip",
        container("app", TRAP_TERM, resources=big),
        grace=2,
        priorityClassName=f"e2e-high-{suffix}",
    )
    try:
        await h.kube.create_pod(namespace, low)
        await h.kube.wait_pod(namespace, "victim", pod_running, what="Running")
        await h.kube.create_pod(namespace, high)
        await h.kube.wait_pod_gone(namespace, "victim", timeout=120)
        return await h.kube.wait_record(namespace, "victim", has_outcome("Preempted"))
    finally:
        with contextlib.suppress(ApiException):
            await h.kube.delete_pod(namespace, "vip", grace=0)
        for name in (f"e2e-low-{suffix}", f"e2e-high-{suffix}"):
            await h.kube.scheduling.delete_priority_class(name)


def deletion(record: dict[str, Any]) -> tuple[Any, Any]:
    termination = record["status"]["termination"]
    return parse_time(termination["requestedAt"]), parse_time(termination["deadline"])


def late_after_countdown(record: dict[str, Any], container_name: str) -> float:
    """Seconds from the kubelet's own deadline to the kill. The kubelet counts the grace period
    from when it starts stopping the container (its Killing Event), not from the API's
    deletion request: on a busy node it notices the deletion seconds late, so the API's
    deadline cannot tell a punctual kill from a late one. Both times have 1 s precision."""
    grace = record["status"]["termination"]["gracePeriodSeconds"]
    started = parse_time(entry(record, "KillingStarted", container_name)["time"])
    killed = parse_time(entry(record, "KilledAfterGrace", container_name)["time"])
    return (killed - started).total_seconds() - grace


@plays(exits_on_term)
def test_exit_on_term_is_a_graceful_shutdown(outcome: Any) -> None:
    record = outcome
    assert record["status"]["outcome"] == "GracefulShutdown"
    requested, deadline = deletion(record)
    assert (deadline - requested).total_seconds() == 20
    exited = entry(record, "ExitedOnTerm", "app")
    assert exited["exitCode"] == 0
    assert exited["signal"] == "TERM"
    assert exited["source"] == "inferred"
    finished = parse_time(exited["time"])
    assert requested <= finished
    assert (finished - requested).total_seconds() < 5, "exits well before its 20 s grace"
    assert entries(record, "DeletionRequested")
    assert entries(record, "PodDeleted")


@plays(ignores_term)
def test_sigkill_at_the_grace_deadline(outcome: Any) -> None:
    record = outcome
    assert record["status"]["outcome"] == "KilledAfterGrace"
    requested, deadline = deletion(record)
    killed = entry(record, "KilledAfterGrace", "app")
    assert killed["exitCode"] == 137
    assert killed["signal"] == "KILL"
    assert killed["source"] == "inferred"
    assert parse_time(killed["time"]) >= deadline - timedelta(seconds=1), "never before it"
    late = late_after_countdown(record, "app")
    assert -1.0 <= late <= 1.0, f"killed when the kubelet's grace ran out, got {late:+}"
    assert_causal_order(record)
    order = [e["type"] for e in record["status"]["timeline"]]
    steps = ["DeletionRequested", "KillingStarted", "KilledAfterGrace", "PodDeleted"]
    assert [order.index(step) for step in steps] == sorted(order.index(step) for step in steps)
    summary = record["status"]["summary"]
    assert summary["phase"].endswith(" (last)") and summary["ready"].endswith(" (last)")
    labels = record["metadata"]["labels"]
    assert labels["podtrail.io/outcome"] == "KilledAfterGrace"
    assert labels["podtrail.io/node"] == record["status"]["nodeName"]


@plays(prestop_in_time)
def test_prestop_then_term(outcome: Any) -> None:
    record = outcome
    assert record["status"]["outcome"] == "GracefulShutdown"
    assert not entries(record, "PreStopHookFailed")
    exited = entry(record, "ExitedOnTerm", "app")
    requested, _ = deletion(record)
    # TERM comes only after the 1 s preStop hook has run.
    assert (parse_time(exited["time"]) - requested).total_seconds() >= 0.9


@plays(short_prestop_then_killed)
def test_a_short_prestop_hook_is_no_extension(outcome: Any) -> None:
    """The hook runs 1 s of a 3 s grace: the kill comes at the deadline, nothing extended."""
    record = outcome
    assert record["status"]["outcome"] == "KilledAfterGrace"
    assert not entries(record, "PreStopHookFailed")
    killed = entry(record, "KilledAfterGrace", "app")
    assert "preStop" not in killed["summary"]
    assert "preStop" not in record["status"]["termination"]["evidence"]
    assert "deadline T+3s" in record["status"]["termination"]["evidence"]
    late = late_after_countdown(record, "app")
    assert -1.0 <= late <= 1.0, f"killed when the grace ran out, hook time included: {late:+}"


@plays(prestop_outlasts_grace)
def test_prestop_outlasting_the_grace_gets_two_more_seconds(outcome: Any) -> None:
    record = outcome
    assert record["status"]["outcome"] == "KilledAfterGrace"
    assert entries(record, "PreStopHookFailed", "app")
    _, deadline = deletion(record)
    killed = entry(record, "KilledAfterGrace", "app")
    assert parse_time(killed["time"]) >= deadline + timedelta(seconds=1), "after the deadline"
    extension = late_after_countdown(record, "app")
    assert 1.0 <= extension <= 3.0, f"the kubelet's one-time 2 s extension, got {extension:+}"
    assert "+ 2s preStop extension" in record["status"]["termination"]["evidence"]


@plays(force_deleted)
def test_force_deletion(outcome: Any) -> None:
    record = outcome
    assert record["status"]["outcome"] == "ForceDeleted"
    assert record["status"]["termination"]["gracePeriodSeconds"] == 0
    assert entries(record, "ForceDeleted")
    # the pod was running and ready when it vanished: its last known values, said to be so
    assert record["status"]["summary"]["phase"] == "Running (last)"
    assert record["status"]["summary"]["ready"] == "1/1 (last)"


@plays(out_of_endpoints)
def test_taken_out_of_the_service_endpoints_on_deletion(outcome: Any) -> None:
    record = outcome
    requested, _ = deletion(record)
    changes = [e for e in entries(record, "EndpointChanged") if "terminating" in e["summary"]]
    assert changes, "the endpoint turned terminating"
    turned = parse_time(changes[0]["time"])
    assert (turned - requested).total_seconds() < 5
    removed = entry(record, "RemovedFromEndpoints")
    assert "web" in removed["summary"]
    assert parse_time(removed["time"]) >= turned


@plays(evicted)
def test_eviction_through_the_eviction_api(outcome: Any) -> None:
    record = outcome
    assert record["status"]["outcome"] == "Evicted"
    assert record["status"]["termination"].get("disruptionReason") == "EvictionByEvictionAPI"


@plays(preempted)
def test_preemption_by_the_scheduler(outcome: Any) -> None:
    record = outcome
    assert record["status"]["termination"].get("disruptionReason") == "PreemptionByScheduler"
    assert entries(record, "Preempted")
