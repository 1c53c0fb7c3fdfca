"""The operator's traces received by a real OpenTelemetry Collector, from pods on a real kubelet.

Runs only with PODTRAIL_TRACE_TESTS=1 (`make test-traces`), on the session's cluster. The
collector (image/otelcol.sh, tests/support/collector.py) listens on 127.0.0.1 and writes what it
receives to a file; the operator runs from the working tree, watching a namespace of the test's
own, exporting over OTLP/gRPC (and OTLP/HTTP in a second test). A pod killed after its grace
period and a pod whose init container fails once must each arrive as one trace whose spans match
the record's times; with the collector stopped, records are still written and the lost spans
are counted; started again, the next pod's trace arrives.
"""

from __future__ import annotations

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
WORK = {"volumeMounts": [{"name": "work", "mountPath": "/work"}]}
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


def exporting(
    kube_cluster: KubeCluster, workdir: Path, namespace: str, *args: str
) -> OperatorProcess:
    return OperatorProcess(
        str(kube_cluster.kubeconfig),
        workdir,
        namespaces=[namespace],
        extra_args=["--no-leader-election", "--otlp-live-interval-seconds", "0", *args],
    )


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


async def test_a_killed_pod_and_a_retried_init_arrive_as_traces_over_grpc(
    kube_cluster: KubeCluster, kube: Kube, workdir: Path
) -> None:
    namespace = await kube.create_namespace("podtrail-traces")
    with Collector(workdir / "collector") as collector:
        operator = exporting(
            kube_cluster,
            workdir,
            namespace,
            "--otlp-endpoint",
            collector.grpc_endpoint,
            "--otlp-insecure",
        )
        try:
            await operator.start()
            await kube.apply(stubborn("stubborn"), namespace)
            await kube.apply(init_retried("init-retried"), namespace)
            await kube.wait_pod(namespace, "stubborn", pod_phase("Running"), what="Running")
            await kube.wait_pod(namespace, "init-retried", pod_phase("Succeeded"), what="done")
            killed_uid = await removed(kube, namespace, "stubborn")
            init_uid = await removed(kube, namespace, "init-retried")
            check_killed(
                await ended_trace(collector, killed_uid, "stubborn"),
                await final_record(kube, namespace, "stubborn"),
                namespace,
            )
            check_init_retried(await ended_trace(collector, init_uid, "init-retried"))
            samples = await operator.metrics()
            assert metric_sum(samples, EXPORTED) >= len(collector.spans())
            assert metric_sum(samples, DROPPED) == 0
        finally:
            await operator.stop()
            await kube.delete_namespace(namespace)


async def test_a_stopped_collector_loses_spans_counted_never_records(
    kube_cluster: KubeCluster, kube: Kube, workdir: Path
) -> None:
    namespace = await kube.create_namespace("podtrail-traces-down")
    with Collector(workdir / "collector") as collector:
        operator = exporting(
            kube_cluster,
            workdir,
            namespace,
            "--otlp-endpoint",
            collector.http_endpoint,
            "--otlp-protocol",
            "http",
            "--otlp-timeout-seconds",
            "2",
        )
        try:
            await operator.start()
            collector.stop()
            names = [f"while-down-{n}" for n in range(3)]
            for name in names:
                await kube.apply(pod(name, container("app", "exit 0"), restart="Never"), namespace)
            for name in names:
                await kube.wait_pod(namespace, name, pod_phase("Succeeded"), what="done")
                await removed(kube, namespace, name)
            for name in names:  # the records are written all the same
                assert (
                    status_of(await final_record(kube, namespace, name))["outcome"] == "Succeeded"
                )

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
        finally:
            await operator.stop()
            await kube.delete_namespace(namespace)
