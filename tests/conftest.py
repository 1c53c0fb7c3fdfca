"""Session-wide fixtures: a real Kubernetes cluster for the tests that need one.

``kube_cluster`` uses the cluster that ``KUBECONFIG`` names when it is set (kind in hosted CI,
or any cluster), otherwise the project's local cluster, brought up by ``cluster/up.sh`` when it
is not running (a no-op when it is). Tests marked ``kubelet`` need a node that runs containers;
``PODTRAIL_CONTROL_PLANE_ONLY=1`` skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # makes `tests.support` importable whatever the import mode

CLUSTER_DIR = Path(os.environ.get("PODTRAIL_CLUSTER_DIR", "/var/lib/podtrail/cluster"))
LOCAL_KUBECONFIG = CLUSTER_DIR / "kubeconfig"
LOCAL_KUBECTL = CLUSTER_DIR / "bin" / "kubectl"


@dataclass(frozen=True)
class KubeCluster:
    """A cluster the tests can use.

    Attributes:
        kubeconfig: path of the kubeconfig file (also exported as ``KUBECONFIG``).
        kubectl: path of a kubectl matching the server (the locally built one when there is one).
        local: True for the project's own local cluster (``make cluster``).
    """

    kubeconfig: Path
    kubectl: str
    local: bool

    def kubectl_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster and return the completed process (text output)."""
        return subprocess.run(
            [self.kubectl, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )


def _kubectl_path() -> str:
    if LOCAL_KUBECTL.exists():
        return str(LOCAL_KUBECTL)
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("no kubectl: run `make cluster` or put kubectl on PATH")
    return found


def _bring_up_local_cluster() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            f"no KUBECONFIG set and the local cluster needs root to start: run `sudo make cluster` "
            f"and `export KUBECONFIG={LOCAL_KUBECONFIG}`"
        )
    proc = subprocess.run(
        ["bash", str(REPO / "cluster" / "up.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=40 * 60,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr + proc.stdout).splitlines()[-60:])
        pytest.fail(f"cluster/up.sh failed ({proc.returncode}):\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    """The cluster for this test session (see the module's docstring)."""
    previous = os.environ.get("KUBECONFIG")
    path = Path(previous.split(os.pathsep)[0]) if previous else LOCAL_KUBECONFIG
    local = path == LOCAL_KUBECONFIG
    if local:
        _bring_up_local_cluster()  # a no-op (under a second) when it is up and healthy
    cluster = KubeCluster(kubeconfig=path, kubectl=_kubectl_path(), local=local)
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests that need a kubelet on a control-plane-only run."""
    if os.environ.get("PODTRAIL_CONTROL_PLANE_ONLY") != "1":
        return
    skip = pytest.mark.skip(reason="PODTRAIL_CONTROL_PLANE_ONLY=1: no kubelet runs containers")
    for item in items:
        if item.get_closest_marker("kubelet") is not None:
            item.add_marker(skip)
