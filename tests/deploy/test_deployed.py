"""The operator image deployed with the manifests users apply, on the session's cluster.

Builds the image (image/build.sh), loads it into the cluster (image/load.sh), deploys it
(image/deploy.sh: manifests/ with the image swapped) and checks what only a deployed operator
shows: the rollout, the first record, the pod's hardening and memory at rest, a new operator pod
taking over without duplicating facts, the metrics Service, and undeploy keeping the CRD and the
records. The deployed operator is scoped to this module's namespace (PODTRAIL_NAMESPACES), so
it never touches other tests' records. Measurements go to build/deploy/measurements.json. The
operator is left installed only if it was installed before. The end-to-end scenarios against
the deployed operator run with `make deploy e2e` (PODTRAIL_E2E_OPERATOR=deployed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.helpers import REPO, run_tool
from tests.e2e.support import timeline_keys
from tests.support.images import TESTBOX, TESTBOX_PULL_POLICY

pytestmark = [pytest.mark.cluster, pytest.mark.kubelet, pytest.mark.e2e]

NAMESPACE = "podtrail-system"
SELECTOR = "app.kubernetes.io/name=podtrail,app.kubernetes.io/component=operator"
MEASUREMENTS = REPO / "build" / "deploy" / "measurements.json"


class Cluster:
    def __init__(self, kube_cluster: Any) -> None:
        self.kube_cluster = kube_cluster
        self.env = {
            "KUBECONFIG": str(kube_cluster.kubeconfig),
            "KUBECTL": str(kube_cluster.kubectl),
        }

    def run(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        result = subprocess.run(
            [self.kube_cluster.kubectl, "--kubeconfig", str(self.kube_cluster.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def exists(self, *args: str) -> bool:
        return bool(self.run("get", *args, "--ignore-not-found", "-o", "name", check=False).strip())

    def record(self, namespace: str, name: str) -> dict[str, Any] | None:
        out = self.run("-n", namespace, "get", "plr", name, "--ignore-not-found", "-o", "json")
        return json.loads(out) if out.strip() else None

    def operator_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.json("-n", NAMESPACE, "get", "pods", "-l", SELECTOR)["items"]
            if not p["metadata"].get("deletionTimestamp")
        ]

    def lease_holder(self) -> str:
        lease = self.json("-n", NAMESPACE, "get", "lease", "podtrail")
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    def operator_pod(self) -> dict[str, Any]:
        """The replica that holds the Lease: the one that watches and writes."""

        def leader() -> dict[str, Any] | None:
            holder = self.lease_holder()
            pods = {p["metadata"]["name"]: p for p in self.operator_pods()}
            return pods.get(holder.rsplit("_", 1)[0])

        return dict(wait("a leading operator replica", leader, timeout=90))


def wait(what: str, probe: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.5)


def measure(**values: Any) -> None:
    MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(MEASUREMENTS.read_text()) if MEASUREMENTS.exists() else {}
    known.update(values)
    MEASUREMENTS.write_text(json.dumps(known, indent=2) + "\n")


def sleeper(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "containers": [
                    {
                        "name": "app",
                        "image": TESTBOX,
                        "imagePullPolicy": TESTBOX_PULL_POLICY,
                        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
                    }
                ],
            },
        }
    )


@pytest.fixture(scope="module")
def cluster(kube_cluster: Any) -> Cluster:
    return Cluster(kube_cluster)


@pytest.fixture(scope="module")
def deployed(cluster: Cluster) -> Iterator[dict[str, Any]]:
    if os.geteuid() != 0 and shutil.which("docker") is None:
        pytest.skip("building the image needs a Docker engine or root to start the local one")
    was_installed = cluster.exists("deployment", "-n", NAMESPACE, "podtrail")
    if was_installed:
        run_tool("undeploy.sh", cluster.env, timeout=300)
    run_tool("build.sh", timeout=1800)
    run_tool("load.sh", cluster.env, timeout=600)

    namespace = f"podtrail-deploy-{uuid.uuid4().hex[:6]}"
    state: dict[str, Any] = {"namespace": namespace, "undeployed": False}
    try:
        cluster.run("create", "namespace", namespace)
        cluster.run("-n", namespace, "create", "-f", "-", stdin=sleeper("sleeper"))
        cluster.run(
            "-n", namespace, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s"
        )
        # Scoped to this module's namespace, so it never writes to other tests' records.
        env = {**cluster.env, "DEPLOY_ENV": f"PODTRAIL_NAMESPACES={namespace}"}
        started = time.monotonic()
        run_tool("deploy.sh", env, timeout=600)
        rolled_out = time.monotonic() - started
        wait("the sleeper's record", lambda: cluster.record(namespace, "sleeper"), timeout=120)
        state["first_record"] = time.monotonic() - started
        measure(
            apply_to_rollout_seconds=round(rolled_out, 1),
            apply_to_first_record_seconds=round(state["first_record"], 1),
        )
        yield state
    finally:
        if was_installed:
            run_tool("deploy.sh", cluster.env, timeout=600)  # as it was: unscoped
        elif not state["undeployed"]:
            run_tool("undeploy.sh", cluster.env, timeout=300)
        cluster.run("delete", "namespace", namespace, "--wait=false", check=False)


def test_rollout_brings_the_operator_up_and_records_follow(deployed: dict[str, Any]) -> None:
    assert deployed["first_record"] < 120


def test_operator_pod_runs_hardened(cluster: Cluster, deployed: dict[str, Any]) -> None:
    pod = cluster.operator_pod()
    image = pod["status"]["containerStatuses"][0]["image"]
    assert "podtrail" in image
    exec_python = [
        "-n",
        NAMESPACE,
        "exec",
        pod["metadata"]["name"],
        "--",
        "/opt/podtrail/bin/python",
        "-c",
    ]
    identity = cluster.run(*exec_python, "import os; print(os.getuid(), os.getgid())").split()
    assert identity == ["65532", "65532"]
    probe = "import os\ntry:\n open('/probe', 'w')\nexcept OSError as e:\n print(e.errno)"
    assert cluster.run(*exec_python, probe).strip() == "30", (
        "EROFS: the root filesystem is read-only"
    )
    status = cluster.run(*exec_python, "print(open('/proc/1/status').read())")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["CapEff"].strip() == "0000000000000000", "no capabilities"
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2", "RuntimeDefault seccomp filter"
    rss_mib = int(fields["VmRSS"].split()[0]) / 1024
    measure(operator_rss_mib_at_rest=round(rss_mib, 1))
    assert rss_mib < 512, "below the memory limit"


def test_metrics_service_answers(cluster: Cluster, deployed: dict[str, Any]) -> None:
    path = f"/api/v1/namespaces/{NAMESPACE}/services/podtrail-metrics:metrics/proxy/metrics"
    metrics = wait(
        "the metrics", lambda: cluster.run("get", "--raw", path, check=False), timeout=60
    )
    assert "# TYPE" in metrics


def test_new_operator_pod_takes_over_without_duplicates(
    cluster: Cluster, deployed: dict[str, Any]
) -> None:
    namespace = deployed["namespace"]
    before = cluster.record(namespace, "sleeper")
    assert before is not None
    assert len(cluster.operator_pods()) == 2, "the shipped Deployment runs a standby"
    old = cluster.operator_pod()["metadata"]["name"]
    cluster.run("-n", NAMESPACE, "delete", "pod", old, "--wait=true", "--timeout=120s")
    # The standby leads now (the leader released the Lease on SIGTERM after its flush).
    assert cluster.operator_pod()["metadata"]["name"] != old
    cluster.run("-n", NAMESPACE, "rollout", "status", "deployment/podtrail", "--timeout=180s")
    # The new pod goes on recording: the sleeper's deletion ends up in the same record.
    cluster.run("-n", namespace, "delete", "pod", "sleeper", "--wait=true", "--timeout=60s")

    def finished() -> dict[str, Any] | None:
        record = cluster.record(namespace, "sleeper")
        return record if record and (record.get("status") or {}).get("outcome") else None

    after = wait("the sleeper's outcome", finished, timeout=120)
    keys = Counter(timeline_keys(after))
    assert [key for key, count in keys.items() if count > 1] == []
    earlier = set(timeline_keys(before))
    assert earlier <= set(keys), "nothing recorded before the takeover was lost"


def container_processes(container_id: str) -> list[int]:
    """PIDs of a container's processes, found on the node through their cgroup paths."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if container_id in (proc / "cgroup").read_text():
                    pids.append(int(proc.name))
            except OSError:
                continue  # gone meanwhile
    return pids


