"""Fixtures of the deployment tests (helpers in tests/deploy/helpers.py)."""

from __future__ import annotations

import pytest
from tests.deploy.helpers import kubectl_path


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    """The kubectl that renders the kustomizations."""
    found = kubectl_path()
    if found is None:
        pytest.skip("no kubectl to render the kustomizations with (make cluster builds one)")
    return found
