"""The operator's traces received by a real OpenTelemetry Collector, from pods on a real kubelet.

Runs only with PODTRAIL_TRACE_TESTS=1 (`make test-traces`), on the session's cluster. The
collector (image/otelcol.sh, tests/support/collector.py) listens on 127.0.0.1 and writes what it
receives to a file; the operator runs from the working tree, watching a namespace of the test's
own, exporting over OTLP/gRPC (and OTLP/HTTP in a second test). A mixed workload (a pod killed
after its grace period, one exiting on SIGTERM, an init container failing once, an OOM kill, a
failure, a container restarting twice) must arrive as one trace per pod whose spans match the
record's times; with the collector stopped, records are still written and the lost spans are
counted; started again, the next pod's trace arrives.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KubeCluster
from tests.support.collector import Collector, Span
from tests.support.kube import Kube, pod_phase, wait_for
from tests.support.operator import OperatorProcess, apply_crds, metric_sum
from tests.support.pods import container, pod
from tests.support.records import status_of

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.kubelet,
    pytest.mark.e2e,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        os.environ.get("PODTRAIL_TRACE_TESTS") != "1",
        reason="runs an OpenTelemetry Collector and the operator against the cluster: set "
        "PODTRAIL_TRACE_TESTS=1 (make test-traces)",
    ),
]

IGNORES_TERM = "trap '' TERM; sleep 3600"
FLAKY_INIT = "if [ -f /work/tried ]; then exit 0; fi; touch /work/tried; exit 1"
WORK: dict[str, Any] = {"volumeMounts": [{"name": "work", "mountPath": "/work"}]}
TRAP_TERM = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
TWICE_FAILING = (
    'n=$(cat /work/n 2>/dev/null || echo 0); echo $((n + 1)) > /work/n; [ "$n" -ge 2 ] && exit 0; '
    "sleep 1; exit 1"
)
EAT_MEMORY = "head -c 200m /dev/zero | tail > /dev/null"
STARTS = ("ContainerStarted", "SidecarStarted")
ENDS = ("ContainerTerminated", "ExitedOnTerm", "KilledAfterGrace", "OOMKilled")
DROPPED = "podtrail_trace_spans_dropped_total"
EXPORTED = "podtrail_trace_spans_exported_total"


@pytest.fixture
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("traces")
    yield path
    print(f"\nlogs: {path}")


@pytest.fixture
async def kube(kube_cluster: KubeCluster) -> AsyncIterator[Kube]:
    apply_crds(kube_cluster.kubectl, str(kube_cluster.kubeconfig))
    async with Kube.opened(str(kube_cluster.kubeconfig)) as connection:
        yield connection


def stubborn(name: str) -> dict[str, Any]:
    return pod(name, container("app", IGNORES_TERM), grace=2)


def init_retried(name: str) -> dict[str, Any]:
    return pod(
        name,
        container("app", "sleep 1; exit 0", **WORK),
        init=[container("flaky", FLAKY_INIT, **WORK)],
        restart="OnFailure",
        volumes=[{"name": "work", "emptyDir": {}}],
    )


def workload() -> dict[str, tuple[dict[str, Any], str]]:
    """A mixed workload: each pod, and the phase it is deleted in."""
    volume: dict[str, Any] = {"volumes": [{"name": "work", "emptyDir": {}}]}
    limits = {"limits": {"memory": "24Mi"}, "requests": {"memory": "24Mi"}}
    return {
        "stubborn": (stubborn("stubborn"), "Running"),
        "init-retried": (init_retried("init-retried"), "Succeeded"),
        "graceful": (pod("graceful", container("app", TRAP_TERM), grace=10), "Running"),
        "oom": (
            pod("oom", container("app", EAT_MEMORY, resources=limits), restart="Never"),
            "Failed",
        ),
        "failer": (pod("failer", container("app", "sleep 1; exit 3"), restart="Never"), "Failed"),
        "restarter": (
            pod(
                "restarter", container("app", TWICE_FAILING, **WORK), restart="OnFailure", **volume
            ),
            "Succeeded",
        ),
    }


def trace_of(collector: Collector, uid: str) -> list[Span]:
    trace = uuid.UUID(uid).hex
    return [s for s in collector.spans() if s["trace_id"] == trace]


async def ended_trace(collector: Collector, uid: str, what: str) -> list[Span]:
    """The pod's spans once its root span (the whole life) has arrived."""

    async def arrived() -> list[Span] | None:
        spans = trace_of(collector, uid)
        return spans if any(s["parent_span_id"] == "" for s in spans) else None

    async def log() -> str:
        return collector.tail()

    found: list[Span] = await wait_for(
        arrived, timeout=90, what=f"the trace of {what}", describe=log
    )
    return found


