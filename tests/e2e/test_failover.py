"""Two operators from the working tree, one Lease: one leads and writes, the other takes over.

The shared runner (conftest.OperatorProcess) runs one operator on fixed ports; this test needs
two, each with ports of its own and the same Lease, so it starts them itself. They track only
the test's namespace and hold a Lease of their own in it, so the shared operator (if the suite
runs it meanwhile) neither competes for their Lease nor is mistaken for them: "who writes" is
read from each process's own log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from podtrail.shell.settings import PodtrailSettings
from tests.e2e.support import Kube, container, has_phase, pod, pod_running

REPO = Path(__file__).resolve().parents[2]
LEASE_SECONDS, RETRY_SECONDS = 15.0, 2.0
# A standby sees the last renewal up to one jittered retry (2.2 retry periods) late, and
# notices the expiry at its next jittered retry.
TAKEOVER_BOUND = LEASE_SECONDS + 2 * 2.2 * RETRY_SECONDS + 2

pytestmark = [pytest.mark.cluster, pytest.mark.kubelet, pytest.mark.e2e]

# Until the options --lease-name/--lease-namespace exist, the operator is started through the
# same composition root with the election configured here.
LAUNCHER = """
import os, socket, sys
import kopf
from podtrail.shell.handlers import build_registry
from podtrail.shell.leader import ElectionConfig, default_identity
from podtrail.shell.logs import configure_logging
from podtrail.shell.metrics import Metrics
from podtrail.shell.settings import parse_settings

lease_namespace, lease_name, *argv = sys.argv[1:]
settings = parse_settings(argv)
os.environ["KUBECONFIG"] = settings.kubeconfig
configure_logging(settings.log_format, settings.log_level)
election = ElectionConfig(
    identity=default_identity(), lease_name=lease_name, lease_namespace=lease_namespace
)
kopf.run(
    registry=build_registry(settings, Metrics(), election),
    standalone=True,
    identity=f"podtrail@{socket.gethostname()}",
    clusterwide=False,
    namespaces=settings.namespaces,
    liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Replica:
    """One operator process with its own ports and log."""

    def __init__(self, name: str, kubeconfig: str, namespace: str, lease: str, logs: Path) -> None:
        self.name = name
        self.health_port, self.metrics_port = free_port(), free_port()
        self.log_path = logs / f"{name}.log"
        options = [
            "--kubeconfig", kubeconfig,
            "--namespace", namespace,
            "--log-format", "json",
            "--coalesce-seconds", "0.5",
            "--health-port", str(self.health_port),
            "--metrics-port", str(self.metrics_port),
        ]  # fmt: skip
        if hasattr(PodtrailSettings(), "lease_name"):
            command = ["-m", "podtrail", *options, "--lease-name", lease]
            command += ["--lease-namespace", namespace]
        else:
            command = ["-c", LAUNCHER, namespace, lease, *options]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *command], stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )

    def lines(self) -> list[dict[str, Any]]:
        parsed = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                parsed.append(json.loads(line))
        return parsed

    def logged(self, event: str, **fields: Any) -> bool:
        return any(
            line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
            for line in self.lines()
        )

    def get(self, port: int, path: str) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                return str(answer.read().decode())
        except OSError:
            return ""

    def leader_gauge(self) -> float | None:
        for line in self.get(self.metrics_port, "/metrics").splitlines():
            if line.startswith("podtrail_leader "):
                return float(line.split()[1])
        return None

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-20:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def eventually(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture
async def namespace(kube: Kube, kube_cluster: Any) -> AsyncIterator[str]:
    kube_cluster.kubectl_run("apply", "-k", str(REPO / "crds"))
    kube_cluster.kubectl_run(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/podlifecyclerecords.podtrail.io",
    )
    name = await kube.namespace("failover")
    yield name
    with contextlib.suppress(Exception):
        await kube.core.delete_namespace(name)


async def lease_holder(kube: Kube, namespace: str, name: str) -> str:
    try:
        lease = await client.CoordinationV1Api(kube.api).read_namespaced_lease(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return ""
        raise
    return str(lease.spec.holder_identity or "")


async def test_one_leader_writes_and_the_standby_takes_over_when_it_dies(
    kube: Kube, kube_cluster: Any, namespace: str
) -> None:
    lease, logs = "podtrail-failover", Path(tempfile.mkdtemp(prefix="podtrail-failover-"))
    first = Replica("first", str(kube_cluster.kubeconfig), namespace, lease, logs)
    await asyncio.sleep(3)  # the first takes the Lease; the second then stands by
    second = Replica("second", str(kube_cluster.kubeconfig), namespace, lease, logs)
    replicas = (first, second)
    try:
        await failover(kube, namespace, lease, first, second)
    except BaseException:
        for replica in replicas:
            print(f"--- {replica.name} ({replica.log_path}) ---\n{replica.tail()}")
        raise
    finally:
        for replica in replicas:
            replica.stop()


async def failover(kube: Kube, namespace: str, lease: str, first: Replica, second: Replica) -> None:
    await eventually("the first to lead", lambda: first.logged("podtrail started"))
    await eventually(
        "the second to stand by", lambda: "standby" in second.get(second.health_port, "/healthz")
    )
    holder = await lease_holder(kube, namespace, lease)
    assert holder.startswith(socket.gethostname()), holder
    assert (first.leader_gauge(), second.leader_gauge()) == (1.0, 0.0)

    await kube.create_pod(namespace, pod("before", container("app", "sleep 3600"), grace=1))
    await kube.wait_pod(namespace, "before", pod_running)
    await kube.wait_record(namespace, "before", has_phase("Running"))
    await asyncio.sleep(2)
    assert first.logged("fact", pod="before")
    assert not second.logged("fact") and not second.logged("podtrail started"), "one writer"

    first.process.send_signal(signal.SIGKILL)  # no flush, no release: the Lease must expire
    killed = time.monotonic()
    await eventually(
        "the second to take over",
        lambda: second.logged("podtrail started"),
        timeout=TAKEOVER_BOUND + 30,
    )
    took = time.monotonic() - killed
    print(f"failover after SIGKILL: {took:.1f} s (bound {TAKEOVER_BOUND:.1f} s)")
    assert took <= TAKEOVER_BOUND
    assert await lease_holder(kube, namespace, lease) != holder
    assert second.leader_gauge() == 1.0

    await kube.create_pod(namespace, pod("after", container("app", "sleep 3600"), grace=1))
    await kube.wait_pod(namespace, "after", pod_running)
    await kube.wait_record(namespace, "after", has_phase("Running"))
    await eventually("the new leader's facts", lambda: second.logged("fact", pod="after"))
