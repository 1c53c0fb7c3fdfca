"""The Helm chart installed on a real cluster: install, upgrade, uninstall.

Runs only with PODTRAIL_HELM_TESTS=1, on the session's cluster (``kube_cluster``), with the image
built from the checkout ($IMAGE, default podtrail.local/podtrail:dev, already on the nodes:
`make image image-load`). The release gets a namespace of its own and watches only one other
namespace of its own, so it never meets the records of another operator; a podtrail operator
that watches every namespace would write the same records, and the test then skips rather than
credit that operator's writes to the release. The namespaces go at the end; the CRD stays, as
Helm leaves it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import KubeCluster
from tests.deploy.test_chart import CHART, helm_binary
from tests.support.images import TESTBOX

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.kubelet,
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        os.environ.get("PODTRAIL_HELM_TESTS") != "1",
        reason="installs a release with the image built from the checkout: set "
        "PODTRAIL_HELM_TESTS=1 (after `make image image-load`)",
    ),
]

IMAGE = os.environ.get("IMAGE", "podtrail.local/podtrail:dev")
RELEASE = "helm-test"
FULLNAME = "helm-test-podtrail"
CRD = "podlifecyclerecords.podtrail.io"
TIMEOUT = "240s"


class Release:
    """One release of the chart and the namespace it watches, driven by helm and kubectl."""

    def __init__(self, kube: KubeCluster, helm: str) -> None:
        self.kube = kube
        self.helm_bin = helm
        suffix = uuid.uuid4().hex[:6]
        self.namespace = f"podtrail-helm-{suffix}"
        self.watched = f"podtrail-helm-app-{suffix}"
        repository, tag = IMAGE, "latest"
        if ":" in IMAGE.rsplit("/", 1)[-1]:  # a registry's port is not a tag
            repository, _, tag = IMAGE.rpartition(":")
        self.values: dict[str, Any] = {
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "operator": {"namespaces": [self.watched]},
            # Quicker writes and sweeps than in production, so the test waits less.
            "extraEnv": [{"name": "PODTRAIL_COALESCE_SECONDS", "value": "0.5"}],
        }
        self.timings: dict[str, float] = {}

    def helm(self, *args: str, values: dict[str, Any] | None = None, check: bool = True) -> str:
        command = [self.helm_bin, "--kubeconfig", str(self.kube.kubeconfig), *args]
        if values is not None:
            command += ["--values", "-"]
        result = subprocess.run(
            command,
            input=json.dumps(values) if values is not None else None,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)}:\n{result.stdout}{result.stderr}", pytrace=False)
        return result.stdout

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        result = subprocess.run(
            [self.kube.kubectl, "--kubeconfig", str(self.kube.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def get(self, *args: str) -> Any:
        """An object as JSON, or None when there is none."""
        out = self.kubectl("get", *args, "--ignore-not-found", "-o", "json")
        return json.loads(out) if out.strip() else None

    def deploy(self, verb: str, values: dict[str, Any]) -> None:
        """helm install or upgrade, then wait for the operator's rollout (say why it failed)."""
        started = time.monotonic()
        self.helm(
            verb,
            RELEASE,
            str(CHART),
            "--namespace",
            self.namespace,
            "--wait",
            "--timeout",
            TIMEOUT,
            values=values,
        )
        rollout = subprocess.run(
            [
                self.kube.kubectl,
                "--kubeconfig",
                str(self.kube.kubeconfig),
                "-n",
                self.namespace,
                "rollout",
                "status",
                f"deployment/{FULLNAME}",
                f"--timeout={TIMEOUT}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if rollout.returncode != 0:
            pods = self.kubectl("-n", self.namespace, "get", "pods", "-o", "wide", check=False)
            events = self.kubectl("-n", self.namespace, "get", "events", check=False)
            pytest.fail(f"{verb}: no rollout\n{rollout.stderr}\n{pods}\n{events}", pytrace=False)
        self.timings[verb] = time.monotonic() - started

    def items(self, *args: str) -> list[Any]:
        """The objects a `kubectl get` of a kind lists."""
        return list(json.loads(self.kubectl("get", *args, "-o", "json"))["items"])

    def record(self, pod: str) -> Any:
        return self.get("-n", self.watched, "podlifecyclerecord", pod)

    def operator_pods(self) -> list[Any]:
        pods = self.items(
            "pods", "-n", self.namespace, "-l", f"app.kubernetes.io/instance={RELEASE}"
        )
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _held_by(release: Release, pods: set[str]) -> str | None:
    """The pod of `pods` that holds the release's Lease, if one does."""
    lease = release.get("lease", "-n", release.namespace, FULLNAME) or {}
    holder = str((lease.get("spec") or {}).get("holderIdentity") or "").rsplit("_", 1)[0]
    return holder if holder in pods else None


def wait(what: str, probe: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.5)


def sleeper(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "containers": [
                    {
                        "name": "app",
                        "image": TESTBOX,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
                    }
                ],
            },
        }
    )


def rivals(release: Release) -> list[str]:
    """podtrail operators already running that would also watch the release's namespace."""
    found = []
    for deployment in release.items("deployments", "-A", "-l", "app.kubernetes.io/name=podtrail"):
        if not deployment["spec"].get("replicas"):
            continue
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env") or []}
            scope = [n.strip() for n in (env.get("PODTRAIL_NAMESPACES") or "").split(",")]
            if not any(scope) or release.watched in scope:
                meta = deployment["metadata"]
                found.append(f"{meta['namespace']}/{meta['name']}")
    return found


