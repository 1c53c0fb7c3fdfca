"""Fixtures of the deployment tests (helpers in tests/deploy/helpers.py)."""

from __future__ import annotations

import pytest

from tests.support.cluster import find_kubectl


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    """The kubectl that renders the kustomizations (the one cluster/context.sh uses)."""
    found = find_kubectl()
    if found is None:
        pytest.skip("no kubectl to render the kustomizations with (make cluster builds one)")
    return found
