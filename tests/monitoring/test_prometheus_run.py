"""A real Prometheus scraping the operator on a real cluster, the kill alert firing.

Runs only with PODTRAIL_PROMETHEUS_TESTS=1 (`make test-prometheus`), on the session's cluster
(``kube_cluster``). The operator runs from the working tree (tests/support/operator.py) watching
only a namespace of the test's own, its metrics on a free port; Prometheus (image/prometheus.sh)
runs as a local process on 127.0.0.1, scraping it every second and evaluating
monitoring/prometheusrule.yaml's rules every second, as they are. A pod whose container ignores
SIGTERM is deleted with a 2 s grace period; the test waits until Prometheus's HTTP API reports
PodtrailContainersKilledAfterGrace firing for that namespace. Both processes and the namespace
go at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import KubeCluster
from tests.monitoring.promql import rule_file, rule_object, tool, write_yaml
from tests.support.kube import Kube, WaitTimeout, pod_phase, wait_for
from tests.support.operator import OperatorProcess, metric_sum

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.kubelet,
    pytest.mark.e2e,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        os.environ.get("PODTRAIL_PROMETHEUS_TESTS") != "1",
        reason="runs Prometheus and the operator against the cluster: set "
        "PODTRAIL_PROMETHEUS_TESTS=1 (make test-prometheus)",
    ),
]

TESTBOX = os.environ.get("PODTRAIL_TESTBOX_IMAGE", "podtrail.local/testbox:1")
ALERT = "PodtrailContainersKilledAfterGrace"
KILLED = "podtrail_containers_killed_after_grace_total"
IGNORES_TERM = "trap '' TERM; sleep 3600"
RIVAL = (
    "another podtrail operator writes this test's records (one watching every namespace, "
    "deployed or run by another test session): the writes it makes first are not counted here. "
    "Run with no other podtrail operator on the cluster"
)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Prometheus:
    """prometheus as a child process on 127.0.0.1, with its HTTP API."""

    def __init__(self, workdir: Path, target_port: int) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / "prometheus.log"
        write_yaml(workdir / "rules.yaml", rule_file(rule_object()))
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                {
                    "job_name": "podtrail",
                    "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                }
            ],
        }
        write_yaml(workdir / "prometheus.yaml", config)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            tool("prometheus"),
            f"--config.file={self.workdir / 'prometheus.yaml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    async def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>: its data; raises on anything but success."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{self.tail()}")
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
            async with session.get(url, params=params) as response:
                body = await response.json()
        assert body["status"] == "success", body
        return body["data"]

    async def answering(self) -> bool:
        try:
            await self.api("status/buildinfo")
        except (OSError, aiohttp.ClientError, TimeoutError):
            return False
        return True

    def tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) or "<no log>"


def ignoring_term(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "app",
                    "image": TESTBOX,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", IGNORES_TERM],
                }
            ],
        },
    }


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="podtrail-prometheus-"))
    yield path
    print(f"\nlogs: {path}")


@pytest.fixture
async def kube(kube_cluster: KubeCluster) -> AsyncIterator[Kube]:
    kube_cluster.kubectl_run("apply", "-k", str(Path(__file__).parents[2] / "crds"))
    kube_cluster.kubectl_run(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/podlifecyclerecords.podtrail.io",
    )
    connection = await Kube.connect(str(kube_cluster.kubeconfig))
    yield connection
    await connection.close()


async def firing(prometheus: Prometheus, namespace: str) -> dict[str, Any] | None:
    """The kill alert, firing, for this namespace; None while it is not."""
    for alert in (await prometheus.api("alerts"))["alerts"]:
        labels = alert["labels"]
        if labels.get("alertname") != ALERT or alert["state"] != "firing":
            continue
        assert labels.get("namespace") == namespace, (
            f"{ALERT} fired without the pod's namespace: {alert} (does the writer pass the "
            "record's namespace to Metrics.observe_status_change?)"
        )
        return dict(alert)
    return None


async def test_the_kill_alert_fires_for_a_pod_killed_after_its_grace_period(
    kube_cluster: KubeCluster, kube: Kube, workdir: Path
) -> None:
    namespace = await kube.create_namespace("podtrail-prom")
    operator = OperatorProcess(
        str(kube_cluster.kubeconfig),
        workdir,
        namespaces=[namespace],
        health_port=free_port(),
        metrics_port=free_port(),
        extra_args=["--no-leader-election"],
    )
    prometheus = Prometheus(workdir, operator.metrics_port)
    try:
        await operator.start()
        prometheus.start()
        await wait_for(prometheus.answering, timeout=60, what="Prometheus's API")
        await kill_and_see_the_alert(kube, prometheus, operator, namespace)
    finally:
        prometheus.stop()
        await operator.stop()
        await kube.delete_namespace(namespace)


async def rivalled(operator: OperatorProcess) -> bool:
    """Whether another writer got there first: a record it created, a status it changed."""
    samples = await operator.metrics()
    writes = "podtrail_status_writes_total"
    created = metric_sum(samples, writes, kind="create", result="exists")
    return created + metric_sum(samples, writes, result="conflict") > 0


async def kill_and_see_the_alert(
    kube: Kube, prometheus: Prometheus, operator: OperatorProcess, namespace: str
) -> None:
    await kube.apply(ignoring_term("stubborn"), namespace)
    await kube.wait_pod(namespace, "stubborn", pod_phase("Running"), what="Running")

    async def scraped_at_zero() -> bool:
        query = f'{KILLED}{{namespace="{namespace}"}}'
        result = (await prometheus.api("query", query=query))["result"]
        return bool(result) and float(result[0]["value"][1]) == 0

    # The namespace's series exists, at 0, before the kill: increase() will see it rise.
    await wait_for(scraped_at_zero, timeout=60, what=f"{KILLED} at 0 for {namespace}")
    if await rivalled(operator):
        pytest.skip(RIVAL)
    deleted = time.monotonic()
    await kube.delete_pod(namespace, "stubborn")

    async def fired() -> dict[str, Any] | None:
        return await firing(prometheus, namespace)

    async def seen() -> str:
        said = []
        for query in (f"{{__name__=~'{KILLED}|podtrail_outcomes_total'}}", "ALERTS"):
            result = (await prometheus.api("query", query=query))["result"]
            said += [f"{item['metric']} {item['value'][1]}" for item in result]
        return "\n".join(said) or "no such series"

    try:
        alert = await wait_for(
            fired, timeout=120, what=f"{ALERT} firing", interval=0.5, describe=seen
        )
    except WaitTimeout:
        if await rivalled(operator):
            pytest.skip(RIVAL)
        raise
    seconds = time.monotonic() - deleted
    print(f"\n{ALERT} firing {seconds:.1f} s after the deletion (grace 2 s):")
    print(json.dumps(alert, indent=2))
    (prometheus.workdir / "alert.json").write_text(json.dumps(alert, indent=2) + "\n")
    assert float(alert["value"]) > 0
    assert alert["labels"]["severity"] == "warning"
    assert seconds < 60