async def removed(kube: Kube, namespace: str, name: str) -> str:
    """Delete a pod and wait until it is gone; its UID."""
    found = kube.plain(await kube.read_pod(namespace, name))
    await kube.delete_pod(namespace, name)
    await kube.wait_pod_gone(namespace, name)
    return str(found["metadata"]["uid"])


async def final_record(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        record = await kube.record(namespace, name)
        status = status_of(record)
        return record if status.get("outcome") and status.get("removal") else None

    found: dict[str, Any] = await wait_for(ended, timeout=60, what=f"{name}'s record ended")
    return found


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def one(spans: list[Span], name: str) -> Span:
    found = [s for s in spans if s["name"] == name]
    assert len(found) == 1, sorted(s["name"] for s in spans)
    return found[0]


def check_matches_record(spans: list[Span], record: dict[str, Any]) -> None:
    """One root for the whole life; each run's start and end are entries of the record."""
    status = status_of(record)
    roots = [s for s in spans if s["parent_span_id"] == ""]
    assert len(roots) == 1, roots
    root = roots[0]
    assert root["start"] == when(status["times"]["created"])
    assert root["end"] == when(status["removal"]["time"])
    assert root["attributes"]["podtrail.outcome"] == status["outcome"]
    entries = status["timeline"]
    starts = {(e.get("container"), when(e["time"])) for e in entries if e["type"] in STARTS}
    ends = {(e.get("container"), when(e["time"])) for e in entries if e["type"] in ENDS}
    runs: dict[str, int] = {}
    for span in spans:
        name = span["attributes"].get("k8s.container.name")
        if span["parent_span_id"] != root["span_id"] or span["name"] == "termination":
            continue
        if name is not None:
            assert (name, span["start"]) in starts | ends, (span["name"], span["start"])
            if span["attributes"]["podtrail.run.ended"]:
                assert (name, span["end"]) in ends, (span["name"], span["end"])
            runs[str(name)] = runs.get(str(name), 0) + 1
    restarts = {c["name"]: c.get("restartCount", 0) for c in status["containers"]}
    assert runs == {name: count + 1 for name, count in restarts.items()}


def check_killed(spans: list[Span], record: dict[str, Any], namespace: str) -> None:
    status = status_of(record)
    root = next(s for s in spans if s["parent_span_id"] == "")
    assert root["name"] == f"pod {namespace}/stubborn"
    assert {s["parent_span_id"] for s in spans if s is not root} == {root["span_id"]}
    assert root["start"] == when(status["times"]["created"])
    assert root["attributes"]["podtrail.outcome"] == "KilledAfterGrace"
    assert root["resource"]["k8s.pod.uid"] == status["podUID"]
    assert root["resource"]["k8s.namespace.name"] == namespace
    assert root["resource"]["k8s.node.name"] == status["nodeName"]
    run = one(spans, "container app")
    assert run["attributes"]["container.exit_code"] == 137
    assert run["status"]["code"] == 2  # error
    termination = one(spans, "termination")
    attributes = termination["attributes"]
    assert attributes["podtrail.grace_period_seconds"] == 2
    assert attributes["podtrail.verdict"] == "KilledAfterGrace"
    assert termination["start"] == when(status["termination"]["requestedAt"])
    kill = [e for e in termination["events"] if e["name"] == "SIGKILL"]
    assert len(kill) == 1 and kill[0]["attributes"]["k8s.container.name"] == "app"
    assert all(root["start"] <= s["start"] <= s["end"] <= root["end"] for s in spans)


def check_init_retried(spans: list[Span]) -> None:
    flaky = sorted((s for s in spans if s["name"] == "init flaky"), key=lambda s: s["start_ns"])
    assert [s["attributes"]["container.exit_code"] for s in flaky] == [1, 0]
    assert [s["status"]["code"] for s in flaky] == [2, 0]
    app = one(spans, "container app")
    assert app["attributes"]["container.exit_code"] == 0
    assert flaky[-1]["end"] <= app["start"]
    root = next(s for s in spans if s["parent_span_id"] == "")
    assert root["attributes"]["podtrail.outcome"] == "Succeeded"


@contextlib.asynccontextmanager
async def traced(
    kube_cluster: KubeCluster, kube: Kube, workdir: Path, prefix: str, protocol: str
) -> AsyncIterator[tuple[str, Collector, OperatorProcess]]:
    """A namespace, a collector and an operator exporting to it over `protocol`; all go after."""
    namespace = await kube.create_namespace(prefix)
    with Collector(workdir / "collector") as collector:
        endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint
        operator = OperatorProcess(
            str(kube_cluster.kubeconfig),
            workdir,
            namespaces=[namespace],
            extra_args=[
                "--no-leader-election",
                "--otlp-live-interval-seconds",
                "0",
                "--otlp-endpoint",
                endpoint,
                "--otlp-protocol",
                protocol,
                "--otlp-timeout-seconds",
                "2",
                *(["--otlp-insecure"] if protocol == "grpc" else []),
            ],
        )
        try:
            await operator.start()
            yield namespace, collector, operator
        finally:
            await operator.stop()
            await kube.delete_namespace(namespace)


async def test_a_mixed_workload_arrives_as_one_trace_per_pod_over_grpc(
    kube_cluster: KubeCluster, kube: Kube, workdir: Path
) -> None:
    async with traced(kube_cluster, kube, workdir, "podtrail-traces", "grpc") as opened:
        namespace, collector, operator = opened
        pods = workload()
        for manifest, _ in pods.values():
            await kube.apply(manifest, namespace)
        uids = {}
        for name, (_, phase) in pods.items():
            await kube.wait_pod(namespace, name, pod_phase(phase), what=phase, timeout=180)
            uids[name] = await removed(kube, namespace, name)
        traces = {name: await ended_trace(collector, uid, name) for name, uid in uids.items()}
        records = {name: await final_record(kube, namespace, name) for name in pods}
        for name, spans in traces.items():
            check_matches_record(spans, records[name])
        check_killed(traces["stubborn"], records["stubborn"], namespace)
        check_init_retried(traces["init-retried"])
        roots = [s for s in collector.spans() if s["parent_span_id"] == ""]
        assert sorted(s["trace_id"] for s in roots) == sorted(
            uuid.UUID(u).hex for u in uids.values()
        )
        samples = await operator.metrics()
        assert metric_sum(samples, EXPORTED) >= len(collector.spans())
        assert metric_sum(samples, DROPPED) == 0


async def test_a_stopped_collector_loses_spans_counted_never_records(
    kube_cluster: KubeCluster, kube: Kube, workdir: Path
) -> None:
    async with traced(kube_cluster, kube, workdir, "podtrail-traces-down", "http") as opened:
        namespace, collector, operator = opened
        collector.stop()
        names = [f"while-down-{n}" for n in range(3)]
        for name in names:
            await kube.apply(pod(name, container("app", "exit 0"), restart="Never"), namespace)
        for name in names:
            await kube.wait_pod(namespace, name, pod_phase("Succeeded"), what="done")
            await removed(kube, namespace, name)
        for name in names:  # the records are written all the same
            assert status_of(await final_record(kube, namespace, name))["outcome"] == "Succeeded"

        async def dropped() -> float | None:
            count = metric_sum(await operator.metrics(), DROPPED)
            return count if count > 0 else None

        lost = await wait_for(dropped, timeout=120, what=f"{DROPPED} above 0")
        print(f"\nspans dropped while the collector was down: {lost:g}")
        collector.start()
        await kube.apply(pod("after", container("app", "exit 0"), restart="Never"), namespace)
        await kube.wait_pod(namespace, "after", pod_phase("Succeeded"), what="done")
        uid = await removed(kube, namespace, "after")
        spans = await ended_trace(collector, uid, "after")
        assert one(spans, "container app")["attributes"]["container.exit_code"] == 0
