"""Fixtures of the multi-node tests: a kind cluster, its node containers, and the operator.

The tests run when the session's cluster (``kube_cluster``: KUBECONFIG, else ~/.kube/config, by
cluster/context.sh) is a kind cluster (a ``kind-`` context whose nodes' ``providerID`` is
``kind://...``) with a worker node; otherwise they are skipped:

    make kind && export KUBECONFIG=/var/lib/podtrail/kind/kubeconfig
    .venv/bin/pytest tests/kind

The operator is the one deployed in the cluster (``kubectl apply -k manifests/``, e.g. through
``image/deploy.sh``) when its Deployment is there, else one started here from the working tree
(tests/support/operator.py; ``PODTRAIL_E2E_OPERATOR=deployed`` insists on the deployed one).
``docker stop``/``docker start`` reach the node containers through the project's Docker engine
(``/run/podtrail-docker.sock``) when it runs, else through ``DOCKER_HOST`` or the default one.
A test that opens the project's local cluster next to kind (the ``local_cluster`` fixture) is
marked ``beside_local``: it runs only with PODTRAIL_BESIDE_LOCAL_TESTS=1.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.support.cluster import BESIDE_LOCAL, run_kubectl
from tests.support.kube import Kube
from tests.support.operator import DeployedOperator as DeployedOperator
from tests.support.operator import Operator, OperatorProcess, suite_operator

REPO = Path(__file__).resolve().parents[2]
PROJECT_DOCKER_SOCKET = Path(os.environ.get("PODTRAIL_DOCKER_SOCKET", "/run/podtrail-docker.sock"))
LocalOperator = OperatorProcess  # the operator run here from the working tree
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


@dataclass
class KindCluster:
    """The kind cluster under test."""

    kubeconfig: str
    kube: Kube
    control_plane: str
    workers: list[str]
    docker: list[str]
    kubectl_bin: str  # the session's (cluster/context.sh's choice)

    @property
    def nodes(self) -> list[str]:
        return [self.control_plane, *self.workers]

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.kubectl_bin, self.kubeconfig, *args, check=check)

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
    async with Kube.opened(kubeconfig) as kube:
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


@pytest.fixture(scope="session")
async def operator(kind: KindCluster) -> AsyncIterator[Operator]:
    """The deployed operator when there is one, else one run here (stopped at the end)."""
    async with suite_operator(
        kind.kube,
        kind.kubectl_bin,
        kind.kubeconfig,
        deployed=True if os.environ.get("PODTRAIL_E2E_OPERATOR") == "deployed" else None,
        suite="kind",
    ) as running:
        yield running


def node_address(node: client.V1Node) -> str:
    return next((a.address for a in node.status.addresses or [] if a.type == "InternalIP"), "?")


def results_dir() -> Path:
    """Where the tests write their figures (out/kind/, ignored by git)."""
    path = REPO / "out" / "kind"
    path.mkdir(parents=True, exist_ok=True)
    return path
