"""Fixtures of the multi-node tests: a kind cluster, its node containers, and the operator.

The tests run when the session's cluster (``kube_cluster``: KUBECONFIG, else ~/.kube/config, by
cluster/context.sh) is a kind cluster (a ``kind-`` context whose nodes' ``providerID`` is
``kind://...``) with a worker node; otherwise they are skipped:

    make kind && export KUBECONFIG=/var/lib/podtrail/kind/kubeconfig
    .venv/bin/pytest tests/kind

The operator is the one deployed in the cluster (``kubectl apply -k manifests/``, e.g. through
``image/deploy.sh``) when its Deployment is ready, else one started here from the working tree.
``docker stop``/``docker start`` reach the node containers through the project's Docker engine
(``/run/podtrail-docker.sock``) when it runs, else through ``DOCKER_HOST`` or the default one.
A test that opens the project's local cluster next to kind (the ``local_cluster`` fixture) is
marked ``beside_local``: it runs only with PODTRAIL_BESIDE_LOCAL_TESTS=1.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from tests.e2e.support import Kube
from tests.support.cluster import BESIDE_LOCAL, find_kubectl

REPO = Path(__file__).resolve().parents[2]
PROJECT_DOCKER_SOCKET = Path(os.environ.get("PODTRAIL_DOCKER_SOCKET", "/run/podtrail-docker.sock"))
OPERATOR_NAMESPACE, OPERATOR_NAME = "podtrail-system", "podtrail"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kind: needs a kind cluster of two nodes or more (the session's cluster)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that opens the local cluster next to kind says so (beside_local)."""
    for item in items:
        if "local_cluster" in getattr(item, "fixturenames", ()) and not item.get_closest_marker(
            BESIDE_LOCAL
        ):
            item.add_marker(BESIDE_LOCAL)


def docker_command() -> list[str]:
    """The docker CLI that reaches the kind nodes' engine."""
    if not os.environ.get("DOCKER_HOST") and PROJECT_DOCKER_SOCKET.is_socket():
        cli = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
        return [cli, "-H", f"unix://{PROJECT_DOCKER_SOCKET}"]
    return ["docker"]


def kubectl_path() -> str:
    """The kubectl cluster/context.sh finds (the session's, when no session chose one)."""
    found = find_kubectl()
    if found is None:
        raise RuntimeError("no kubectl: put one on PATH")
    return found