@pytest.fixture(scope="module")
def release(kube_cluster: KubeCluster) -> Iterator[Release]:
    helm = helm_binary()
    subject = Release(kube_cluster, helm)
    others = rivals(subject)
    if others:
        pytest.skip(f"podtrail operators watching every namespace are running: {others}")
    try:
        subject.kubectl("create", "namespace", subject.namespace)
        subject.kubectl("create", "namespace", subject.watched)
        subject.kubectl("-n", subject.watched, "create", "-f", "-", stdin=sleeper("sleeper"))
        subject.kubectl(
            "-n", subject.watched, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s"
        )
        yield subject
    finally:
        subject.helm("uninstall", RELEASE, "--namespace", subject.namespace, check=False)
        for namespace in (subject.watched, subject.namespace):
            subject.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        for namespace in (subject.watched, subject.namespace):
            subject.kubectl(
                "wait", "--for=delete", f"namespace/{namespace}", "--timeout=120s", check=False
            )
        print(f"\nhelm timings (s): { {k: round(v, 1) for k, v in subject.timings.items()} }")


def test_install_rolls_out_and_records_the_watched_namespace(release: Release) -> None:
    started = time.monotonic()
    release.deploy("install", release.values)
    deployment = release.get("deployment", "-n", release.namespace, FULLNAME)
    assert deployment["status"]["readyReplicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    record = wait("the sleeper's record", lambda: release.record("sleeper"), timeout=120)
    release.timings["install_to_first_record"] = time.monotonic() - started
    assert record["spec"]["podName"] == "sleeper"
    # One of the release's replicas leads, through the release's own Lease.
    lease = wait(
        "the Lease to be held",
        lambda: (
            (release.get("lease", "-n", release.namespace, FULLNAME) or {})
            .get("spec", {})
            .get("holderIdentity")
        ),
        timeout=60,
    )
    pods = {p["metadata"]["name"] for p in release.operator_pods()}
    assert lease.rsplit("_", 1)[0] in pods, (lease, pods)
    status = release.helm("status", RELEASE, "--namespace", release.namespace, "-o", "json")
    assert json.loads(status)["info"]["status"] == "deployed"


def test_upgrade_rolls_the_operator_and_the_record_goes_on(release: Release) -> None:
    before = release.record("sleeper")
    assert before is not None, "installed first"
    old_pods = {p["metadata"]["name"] for p in release.operator_pods()}
    values = {
        **release.values,
        "operator": {**release.values["operator"], "retentionSeconds": 3600},
    }
    release.deploy("upgrade", values)
    deployment = release.get("deployment", "-n", release.namespace, FULLNAME)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PODTRAIL_RETENTION_SECONDS"] == "3600"
    assert deployment["status"]["updatedReplicas"] == deployment["status"]["readyReplicas"] == 2
    new_pods = {p["metadata"]["name"] for p in release.operator_pods()}
    assert new_pods and not new_pods & old_pods, "every replica was replaced"
    history = json.loads(
        release.helm("history", RELEASE, "--namespace", release.namespace, "-o", "json")
    )
    assert [h["revision"] for h in history] == [1, 2]
    # The same record, still written to by the upgraded operator: the pod's end reaches it.
    holder = wait("a new replica to hold the Lease", lambda: _held_by(release, new_pods), 120)
    release.kubectl("-n", release.watched, "delete", "pod", "sleeper", "--timeout=60s")

    def ended() -> Any:
        record = release.record("sleeper")
        status = (record or {}).get("status") or {}
        types = {entry["type"] for entry in status.get("timeline") or []}
        return record if status.get("outcome") and "PodDeleted" in types else None

    try:
        after = wait("the sleeper's outcome and deletion in its record", ended, timeout=120)
    except AssertionError as error:
        logs = release.kubectl(
            "-n", release.namespace, "logs", f"pod/{holder}", "--tail=40", check=False
        )
        raise AssertionError(f"{error}; Lease holder {holder}; its log:\n{logs}") from None
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    earlier = (before.get("status") or {}).get("timeline") or []
    assert len(after["status"]["timeline"]) > len(earlier)


def test_uninstall_removes_the_operator_and_keeps_crd_and_records(release: Release) -> None:
    assert release.record("sleeper") is not None, "installed and upgraded first"
    release.helm("uninstall", RELEASE, "--namespace", release.namespace, "--wait")
    assert release.get("deployment", "-n", release.namespace, FULLNAME) is None
    assert release.get("serviceaccount", "-n", release.namespace, FULLNAME) is None
    assert release.get("role", "-n", release.namespace, f"{FULLNAME}-leader-election") is None
    assert release.get("clusterrole", f"{release.namespace}-{FULLNAME}") is None
    assert release.get("clusterrolebinding", f"{release.namespace}-{FULLNAME}") is None
    wait("the operator's pods to go", lambda: not release.operator_pods(), timeout=120)
    assert release.get("crd", CRD) is not None, "Helm keeps crds/"
    record = release.record("sleeper")
    assert record is not None and record["status"]["outcome"]
    listed = json.loads(release.helm("list", "--namespace", release.namespace, "-o", "json"))
    assert listed == []
