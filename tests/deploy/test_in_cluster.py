"""The manifests against a real API server: server-side dry run, and RBAC shown through the API.

The RBAC objects of manifests/ (namespace, ServiceAccount, ClusterRoles, binding; the CRD when
missing) are applied for real, then `kubectl auth can-i --as` asks the authorizer. What this
module created is removed afterwards, unless the operator was already installed.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import MANIFESTS, Obj, render

pytestmark = pytest.mark.cluster

NAMESPACE = "podtrail-system"
OPERATOR = f"system:serviceaccount:{NAMESPACE}:podtrail"
PLR = "podlifecyclerecords.podtrail.io"
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"}


def kubectl(cluster: Any, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cluster.kubectl, "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def can_i(cluster: Any, user: str, verb: str, resource: str, *scope: str) -> bool:
    result = kubectl(cluster, "auth", "can-i", verb, resource, f"--as={user}", *scope)
    answer = result.stdout.strip().splitlines()[-1:] or [""]
    assert answer[0] in ("yes", "no"), result.stdout + result.stderr
    return answer[0] == "yes"


def eventually_can(cluster: Any, user: str, verb: str, resource: str, *scope: str) -> bool:
    """Aggregated ClusterRoles take a moment to fill in: ask until yes, for up to a minute."""
    deadline = time.monotonic() + 60
    while not can_i(cluster, user, verb, resource, *scope):
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


@pytest.fixture(scope="module")
def rbac_applied(kube_cluster: Any, kubectl_bin: str) -> Iterator[list[Obj]]:
    objects = render(kubectl_bin, MANIFESTS)
    # A namespace left terminating by an earlier run must be gone before it is made again.
    kubectl(kube_cluster, "wait", "--for=delete", f"namespace/{NAMESPACE}", "--timeout=180s")
    installed = kubectl(kube_cluster, "get", "namespace", NAMESPACE).returncode == 0
    wanted = [o for o in objects if o["kind"] in RBAC_KINDS]
    if kubectl(kube_cluster, "get", "crd", PLR).returncode != 0:
        wanted += [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    applied = kubectl(kube_cluster, "apply", "-f", "-", stdin=yaml.safe_dump_all(wanted))
    assert applied.returncode == 0, applied.stderr
    kubectl(kube_cluster, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLR}")
    yield objects
    if not installed:
        leftovers = [o for o in wanted if o["kind"] in RBAC_KINDS]
        kubectl(
            kube_cluster,
            "delete",
            "--ignore-not-found",
            "--wait=true",
            "--timeout=180s",
            "-f",
            "-",
            stdin=yaml.safe_dump_all(leftovers),
        )


def test_server_side_dry_run_accepts_the_manifests(
    kube_cluster: Any, rbac_applied: list[Obj]
) -> None:
    result = kubectl(kube_cluster, "apply", "--dry-run=server", "-k", str(MANIFESTS))
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/podtrail" in result.stdout
    # The namespace warns on anything that breaks the restricted Pod Security Standard.
    assert "PodSecurity" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("verb", "resource", "scope"),
    [
        ("get", "pods", "-A"),
        ("list", "pods", "-A"),
        ("watch", "pods", "-A"),
        ("list", "events", "-A"),
        ("watch", "events", "-A"),
        ("create", "events", "-A"),
        ("list", "namespaces", ""),
        ("watch", "namespaces", ""),
        ("list", "endpointslices.discovery.k8s.io", "-A"),
        ("watch", "endpointslices.discovery.k8s.io", "-A"),
        ("list", PLR, "-A"),
        ("create", PLR, "-A"),
        ("delete", PLR, "-A"),
        ("patch", PLR, "--subresource=status"),
        ("update", PLR, "--subresource=status"),
    ],
)
def test_operator_can_do_what_it_needs(
    kube_cluster: Any, rbac_applied: list[Obj], verb: str, resource: str, scope: str
) -> None:
    assert can_i(kube_cluster, OPERATOR, verb, resource, *scope.split()), f"{verb} {resource}"


@pytest.mark.parametrize(
    ("verb", "resource", "scope"),
    [
        ("get", "secrets", "-A"),
        ("list", "secrets", "-A"),
        ("create", "pods", "-A"),
        ("update", "pods", "-A"),
        ("patch", "pods", "-A"),
        ("delete", "pods", "-A"),
        ("patch", "pods", "--subresource=status"),
        ("update", "events", "-A"),
        ("delete", "events", "-A"),
        ("get", "configmaps", "-A"),
        ("delete", "namespaces", ""),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ],
)
def test_operator_can_do_no_more(
    kube_cluster: Any, rbac_applied: list[Obj], verb: str, resource: str, scope: str
) -> None:
    assert not can_i(kube_cluster, OPERATOR, verb, resource, *scope.split()), f"{verb} {resource}"


@pytest.fixture
def two_namespaces(kube_cluster: Any) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:6]
    names = (f"podtrail-rbac-a-{suffix}", f"podtrail-rbac-b-{suffix}")
    for name in names:
        assert kubectl(kube_cluster, "create", "namespace", name).returncode == 0
    yield names
    kubectl(kube_cluster, "delete", "namespace", "--wait=false", *names)


def bind(cluster: Any, namespace: str, user: str, cluster_role: str) -> None:
    result = kubectl(
        cluster,
        "-n",
        namespace,
        "create",
        "rolebinding",
        f"{user}-{cluster_role}",
        f"--clusterrole={cluster_role}",
        f"--user={user}",
    )
    assert result.returncode == 0, result.stderr


def test_namespace_viewer_reads_records_there_only(
    kube_cluster: Any, rbac_applied: list[Obj], two_namespaces: tuple[str, str]
) -> None:
    mine, other = two_namespaces
    user = f"viewer-{uuid.uuid4().hex[:6]}"
    bind(kube_cluster, mine, user, "view")
    assert eventually_can(kube_cluster, user, "get", PLR, "-n", mine)
    assert can_i(kube_cluster, user, "list", PLR, "-n", mine)
    assert can_i(kube_cluster, user, "watch", PLR, "-n", mine)
    assert not can_i(kube_cluster, user, "create", PLR, "-n", mine)
    assert not can_i(kube_cluster, user, "get", PLR, "-n", other)
    # As the user would: kubectl get plr.
    there = kubectl(kube_cluster, "get", "plr", "-n", mine, f"--as={user}")
    assert there.returncode == 0, there.stderr
    elsewhere = kubectl(kube_cluster, "get", "plr", "-n", other, f"--as={user}")
    assert elsewhere.returncode != 0 and "forbidden" in elsewhere.stderr.lower(), elsewhere.stderr


def test_namespace_editor_writes_records_but_not_their_status(
    kube_cluster: Any, rbac_applied: list[Obj], two_namespaces: tuple[str, str]
) -> None:
    mine, other = two_namespaces
    user = f"editor-{uuid.uuid4().hex[:6]}"
    bind(kube_cluster, mine, user, "edit")
    assert eventually_can(kube_cluster, user, "create", PLR, "-n", mine)
    for verb in ("update", "patch", "delete"):
        assert can_i(kube_cluster, user, verb, PLR, "-n", mine), verb
    assert not can_i(kube_cluster, user, "patch", PLR, "-n", mine, "--subresource=status")
    assert not can_i(kube_cluster, user, "create", PLR, "-n", other)
