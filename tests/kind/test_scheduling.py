"""Scheduling across nodes, as the record tells it: which node the scheduler chose, and, when
no node fits, why each of them did not."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.support import (
    Obj,
    container,
    describe,
    entries,
    entry,
    has_entry,
    pod,
    pod_running,
    status_of,
)
from tests.kind.conftest import DeployedOperator, KindCluster, LocalOperator

pytestmark = [pytest.mark.cluster, pytest.mark.kubelet, pytest.mark.kind, pytest.mark.e2e]

SLEEP = "trap 'exit 0' TERM; while true; do sleep 1; done"


@pytest.fixture
async def namespace(
    kind: KindCluster, operator: LocalOperator | DeployedOperator
) -> AsyncIterator[str]:
    name = await kind.kube.namespace("kind-sched")
    try:
        yield name
    finally:
        await kind.kube.core.delete_namespace(name, propagation_policy="Background")


def hostname_selector(node: str) -> dict[str, Any]:
    return {"nodeSelector": {"kubernetes.io/hostname": node}}


def reasons(message: str) -> dict[str, int]:
    """'0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match ...' -> counts."""
    listed = message.split("nodes are available:", 1)[1]
    listed = re.split(r"\.(?:\s|$)", listed, maxsplit=1)[0]  # the scheduler's list ends at ". "
    found: dict[str, int] = {}
    for part in listed.split(","):
        match = re.match(r"\s*(\d+) (.+?)\.?\s*$", part)
        if match:
            found[match.group(2)] = int(match.group(1))
    return found


async def test_the_record_names_the_node_the_scheduler_chose(
    kind: KindCluster, namespace: str
) -> None:
    worker = kind.workers[-1]
    await kind.kube.create_pod(
        namespace, pod("pinned", container("app", SLEEP), grace=2, **hostname_selector(worker))
    )
    await kind.kube.create_pod(namespace, pod("free", container("app", SLEEP), grace=2))
    for name in ("pinned", "free"):
        await kind.kube.wait_pod(namespace, name, pod_running, what="Running")
    free = await kind.kube.read_pod(namespace, "free")
    assert free is not None
    chosen = {"pinned": worker, "free": free["spec"]["nodeName"]}
    assert chosen["free"] in kind.nodes

    for name, node in chosen.items():

        def names_node(record: Obj, node: str = node) -> bool:
            return status_of(record).get("nodeName") == node and has_entry("Scheduled")(record)

        record = await kind.kube.wait_record(
            namespace, name, names_node, what=f"the record to name node {node}"
        )
        scheduled = entry(record, "Scheduled")
        assert node in scheduled["summary"], describe(record)
        assert not entries(record, "FailedScheduling"), describe(record)


async def test_failed_scheduling_says_why_each_node_did_not_fit(
    kind: KindCluster, namespace: str
) -> None:
    # Only one node matches the selector, and it has far fewer CPUs than requested.
    worker = kind.workers[-1]
    huge = container("app", SLEEP, resources={"requests": {"cpu": "1000"}})
    await kind.kube.create_pod(namespace, pod("toobig", huge, **hostname_selector(worker)))
    record = await kind.kube.wait_record(
        namespace, "toobig", has_entry("FailedScheduling"), what="a FailedScheduling entry"
    )
    failed = entry(record, "FailedScheduling")
    message = failed.get("message") or failed["summary"]
    total = len(kind.nodes)
    assert f"0/{total} nodes are available" in message, message
    why = reasons(message)
    assert why.get("Insufficient cpu") == 1, why
    # Every other node is accounted for, each with its own reason (not the selector's node).
    assert sum(why.values()) == total, why
    others = {reason for reason in why if reason != "Insufficient cpu"}
    assert others and all("affinity/selector" in r or "taint" in r for r in others), why
    status = status_of(record)
    assert status.get("phase") == "Pending" and not status.get("nodeName"), describe(record)
    assert not entries(record, "Scheduled"), describe(record)


async def test_a_pod_scheduled_once_a_node_fits_keeps_both_facts(
    kind: KindCluster, namespace: str
) -> None:
    # No node carries the label at first; then the last worker gets it.
    label = "podtrail.io/kind-test"
    value = uuid.uuid4().hex[:8]
    worker = kind.workers[-1]
    body = pod("waiting", container("app", SLEEP), grace=2, nodeSelector={label: value})
    await kind.kube.create_pod(namespace, body)
    try:
        record = await kind.kube.wait_record(
            namespace, "waiting", has_entry("FailedScheduling"), what="a FailedScheduling entry"
        )
        message = entry(record, "FailedScheduling").get("message") or ""
        why = reasons(message)
        assert sum(why.values()) == len(kind.nodes), why
        assert all("affinity/selector" in r or "taint" in r for r in why), why
        kind.kubectl("label", "node", worker, f"{label}={value}")
        await kind.kube.wait_pod(namespace, "waiting", pod_running, what="Running")
        record = await kind.kube.wait_record(
            namespace,
            "waiting",
            lambda r: status_of(r).get("nodeName") == worker and has_entry("Scheduled")(r),
            what=f"the record to name node {worker}",
        )
    finally:
        kind.kubectl("label", "node", worker, f"{label}-", check=False)
    timeline = [e["type"] for e in status_of(record)["timeline"]]
    assert timeline.index("FailedScheduling") < timeline.index("Scheduled"), describe(record)
    assert worker in entry(record, "Scheduled")["summary"], describe(record)
