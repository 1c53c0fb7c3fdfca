"""The operator under test, and the scenario runner that plays every selected scenario at once.

Real-cluster scenarios mostly wait on Kubernetes, so they run concurrently: each test names its
scenario with `@plays(fn)`; at the start of the session every selected scenario is
started as a task (each in its own namespace) and each test awaits its own. Scenarios marked
`exclusive` (they restart the operator) run after all the others have finished
(tests/support/scenarios.py).

The operator is either started here from the working tree (default), or is the one deployed in
the cluster (`PODTRAIL_E2E_OPERATOR=deployed`, after `make deploy`): the same scenarios prove both
(tests/support/operator.py). Their namespaces are deleted at the end unless PODTRAIL_E2E_KEEP=1.
The operator, the client and the scenarios last as long as this package's tests (package
scope): the operator started here is stopped before the next suites of the session (tests/kind)
start their own, which would otherwise stand by for the same Lease.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support.kube import Kube
from tests.support.operator import Operator, suite_operator
from tests.support.scenarios import ScenarioHarness, Scenarios, plays_marker, scenario_of

Scenario = Callable[["Harness"], Awaitable[Any]]
MARKER = "scenario"
OPERATOR_ENV = "PODTRAIL_E2E_OPERATOR"

pytestmark = [pytest.mark.cluster, pytest.mark.kubelet, pytest.mark.e2e]


def plays(scenario: Scenario, *, exclusive: bool = False) -> pytest.MarkDecorator:
    """Mark a test as asserting on what `scenario` returns (run concurrently with the others)."""
    return plays_marker(MARKER, scenario, exclusive)


class Harness(ScenarioHarness):
    """What a scenario gets: the API, the operator (to restart it), a namespace maker."""

    def __init__(self, kube: Kube, operator: Operator) -> None:
        super().__init__(kube, prefix="e2e", keep_env="PODTRAIL_E2E_KEEP")
        self.operator = operator


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(fn, exclusive=False): the scenario a test awaits")


@pytest.fixture(scope="package")
async def kube(kube_cluster: Any) -> AsyncIterator[Kube]:
    async with Kube.opened(str(kube_cluster.kubeconfig)) as connection:
        yield connection


@pytest.fixture(scope="package")
async def operator(kube_cluster: Any, kube: Kube) -> AsyncIterator[Operator]:
    async with suite_operator(
        kube,
        kube_cluster.kubectl,
        str(kube_cluster.kubeconfig),
        deployed=os.environ.get(OPERATOR_ENV) == "deployed",
        suite="e2e",
    ) as running:
        yield running


@pytest.fixture(scope="package")
async def scenarios(
    request: pytest.FixtureRequest, kube: Kube, operator: Operator
) -> AsyncIterator[dict[Scenario, asyncio.Task[Any]]]:
    harness = Harness(kube, operator)
    played = Scenarios(harness, request.session.items, MARKER)
    yield played.tasks
    await played.cancel()
    await harness.clean_up()


@pytest.fixture
async def outcome(
    request: pytest.FixtureRequest,
    scenarios: dict[Scenario, asyncio.Task[Any]],
    operator: Operator,
) -> Any:
    """The result of this test's scenario (its exception, if it failed)."""
    try:
        return await scenarios[scenario_of(request, MARKER)]
    except Exception:
        print(f"--- operator log (tail) ---\n{operator.tail()}")
        raise
