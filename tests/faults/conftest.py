"""The fault suite: the operator under faults injected into a real cluster (`make test-faults`).

It kills the operator, stops and freezes the API server, refuses writes, throttles, floods. It
stops the shared API server, so it runs only when PODTRAIL_FAULT_TESTS=1, never in plain
`make test`. Scenarios mostly wait on Kubernetes: every selected scenario starts as a task at the
beginning of the session (each with its own namespaces and operator) and each test awaits its
own; scenarios marked `exclusive` (they stop the API server) run alone, after the others.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults.support import FAULT_ENV, FIGURES, OUT_DIR, FaultHarness, figures_markdown
from tests.support.cluster import LOCAL_NODE
from tests.support.kube import Kube
from tests.support.operator import apply_crds
from tests.support.scenarios import Scenarios, plays_marker, scenario_of

Scenario = Callable[[FaultHarness], Awaitable[Any]]
MARKER = "fault_scenario"
HERE = Path(__file__).resolve().parent
# Stops, freezes and restarts the local cluster's kube-apiserver process, compacts its etcd.
LOCAL_NODE_MODULES = frozenset({"test_apiserver.py"})


def plays(scenario: Scenario, *, exclusive: bool = False) -> pytest.MarkDecorator:
    """Mark a test as asserting on what `scenario` returns."""
    return plays_marker(MARKER, scenario, exclusive)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(fn, exclusive=False): the fault scenario a test awaits"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the suite unless asked for; keep it after every other test of the session.

    The modules in LOCAL_NODE_MODULES act on the local cluster's own processes: they are
    local_node tests (the session skips them on any other cluster, before their scenarios
    are started). The other scenarios run on any cluster.
    """
    mine = [item for item in items if HERE in Path(str(item.path)).parents]
    if not mine:
        return
    if os.environ.get(FAULT_ENV) != "1":
        skip = pytest.mark.skip(reason=f"stops the shared API server: set {FAULT_ENV}=1")
        for item in mine:
            item.add_marker(skip)
    for item in mine:
        if Path(str(item.path)).name in LOCAL_NODE_MODULES and not item.get_closest_marker(
            LOCAL_NODE
        ):
            item.add_marker(LOCAL_NODE)
    items[:] = [item for item in items if item not in mine] + mine


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.write_sep("=", "fault suite figures")
        terminalreporter.write_line(figures_markdown())
        terminalreporter.write_line(f"(also in {OUT_DIR}/figures.json and figures.md)")


@pytest.fixture(scope="session")
async def fault_kube(kube_cluster: Any) -> AsyncIterator[Kube]:
    async with Kube.opened(str(kube_cluster.kubeconfig)) as connection:
        yield connection


@pytest.fixture(scope="session")
def crd_applied(kube_cluster: Any) -> None:
    apply_crds(kube_cluster.kubectl, str(kube_cluster.kubeconfig))


@pytest.fixture(scope="session")
async def fault_runs(
    request: pytest.FixtureRequest, kube_cluster: Any, fault_kube: Kube, crd_applied: None
) -> AsyncIterator[dict[Scenario, asyncio.Task[Any]]]:
    log_dir = OUT_DIR / "logs" / time.strftime("%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    harness = FaultHarness(fault_kube, str(kube_cluster.kubeconfig), log_dir, kube_cluster.kubectl)
    played = Scenarios(harness, request.session.items, MARKER)
    yield played.tasks
    await played.cancel()
    await harness.clean_up()
    print(f"\noperator logs: {log_dir}")


@pytest.fixture
async def outcome(
    request: pytest.FixtureRequest, fault_runs: dict[Scenario, asyncio.Task[Any]]
) -> Any:
    """The result of this test's scenario (its exception, if it failed)."""
    task = fault_runs[scenario_of(request, MARKER)]
    try:
        return await task
    except Exception:
        print(f"--- scenario {task.get_name()} failed; operator logs in {OUT_DIR / 'logs'}")
        raise
