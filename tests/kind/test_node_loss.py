"""A node lost and found again: `docker stop` of a worker, as the record tells it.

What Kubernetes does: the node stops reporting; after the controller-manager's node-monitor
grace period (shortened by kind/up.sh) it is NotReady (Ready Unknown), its pods' Ready turns
False (with a NodeNotReady Event) and the node gets the unreachable NoExecute taint; each pod is
marked for deletion by the taint manager once its toleration runs out (DisruptionTarget,
DeletionByTaintManager), and stays Terminating, as nothing can stop its containers, until the
node is back (or the pod is force-deleted). `docker start` brings the node back; the kubelet then
finishes the deletions, and the pod network must work again. A restarted node may get another
address: while it is stopped, a placeholder container takes its address on the cluster's
network, so it comes back with a new one (PODTRAIL_KIND_KEEP_ADDRESS=1 lets it keep its own).

One scenario plays the whole story (module fixture); each test checks one part of it. The
figures (seconds from the stop to each recorded fact) are printed and written to
out/kind/node-loss.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.support import (
    Obj,
    container,
    describe,
    entries,
    entry,
    has_phase,
    parse_time,
    pod,
    pod_ready,
    status_of,
)
from tests.kind.conftest import (
    DeployedOperator,
    KindCluster,
    LocalOperator,
    node_address,
    results_dir,
)

pytestmark = [pytest.mark.cluster, pytest.mark.kubelet, pytest.mark.kind, pytest.mark.e2e]

TOLERATIONS = {"fast": 10, "slow": 25}  # pod name -> tolerationSeconds
GRACE = 5
TRAP_TERM = "trap 'exit 0' TERM; while true; do sleep 1; done"
HTTP_GET = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {target} 8080"
NEW_ADDRESS = os.environ.get("PODTRAIL_KIND_KEEP_ADDRESS") != "1"


def tolerations(seconds: int) -> list[Obj]:
    return [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
    ]


def fetch_until_ok(target: str, seconds: int = 30) -> str:
    """A client script: GET target:8080 until the test page answers (exit 0), or give up (1)."""
    get = HTTP_GET.format(target=target)
    return (
        f"for i in $(seq 1 {seconds}); do if {get} | grep -q testbox; then echo ok; exit 0; fi; "
        "sleep 1; done; echo unreachable; exit 1"
    )


@dataclass
class NodeLoss:
    """What the scenario saw."""

    node: str
    operator: str
    address_before: str
    address_taken: bool = False
    stopped_at: float = 0.0
    not_ready_at: float = 0.0  # the node's Ready condition left True (its lastTransitionTime)
    terminating_seen: dict[str, float] = field(default_factory=dict)
    still_terminating: dict[str, bool] = field(default_factory=dict)
    outcome_before_return: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    ready_again_at: float = 0.0
    address_after: str = ""
    gone_at: dict[str, float] = field(default_factory=dict)
    records: dict[str, Obj] = field(default_factory=dict)
    network: dict[str, str] = field(default_factory=dict)

    def since_stop(self, stamp: str | float) -> float:
        moment = parse_time(stamp).timestamp() if isinstance(stamp, str) else stamp
        return round(moment - self.stopped_at, 1)


def first(record: Obj, kind: str, predicate: Any = None) -> Obj | None:
    found = [e for e in entries(record, kind) if predicate is None or predicate(e)]
    return found[0] if found else None


def ready_false(entry: Obj) -> bool:
    return "Ready is False" in entry.get("summary", "") and "ContainersReady" not in entry.get(
        "summary", ""
    )


async def run_node_loss(kind: KindCluster, operator: LocalOperator | DeployedOperator) -> NodeLoss:
    node = kind.workers[-1]
    await operator.keep_off(node)
    loss = NodeLoss(
        node=node, operator=operator.where, address_before=node_address(await kind.node(node))
    )
    namespace = await kind.kube.namespace("kind-nodeloss")
    try:
        for name, seconds in TOLERATIONS.items():
            body = pod(
                name,
                container("app", TRAP_TERM),
                grace=GRACE,
                nodeSelector={"kubernetes.io/hostname": node},
                tolerations=tolerations(seconds),
            )
            await kind.kube.create_pod(namespace, body)
        for name in TOLERATIONS:
            await kind.kube.wait_pod(namespace, name, pod_ready, what="Ready")
            await kind.kube.wait_record(namespace, name, has_phase("Running"))
        await asyncio.sleep(2)  # the record settles on Running/Ready

        loss.stopped_at = time.time()
        kind.docker_run("stop", node)
        placeholder = f"{node}-address-taken"
        try:
            if NEW_ADDRESS:
                loss.address_taken = take_address(kind, node, loss.address_before, placeholder)
            await lose_and_find(kind, loss, namespace)
        finally:
            if (
                kind.docker_run("inspect", "-f", "{{.State.Running}}", node).stdout.strip()
                != "true"
            ):
                kind.docker_run("start", node, check=False)
                await kind.wait_node(node, "True", timeout=180)
            kind.docker_run("rm", "-f", placeholder, check=False)

        await check_network(kind, loss, namespace)
    finally:
        await kind.kube.core.delete_namespace(namespace, propagation_policy="Background")
    write_figures(loss)
    return loss


def take_address(kind: KindCluster, node: str, address: str, name: str) -> bool:
    """Hold the stopped node's address with a container of the node's image (sleeping).
    False when the network does not allow it (a fixed address needs a network whose subnet
    was given at its creation: the project's own is, kind's default one may not be)."""
    networks = "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}"
    cluster = '{{index .Config.Labels "io.x-k8s.kind.cluster"}}'
    found = kind.docker_run("inspect", "-f", f"{{{{.Config.Image}}}} {networks} {cluster}", node)
    image, network, cluster_name = found.stdout.split()
    kind.docker_run("rm", "-f", name, check=False)
    placeholder = kind.docker_run(
        "run",
        "-d",
        "--name",
        name,
        # kind/down.sh removes what carries this label, should the test not.
        "--label",
        f"io.podtrail.kind.cluster={cluster_name}",
        "--network",
        network,
        "--ip",
        address,
        "--entrypoint",
        "sleep",
        image,
        "600",
        check=False,
    )
    if placeholder.returncode != 0:
        print(f"\nthe node keeps its address: {placeholder.stderr.strip()}")
        kind.docker_run("rm", "-f", name, check=False)
    return placeholder.returncode == 0


async def lose_and_find(kind: KindCluster, loss: NodeLoss, namespace: str) -> None:
    node = loss.node
    await kind.wait_node(node, "Unknown", timeout=120)
    for condition in (await kind.node(node)).status.conditions or []:
        if condition.type == "Ready":
            loss.not_ready_at = condition.last_transition_time.timestamp()

    # Each pod: marked for deletion after its toleration, then left Terminating.
    for name in TOLERATIONS:
        await kind.kube.wait_pod(
            namespace,
            name,
            lambda p: bool(p["metadata"].get("deletionTimestamp")),
            timeout=120,
            what="deletion requested by the taint manager",
        )
        loss.terminating_seen[name] = time.time()
    # Well past the slowest pod's grace deadline: nothing on the node can finish the deletion.
    await asyncio.sleep(GRACE + 10)
    for name in TOLERATIONS:
        current = await kind.kube.read_pod(namespace, name)
        loss.still_terminating[name] = bool(
            current and current["metadata"].get("deletionTimestamp")
        )
        record = await kind.kube.wait_record(
            namespace,
            name,
            lambda r: bool(first(r, "TaintManagerDeletion")),
            timeout=60,
            what="the taint manager's deletion",
        )
        loss.outcome_before_return[name] = status_of(record).get("outcome")

    loss.started_at = time.time()
    kind.docker_run("start", node)
    loss.ready_again_at = await kind.wait_node(node, "True", timeout=180)
    loss.address_after = node_address(await kind.node(node))
    for name in TOLERATIONS:
        await kind.kube.wait_pod_gone(namespace, name, timeout=120)
        loss.gone_at[name] = time.time()
    for name in TOLERATIONS:
        loss.records[name] = await kind.kube.wait_record(
            namespace,
            name,
            lambda r: bool(status_of(r).get("outcome")) and bool(first(r, "PodDeleted")),
            timeout=60,
            what="the record's outcome after the removal",
        )


async def check_network(kind: KindCluster, loss: NodeLoss, namespace: str) -> None:
    """Pods on the node that came back and on the control plane reach each other, by address
    and through a Service name (cluster DNS, kube-proxy)."""
    serve = "httpd -f -p 8080 -h /var/www"
    placements = {"web-back": loss.node, "web-cp": kind.control_plane}
    for name, where in placements.items():
        body = pod(
            name, container("app", serve), grace=1, nodeSelector={"kubernetes.io/hostname": where}
        )
        await kind.kube.create_pod(namespace, body)
    service: Any = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "back"},
        "spec": {"selector": {"app": "web-back"}, "ports": [{"port": 8080}]},
    }
    await kind.kube.core.create_namespaced_service(namespace, service)
    addresses = {}
    for name in placements:
        ready = await kind.kube.wait_pod(namespace, name, pod_ready, timeout=120, what="Ready")
        addresses[name] = ready["status"]["podIP"]
    checks = {
        "control plane -> pod on the node back": (kind.control_plane, addresses["web-back"]),
        "node back -> pod on the control plane": (loss.node, addresses["web-cp"]),
        "control plane -> Service by name": (
            kind.control_plane,
            f"back.{namespace}.svc.cluster.local",
        ),
    }
    for index, (what, (where, target)) in enumerate(checks.items()):
        name = f"client-{index}"
        body = pod(
            name,
            container("app", fetch_until_ok(target)),
            restart="Never",
            nodeSelector={"kubernetes.io/hostname": where},
        )
        await kind.kube.create_pod(namespace, body)
        done = await kind.kube.wait_pod(
            namespace,
            name,
            lambda p: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
            timeout=90,
            what="the client's end",
        )
        loss.network[what] = done["status"]["phase"]


def write_figures(loss: NodeLoss) -> None:
    figures: dict[str, Any] = {
        "node": loss.node,
        "operator": loss.operator,
        "address": {
            "before": loss.address_before,
            "after": loss.address_after,
            "old one taken while stopped": loss.address_taken,
        },
        "node NotReady (node condition)": loss.since_stop(loss.not_ready_at),
        "node started again": loss.since_stop(loss.started_at),
        "node Ready again": loss.since_stop(loss.ready_again_at),
        "pods": {},
    }
    for name, record in loss.records.items():
        facts: dict[str, Any] = {"tolerationSeconds": TOLERATIONS[name]}
        for label, kind, predicate in (
            ("Ready False", "ConditionChanged", ready_false),
            ("NodeNotReady event", "EventReported", lambda e: "NodeNotReady" in e["summary"]),
            ("TaintManagerDeletion", "TaintManagerDeletion", None),
            ("DeletionRequested", "DeletionRequested", None),
            ("ContainerTerminated", "ContainerTerminated", None),
            ("PodDeleted", "PodDeleted", None),
        ):
            found = first(record, kind, predicate)
            facts[label] = loss.since_stop(found["time"]) if found else None
        facts["removed (seen by the test)"] = loss.since_stop(loss.gone_at[name])
        facts["outcome"] = status_of(record).get("outcome")
        figures["pods"][name] = facts
    figures["network after the return"] = loss.network
    text = json.dumps(figures, indent=2)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results_dir() / "node-loss.json").write_text(text + "\n")
    (results_dir() / f"node-loss-{stamp}.json").write_text(text + "\n")
    print(f"\nnode loss, seconds from `docker stop {loss.node}`:\n{text}")


@pytest.fixture(scope="module")
async def loss(kind: KindCluster, operator: LocalOperator | DeployedOperator) -> NodeLoss:
    try:
        return await run_node_loss(kind, operator)
    except BaseException:
        print(f"--- operator log (tail) ---\n{operator.tail()}")
        raise


def test_the_node_goes_not_ready_after_the_grace_period(loss: NodeLoss) -> None:
    seconds = loss.since_stop(loss.not_ready_at)
    # kind/up.sh sets node-monitor-grace-period=20s (Kubernetes' default is 50 s).
    assert 5 <= seconds <= 45, seconds


def test_the_pods_ready_turns_false_when_the_node_is_lost(loss: NodeLoss) -> None:
    for name, record in loss.records.items():
        not_ready = first(record, "ConditionChanged", ready_false)
        assert not_ready is not None, describe(record)
        assert abs(loss.since_stop(not_ready["time"]) - loss.since_stop(loss.not_ready_at)) <= 3, (
            name,
            describe(record),
        )
        notice = first(record, "EventReported", lambda e: "NodeNotReady" in e["summary"])
        assert notice is not None, describe(record)


def test_the_taint_manager_marks_them_after_their_toleration(loss: NodeLoss) -> None:
    for name, record in loss.records.items():
        taint = first(record, "TaintManagerDeletion")
        requested = first(record, "DeletionRequested")
        assert taint is not None and requested is not None, describe(record)
        after_not_ready = loss.since_stop(taint["time"]) - loss.since_stop(loss.not_ready_at)
        assert TOLERATIONS[name] - 2 <= after_not_ready <= TOLERATIONS[name] + 10, (
            name,
            after_not_ready,
            describe(record),
        )
        assert abs(parse_time(requested["time"]) - parse_time(taint["time"])).total_seconds() <= 2
        termination = status_of(record)["termination"]
        assert termination["disruptionReason"] == "DeletionByTaintManager", termination
        assert termination["gracePeriodSeconds"] == GRACE, termination
    fast = loss.since_stop(entry(loss.records["fast"], "TaintManagerDeletion")["time"])
    slow = loss.since_stop(entry(loss.records["slow"], "TaintManagerDeletion")["time"])
    assert slow - fast >= TOLERATIONS["slow"] - TOLERATIONS["fast"] - 3, (fast, slow)


def test_they_stay_terminating_until_the_node_is_back(loss: NodeLoss) -> None:
    assert all(loss.still_terminating.values()), loss.still_terminating
    # No end yet while the node is away: the containers may still run there.
    assert loss.outcome_before_return == {name: None for name in TOLERATIONS}
    for name, record in loss.records.items():
        deleted = first(record, "PodDeleted")
        assert deleted is not None and loss.since_stop(deleted["time"]) >= loss.since_stop(
            loss.started_at
        ), describe(record)


def test_the_record_ends_with_the_taint_managers_deletion(loss: NodeLoss) -> None:
    for record in loss.records.values():
        status = status_of(record)
        assert status["outcome"] == "TaintManagerDeletion", describe(record)
        assert status["removal"]["observed"] is True, status["removal"]
        assert status["termination"]["verdict"] == "TaintManagerDeletion", status["termination"]


def test_the_pod_network_works_after_the_node_is_back(loss: NodeLoss) -> None:
    assert loss.network and set(loss.network.values()) == {"Succeeded"}, loss.network
    if loss.address_taken:
        assert loss.address_after != loss.address_before, "the node kept its address"


def test_the_story_takes_well_under_two_minutes(loss: NodeLoss) -> None:
    slow = loss.records["slow"]
    taint = loss.since_stop(entry(slow, "TaintManagerDeletion")["time"])
    assert taint < 90, taint