@pytest.mark.local_node  # SIGKILLs the leader container's processes from the node's side
def test_a_sigkilled_leader_fails_over_with_nothing_lost_or_doubled(
    cluster: Cluster, deployed: dict[str, Any]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("kills the leader's processes from the node: root")
    namespace = deployed["namespace"]
    leader = cluster.operator_pod()
    holder = cluster.lease_holder()
    container = leader["status"]["containerStatuses"][0]["containerID"].split("://")[-1]
    pids = container_processes(container)
    assert pids, f"no process of the leader's container {container} on this node"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    # A pod that starts while nobody leads: its record must be complete once someone does.
    cluster.run("-n", namespace, "create", "-f", "-", stdin=sleeper("orphan"))
    wait("another holder", lambda: cluster.lease_holder() not in ("", holder), timeout=60)
    failover = time.monotonic() - killed
    measure(sigkilled_leader_failover_seconds=round(failover, 1))
    assert failover < 15 + 2 * 2.2 + 5, "lease duration, a standby's retry, and slack"
    cluster.run("-n", namespace, "wait", "--for=condition=Ready", "pod/orphan", "--timeout=120s")
    cluster.run("-n", namespace, "delete", "pod", "orphan", "--wait=true", "--timeout=60s")

    def ended() -> dict[str, Any] | None:
        record = cluster.record(namespace, "orphan")
        return record if record and (record.get("status") or {}).get("outcome") else None

    record = wait("the orphan's outcome", ended, timeout=120)
    types = [entry["type"] for entry in record["status"]["timeline"]]
    assert record["status"]["outcome"] == "GracefulShutdown"
    for fact in ("Created", "Scheduled", "ContainerStarted", "DeletionRequested", "PodDeleted"):
        assert fact in types, f"{fact} missing from {types}"
    keys = Counter(timeline_keys(record))
    assert [key for key, count in keys.items() if count > 1] == []


def test_undeploy_keeps_the_crd_and_the_records(cluster: Cluster, deployed: dict[str, Any]) -> None:
    run_tool("undeploy.sh", cluster.env, timeout=300)
    deployed["undeployed"] = True
    wait("the operator's namespace to go", lambda: not cluster.exists("namespace", NAMESPACE), 180)
    assert not cluster.exists("clusterrole", "podtrail")
    assert not cluster.exists("clusterrolebinding", "podtrail")
    assert not cluster.exists("clusterrole", "podtrail-records-viewer")
    assert cluster.exists("crd", "podlifecyclerecords.podtrail.io")
    assert cluster.record(deployed["namespace"], "sleeper") is not None