@dataclass
class KindCluster:
    """The kind cluster under test."""

    kubeconfig: str
    kube: Kube
    control_plane: str
    workers: list[str]
    docker: list[str]
    kubectl_bin: str = field(default_factory=kubectl_path)

    @property
    def nodes(self) -> list[str]:
        return [self.control_plane, *self.workers]

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def docker_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.docker, *args], capture_output=True, text=True, check=check, timeout=120
        )

    def running(self, node: str) -> bool:
        """Whether the node's container runs."""
        state = self.docker_run("inspect", "-f", "{{.State.Running}}", node, check=False)
        return state.stdout.strip() == "true"

    async def node(self, name: str) -> client.V1Node:
        return await self.kube.core.read_node(name)

    async def node_ready(self, name: str) -> str:
        """The node's Ready condition status: True, False or Unknown."""
        node = await self.node(name)
        for condition in node.status.conditions or []:
            if condition.type == "Ready":
                return str(condition.status)
        return "Unknown"

    async def wait_node(self, name: str, status: str, timeout: float = 120) -> float:
        """Wait until the node's Ready condition has the status; return when it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.node_ready(name) == status:
                return time.time()
            await asyncio.sleep(0.5)
        raise AssertionError(f"node {name}: Ready did not become {status} in {timeout:g} s")


@pytest.fixture(scope="session")
async def kind(kube_cluster: Any) -> AsyncIterator[KindCluster]:
    if kube_cluster.local:
        pytest.skip(
            "needs a kind cluster; the session's is the project's local cluster: make kind, "
            "then KUBECONFIG=/var/lib/podtrail/kind/kubeconfig (or ~/.kube/config naming it)"
        )
    # A kind context: anything wrong with the cluster is a failure, not a reason to skip.
    give_up = pytest.fail if kube_cluster.flavour == "kind" else pytest.skip
    kubeconfig = str(kube_cluster.kubeconfig)
    configuration = client.Configuration()
    await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    api = client.ApiClient(configuration)
    kube = Kube(api)
    try:
        nodes = (await kube.core.list_node()).items
        if not nodes or not all((n.spec.provider_id or "").startswith("kind://") for n in nodes):
            give_up(f"context {kube_cluster.context} is not a kind cluster (providerID kind://)")
        control = [n.metadata.name for n in nodes if CONTROL_PLANE_LABEL in n.metadata.labels]
        workers = sorted(
            n.metadata.name for n in nodes if CONTROL_PLANE_LABEL not in n.metadata.labels
        )
        if len(control) != 1 or not workers:
            pytest.skip(
                f"{kube_cluster.context} has {len(control)} control plane(s) and "
                f"{len(workers)} worker(s): the node tests need 1 and at least 1 (make kind)"
            )
        yield KindCluster(
            kubeconfig, kube, control[0], workers, docker_command(), kube_cluster.kubectl
        )
    finally:
        await api.close()


class LocalOperator:
    """The operator run from the working tree against the kind cluster (no ports opened)."""

    where = "local"

    def __init__(self, kind: KindCluster) -> None:
        self.kind = kind
        self.log_path = Path(tempfile.mkdtemp(prefix="podtrail-kind-")) / "operator.log"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.kind.kubectl("apply", "-k", str(REPO / "crds"))
        self.kind.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/podlifecyclerecords.podtrail.io",
        )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "podtrail",
                    "--kubeconfig",
                    self.kind.kubeconfig,
                    "--log-format",
                    "json",
                    "--coalesce-seconds",
                    "0.5",
                    "--sweep-seconds",
                    "2",
                    "--health-port",
                    "0",
                    "--metrics-port",
                    "0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited:\n{self.tail()}")
            if self.log_path.exists() and "podtrail started" in self.log_path.read_text():
                return
            await asyncio.sleep(0.3)
        raise RuntimeError(f"the operator did not start in 60 s:\n{self.tail()}")

    async def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        for _ in range(100):
            if self.process.poll() is not None:
                return
            await asyncio.sleep(0.2)
        self.process.kill()
        self.process.wait(timeout=10)

    async def keep_off(self, node: str) -> None:
        """Nothing to move: this operator runs on the machine, not on a node."""

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "<no log>"
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])


class DeployedOperator:
    """The operator deployed in the cluster by the manifests users apply."""

    where = "deployed"

    def __init__(self, kind: KindCluster) -> None:
        self.kind = kind

    async def pods(self) -> list[client.V1Pod]:
        listing = await self.kind.kube.core.list_namespaced_pod(
            OPERATOR_NAMESPACE, label_selector=f"app.kubernetes.io/name={OPERATOR_NAME}"
        )
        return [p for p in listing.items if p.metadata.deletion_timestamp is None]

    async def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            deployment = await self.kind.kube.apps.read_namespaced_deployment(
                OPERATOR_NAME, OPERATOR_NAMESPACE
            )
            status = deployment.status
            wanted = deployment.spec.replicas or 0
            if wanted and (status.ready_replicas or 0) == wanted == (status.replicas or 0):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"the operator's Deployment is not ready after {timeout:g} s")

    async def keep_off(self, node: str) -> None:
        """Move the operator off the node that is about to be stopped (cordon, delete, uncordon)."""
        on_node = [p for p in await self.pods() if p.spec.node_name == node]
        if not on_node:
            return
        self.kind.kubectl("cordon", node)
        try:
            for pod in on_node:
                await self.kind.kube.core.delete_namespaced_pod(
                    pod.metadata.name, OPERATOR_NAMESPACE
                )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                pods = await self.pods()
                if pods and all(p.spec.node_name and p.spec.node_name != node for p in pods):
                    break
                await asyncio.sleep(0.5)
            await self.wait_ready()
        finally:
            self.kind.kubectl("uncordon", node)
        assert all(p.spec.node_name != node for p in await self.pods()), "operator still there"

    def tail(self, lines: int = 30) -> str:
        result = self.kind.kubectl(
            "-n",
            OPERATOR_NAMESPACE,
            "logs",
            f"deploy/{OPERATOR_NAME}",
            f"--tail={lines}",
            check=False,
        )
        return result.stdout + result.stderr


@pytest.fixture(scope="session")
async def operator(kind: KindCluster) -> AsyncIterator[LocalOperator | DeployedOperator]:
    deployed = DeployedOperator(kind)
    try:
        await kind.kube.apps.read_namespaced_deployment(OPERATOR_NAME, OPERATOR_NAMESPACE)
        has_deployment = True
    except ApiException as error:
        if error.status != 404:
            raise
        has_deployment = False
    if has_deployment:
        await deployed.wait_ready()
        yield deployed
        return
    if os.environ.get("PODTRAIL_E2E_OPERATOR") == "deployed":
        pytest.fail("PODTRAIL_E2E_OPERATOR=deployed but no operator is deployed (make deploy)")
    local = LocalOperator(kind)
    try:
        await local.start()
        yield local
    finally:
        await local.stop()  # also when it did not start: no process is left behind
        print(f"\noperator log: {local.log_path}")


def node_address(node: client.V1Node) -> str:
    return next((a.address for a in node.status.addresses or [] if a.type == "InternalIP"), "?")


def results_dir() -> Path:
    """Where the tests write their figures (out/kind/, ignored by git)."""
    path = REPO / "out" / "kind"
    path.mkdir(parents=True, exist_ok=True)
    return path
