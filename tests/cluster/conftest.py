"""Fixtures of the cluster tests: an API connection to the session's cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.cluster import LOCAL_NODE
from tests.support.images import TESTBOX
from tests.support.kube import Kube

# The image the scenarios run (tests/support/images.py: built and loaded into the session's
# cluster, or the pullable one PODTRAIL_TEST_IMAGE names).
TESTBOX_IMAGE = TESTBOX

# What a kind node cannot always show: its containerd runs inside a container and does not always
# learn of the kernel's OOM kill (the container ends with 137, reason Error); the local cluster
# proves that path. Test name -> why; such a test is an expected failure on kind (not strict).
KIND_GAPS = {
    "test_memory_hog_is_oom_killed": "kind's nested runtime does not always learn of the "
    "kernel's OOM kill (exit 137, reason Error)",
}


@pytest.fixture(scope="session")
async def kube(kube_cluster: Any) -> AsyncIterator[Kube]:
    """One API connection for the cluster tests (pods read as client models: V1Pod)."""
    async with Kube.opened(str(kube_cluster.kubeconfig), models=True) as connection:
        yield connection


@pytest.fixture(autouse=True)
def _kind_gaps(request: pytest.FixtureRequest) -> None:
    why = KIND_GAPS.get(getattr(request.node, "originalname", ""))
    if why is not None and request.getfixturevalue("kube_cluster").flavour == "kind":
        request.applymarker(pytest.mark.xfail(reason=why, strict=False))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests that restart the whole cluster after every other test of the session;
    they drive the local cluster's own processes (local_node: skipped on any other cluster)."""
    late = [item for item in items if item.get_closest_marker("cluster_lifecycle") is not None]
    for item in late:
        if item.get_closest_marker(LOCAL_NODE) is None:
            item.add_marker(LOCAL_NODE)
    if late:
        items[:] = [item for item in items if item not in late] + late


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cluster_lifecycle: stops and restarts the local cluster; runs last, only when "
        "PODTRAIL_CLUSTER_LIFECYCLE_TESTS=1",
    )
