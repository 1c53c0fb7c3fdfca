"""Session-wide fixtures: a real Kubernetes cluster for the tests that need one.

``kube_cluster`` is the cluster the project's one rule chooses (cluster/context.sh, as every
make target does): KUBECONFIG when it is set (a list too), else ~/.kube/config's current context
when it answers, else the project's local cluster, brought up by cluster/up.sh when it is not
running (root). The choice is made once per session and printed; KUBECONFIG is exported for the
session as that cluster's (a list merged into one file). The tests' images are built and loaded
into its nodes once (tests/support/images.py; PODTRAIL_TEST_IMAGE names a pullable image
instead).

Markers: ``kubelet`` tests need a node that runs containers (``PODTRAIL_CONTROL_PLANE_ONLY=1``
skips them); ``local_node`` tests act on the local cluster's host processes (its API server,
the processes on its node, the cluster itself) and are skipped on any other cluster;
``beside_local`` tests use the local cluster next to the session's one and run only with
``PODTRAIL_BESIDE_LOCAL_TESTS=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # makes `tests.support` importable whatever the import mode

from tests.support import images  # noqa: E402
from tests.support.cluster import (  # noqa: E402
    LOCAL_NODE,
    LOCAL_NODE_REASON,
    ClusterChoice,
    ClusterChoiceError,
    Collected,
    choose_cluster,
    plan_skips,
    run_kubectl,
    single_kubeconfig,
)

CLUSTER_DIR = Path(os.environ.get("PODTRAIL_CLUSTER_DIR", "/var/lib/podtrail/cluster"))
LOCAL_KUBECONFIG = CLUSTER_DIR / "kubeconfig"

_CHOICE = pytest.StashKey["ClusterChoice | ClusterChoiceError"]()


@dataclass(frozen=True)
class KubeCluster:
    """The cluster of this test session.

    Attributes:
        kubeconfig: path of its kubeconfig file (also exported as ``KUBECONFIG``).
        kubectl: the kubectl cluster/context.sh chose (the locally built one when there is one).
        context: the kubeconfig's current context.
        flavour: kind, minikube, k3d, docker-desktop, local (the project's own) or other.
        source: where the choice came from: KUBECONFIG, home (~/.kube/config) or local.
    """

    kubeconfig: Path
    kubectl: str
    context: str
    flavour: str
    source: str

    @property
    def local(self) -> bool:
        """True for the project's own local cluster (``make cluster``)."""
        return self.flavour == "local"

    def kubectl_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster and return the completed process (text output)."""
        return run_kubectl(self.kubectl, str(self.kubeconfig), *args, check=check)


def _say(config: pytest.Config, line: str) -> None:
    """A line on the terminal now, whatever is being captured."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    else:
        reporter.write_line(line)


def session_choice(config: pytest.Config) -> ClusterChoice | ClusterChoiceError:
    """The session's cluster by cluster/context.sh (--ensure), chosen once and remembered."""
    if _CHOICE not in config.stash:
        try:
            chosen = choose_cluster()
        except ClusterChoiceError as error:
            config.stash[_CHOICE] = error
        else:
            _say(config, f"\ncluster: {chosen.describe()}")
            config.stash[_CHOICE] = chosen
    return config.stash[_CHOICE]


@pytest.fixture(scope="session")
def kube_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeCluster]:
    """The cluster for this test session (see the module's docstring)."""
    choice = session_choice(request.config)
    if isinstance(choice, ClusterChoiceError):
        pytest.fail(str(choice), pytrace=False)
    try:
        kubeconfig = single_kubeconfig(choice, tmp_path_factory.mktemp("kubeconfig"))
    except ClusterChoiceError as error:
        pytest.fail(str(error), pytrace=False)
    cluster = KubeCluster(
        kubeconfig=kubeconfig,
        kubectl=choice.kubectl,
        context=choice.context,
        flavour=choice.flavour,
        source=choice.source,
    )
    _put_test_images(request.config, cluster)
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous


def _put_test_images(config: pytest.Config, cluster: KubeCluster) -> None:
    """Load the built test images into the cluster's nodes, or say which image is pulled."""
    public = images.chosen_test_image(os.environ)
    if public is not None:
        _say(config, f"test image: {public} (pulled by the nodes; nothing built or loaded)")
        return
    try:
        archives, seconds, _ = images.load_test_images(
            str(cluster.kubeconfig), cluster.kubectl, os.environ
        )
    except images.ImageLoadError as error:
        pytest.fail(str(error), pytrace=False)
    names = ", ".join(Path(archive).name for archive in archives)
    _say(config, f"test images on {cluster.context}'s nodes: {names} ({seconds:.1f} s)")


@pytest.fixture(autouse=True)
def _only_on_the_local_node(request: pytest.FixtureRequest) -> None:
    """A ``local_node`` test the collection let through still never runs on another cluster."""
    if request.node.get_closest_marker(LOCAL_NODE) is None:
        return
    cluster: KubeCluster = request.getfixturevalue("kube_cluster")
    if not cluster.local:
        pytest.skip(LOCAL_NODE_REASON)


def _already_skipped(item: pytest.Item) -> bool:
    """A skip marker applies (skipif with a plain true condition counts; strings do not)."""
    for marker in item.iter_markers():
        if marker.name == "skip":
            return True
        if marker.name == "skipif":
            conditions = marker.args or (marker.kwargs.get("condition"),)
            if any(isinstance(c, bool) and c for c in conditions):
                return True
    return False


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip what cannot run here: kubelet tests on a control-plane-only run, local_node tests
    on any cluster but the local one, beside_local tests unless asked for."""
    if os.environ.get("PODTRAIL_CONTROL_PLANE_ONLY") == "1":
        skip = pytest.mark.skip(reason="PODTRAIL_CONTROL_PLANE_ONLY=1: no kubelet runs containers")
        for item in items:
            if item.get_closest_marker("kubelet") is not None:
                item.add_marker(skip)
    collected = [
        Collected(frozenset(m.name for m in item.iter_markers()), _already_skipped(item))
        for item in items
    ]

    def choose() -> ClusterChoice | None:
        if config.option.collectonly:
            return None  # listing the tests brings no cluster up
        choice = session_choice(config)
        return None if isinstance(choice, ClusterChoiceError) else choice

    for index, reason in plan_skips(collected, choose, os.environ).items():
        items[index].add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say again at the end which cluster the session used."""
    choice = terminalreporter.config.stash.get(_CHOICE, None)
    if isinstance(choice, ClusterChoice):
        terminalreporter.write_line(f"cluster: {choice.describe()}")
