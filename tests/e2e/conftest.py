"""The operator under test, and the scenario runner that plays every selected scenario at once.

Real-cluster scenarios mostly wait on Kubernetes, so they run concurrently: each test names its
scenario with `@plays(fn)`; at the start of the session every selected scenario is
started as a task (each in its own namespace) and each test awaits its own. Scenarios marked
`exclusive` (they restart the operator) run after all the others have finished.

The operator is either started here from the working tree (default), or is the one deployed in
the cluster (`PODTRAIL_E2E_OPERATOR=deployed`, after `make deploy`): the same scenarios prove both.
Their namespaces are deleted at the end unless PODTRAIL_E2E_KEEP=1. The operator, the client and
the scenarios last as long as this package's tests (package scope): the operator started here
is stopped before the next suites of the session (tests/kind) start their own, which would
otherwise stand by for the same Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config
from tests.e2e.support import Kube
from tests.support.cluster import find_kubectl
from tests.support.operator import OperatorProcess

REPO = Path(__file__).resolve().parents[2]
Scenario = Callable[["Harness"], Awaitable[Any]]

pytestmark = [pytest.mark.cluster, pytest.mark.kubelet, pytest.mark.e2e]


def plays(scenario: Scenario, *, exclusive: bool = False) -> pytest.MarkDecorator:
    """Mark a test as asserting on what `scenario` returns (run concurrently with the others)."""
    # with_args: a lone callable given to a mark would be taken as the function to decorate.
    return pytest.mark.scenario.with_args(scenario, exclusive=exclusive)


class DeployedOperator:
    """The operator running in the cluster as `kubectl apply -k manifests/` installed it."""

    namespace = "podtrail-system"
    name = "podtrail"

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    replicas = 2  # as manifests/ ships it: a leader and a standby

    async def start(self) -> None:
        await self._scale(self.replicas)

    async def stop(self) -> None:
        await self._scale(0)

    async def _scale(self, replicas: int) -> None:
        await self.kube.apps.patch_namespaced_deployment_scale(
            self.name, self.namespace, {"spec": {"replicas": replicas}}
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            deployment = await self.kube.apps.read_namespaced_deployment(self.name, self.namespace)
            status = deployment.status
            # A stopping operator still watches until its pod is gone: wait for that too.
            pods = await self.kube.core.list_namespaced_pod(
                self.namespace, label_selector="app.kubernetes.io/name=podtrail"
            )
            if (
                (status.ready_replicas or 0) == replicas
                and (status.replicas or 0) == replicas
                and len(pods.items) == replicas
            ):
                return
            await asyncio.sleep(1)
        raise RuntimeError(f"the operator deployment did not reach {replicas} replicas")

    def tail(self, lines: int = 25) -> str:
        kubectl = find_kubectl() or "kubectl"
        result = subprocess.run(
            [kubectl, "-n", self.namespace, "logs", f"deploy/{self.name}", f"--tail={lines}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout + result.stderr


class Harness:
    """What a scenario gets: the API, the operator (to restart it), a namespace maker."""

    def __init__(self, kube: Kube, operator: OperatorProcess | DeployedOperator) -> None:
        self.kube = kube
        self.operator = operator
        self.namespaces: list[str] = []

    async def namespace(self, prefix: str, **kwargs: Any) -> str:
        name = await self.kube.namespace(prefix, **kwargs)
        self.namespaces.append(name)
        return name

    async def clean_up(self) -> None:
        """Delete the scenarios' namespaces (their pods and records go with them)."""
        if os.environ.get("PODTRAIL_E2E_KEEP") == "1":
            return
        for name in self.namespaces:
            with contextlib.suppress(Exception):
                await self.kube.core.delete_namespace(name)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario(fn, exclusive=False): the scenario a test awaits")


@pytest.fixture(scope="package")
async def kube(kube_cluster: Any) -> AsyncIterator[Kube]:
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(kube_cluster.kubeconfig), client_configuration=configuration
    )
    api = client.ApiClient(configuration)
    yield Kube(api)
    await api.close()


@pytest.fixture(scope="package")
async def operator(
    kube_cluster: Any, kube: Kube
) -> AsyncIterator[OperatorProcess | DeployedOperator]:
    if os.environ.get("PODTRAIL_E2E_OPERATOR") == "deployed":
        yield DeployedOperator(kube)
        return
    kube_cluster.kubectl_run("apply", "-k", str(REPO / "crds"))
    kube_cluster.kubectl_run(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/podlifecyclerecords.podtrail.io",
    )
    running = OperatorProcess(
        str(kube_cluster.kubeconfig), Path(tempfile.mkdtemp(prefix="podtrail-e2e-"))
    )
    try:
        await running.start()
        yield running
    finally:
        await running.stop()
        print(f"\noperator log: {running.log_path}")


@pytest.fixture(scope="package")
async def scenarios(
    request: pytest.FixtureRequest, kube: Kube, operator: OperatorProcess | DeployedOperator
) -> AsyncIterator[dict[Scenario, asyncio.Task[Any]]]:
    harness = Harness(kube, operator)
    shared: dict[Scenario, asyncio.Task[Any]] = {}
    exclusive: list[Scenario] = []
    for item in request.session.items:
        for marker in item.iter_markers("scenario"):
            fn = marker.args[0]
            if marker.kwargs.get("exclusive"):
                if fn not in exclusive:
                    exclusive.append(fn)
            elif fn not in shared:
                shared[fn] = asyncio.create_task(fn(harness), name=fn.__name__)

    async def after_the_others(fn: Scenario) -> Any:
        await asyncio.gather(*shared.values(), return_exceptions=True)
        for earlier in exclusive[: exclusive.index(fn)]:
            await asyncio.gather(tasks[earlier], return_exceptions=True)
        return await fn(harness)

    tasks = dict(shared)
    for fn in exclusive:
        tasks[fn] = asyncio.create_task(after_the_others(fn), name=fn.__name__)
    yield tasks
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    await harness.clean_up()


@pytest.fixture
async def outcome(
    request: pytest.FixtureRequest,
    scenarios: dict[Scenario, asyncio.Task[Any]],
    operator: OperatorProcess | DeployedOperator,
) -> Any:
    """The result of this test's scenario (its exception, if it failed)."""
    marker = request.node.get_closest_marker("scenario")
    assert marker is not None, "an e2e test names its scenario with @plays(fn)"
    try:
        return await scenarios[marker.args[0]]
    except Exception:
        print(f"--- operator log (tail) ---\n{operator.tail()}")
        raise
