"""Fixtures of the cluster tests: an API connection to the session's cluster."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.kube import Kube

# The image the scenarios run: the local cluster imports it (cluster/images/build-images.sh);
# on another cluster (kind), load an equivalent busybox image under this name or set the variable.
TESTBOX_IMAGE = os.environ.get("PODTRAIL_TESTBOX_IMAGE", "podtrail.local/testbox:1")


@pytest.fixture(scope="session")
async def kube(kube_cluster: Any) -> AsyncIterator[Kube]:
    """One API connection for the cluster tests."""
    connection = await Kube.connect(str(kube_cluster.kubeconfig))
    try:
        yield connection
    finally:
        await connection.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests that restart the whole cluster after every other test of the session."""
    late = [item for item in items if item.get_closest_marker("cluster_lifecycle") is not None]
    if late:
        items[:] = [item for item in items if item not in late] + late


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cluster_lifecycle: stops and restarts the local cluster; runs last, only when "
        "PODTRAIL_CLUSTER_LIFECYCLE_TESTS=1",
    )
