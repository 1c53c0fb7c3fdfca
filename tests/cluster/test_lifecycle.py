"""`make cluster` / `make cluster-down` on the local cluster: idempotent, and clean afterwards.

These tests stop and restart the whole local cluster, so they would break any other test using it
at the same moment. They run only when PODTRAIL_CLUSTER_LIFECYCLE_TESTS=1 (CI sets it; the machine
is its own there), only on the local cluster, and after every other test of the session. They
leave the cluster up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLUSTER_DIR, LOCAL_KUBECONFIG, REPO

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.kubelet,
    pytest.mark.cluster_lifecycle,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        os.environ.get("PODTRAIL_CLUSTER_LIFECYCLE_TESTS") != "1",
        reason="restarts the shared local cluster: set PODTRAIL_CLUSTER_LIFECYCLE_TESTS=1",
    ),
]

EXPORT_LINE = f"export KUBECONFIG={LOCAL_KUBECONFIG}"
COMPONENTS = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
    "coredns",
]


@pytest.fixture(scope="module")
def local(kube_cluster: Any) -> Any:
    if not kube_cluster.local:
        pytest.skip("the lifecycle tests drive the local cluster (KUBECONFIG names another)")
    return kube_cluster


def script(name: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(REPO / "cluster" / name)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc, elapsed


def leftovers() -> list[str]:
    """What down.sh must have removed, as found on the machine now."""
    found: list[str] = []
    mountinfo = Path("/proc/self/mountinfo").read_text()
    for prefix in (str(CLUSTER_DIR), "/run/podtrail/"):
        hits = [
            line.split()[4] for line in mountinfo.splitlines() if line.split()[4].startswith(prefix)
        ]
        found += [f"mount {m}" for m in hits]
    netns = Path("/run/netns")
    if netns.is_dir():
        found += [f"netns {p}" for p in netns.glob("cni-*")]
    for table in ("filter", "nat", "mangle"):
        dump = subprocess.run(
            ["iptables-save", "-t", table], capture_output=True, text=True, check=False
        ).stdout
        found += [
            f"iptables {table} {line}"
            for line in dump.splitlines()
            if line.startswith((":KUBE-", ":CNI-", ":PODTRAIL-"))
        ]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob("*/kubepods")]
    if Path("/sys/class/net/podtrail0").exists():
        found.append("bridge podtrail0")
    if Path("/run/podtrail/containerd").exists():
        found.append("containerd state /run/podtrail/containerd")
    ours = ("/var/cache/podtrail/bin/", "/usr/bin/containerd")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            exe = os.readlink(proc / "exe")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        mine = str(CLUSTER_DIR) in cmdline or "/run/podtrail/containerd" in cmdline
        if mine and exe.startswith(ours):
            found.append(f"process {proc.name}: {cmdline[:120]}")
    return found


def pids() -> dict[str, int]:
    run = CLUSTER_DIR / "run"
    return {
        c: int((run / f"{c}.pid").read_text()) for c in COMPONENTS if (run / f"{c}.pid").exists()
    }


def test_up_twice_in_a_row_reuses_the_running_cluster(local):
    before = pids()
    for _ in range(2):
        proc, elapsed = script("up.sh")
        assert proc.stdout.strip().splitlines()[-1] == EXPORT_LINE
        assert elapsed < 45, elapsed
    assert pids() == before, "a second run must reuse the running components"


def test_down_leaves_nothing_and_up_starts_again(local):
    # Something running on the node first: its sandbox, veth, netns, mounts and cgroups.
    local.kubectl_run(
        "run",
        "leftover-maker",
        "-n",
        "default",
        "--image",
        os.environ.get("PODTRAIL_TESTBOX_IMAGE", "podtrail.local/testbox:1"),
        "--image-pull-policy",
        "Never",
        "--command",
        "--",
        "sh",
        "-c",
        "while true; do sleep 1; done",
    )
    local.kubectl_run(
        "wait", "-n", "default", "--for=condition=Ready", "pod/leftover-maker", "--timeout=90s"
    )
    script("down.sh")
    assert leftovers() == []
    proc, _ = script("up.sh")
    assert proc.stdout.strip().splitlines()[-1] == EXPORT_LINE
    nodes = local.kubectl_run("get", "nodes", "--no-headers").stdout
    assert " Ready " in nodes, nodes


def test_up_after_a_crash_clears_the_leftovers(local):
    local.kubectl_run(
        "run",
        "crash-witness",
        "-n",
        "default",
        "--image",
        os.environ.get("PODTRAIL_TESTBOX_IMAGE", "podtrail.local/testbox:1"),
        "--image-pull-policy",
        "Never",
        "--command",
        "--",
        "sh",
        "-c",
        "while true; do sleep 1; done",
    )
    local.kubectl_run(
        "wait", "-n", "default", "--for=condition=Ready", "pod/crash-witness", "--timeout=90s"
    )
    # A crash: every component dies at once; shims, containers, mounts, netns and rules stay.
    for pid in pids().values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(1)
    proc, _ = script("up.sh")
    assert proc.stdout.strip().splitlines()[-1] == EXPORT_LINE
    assert "clearing what an earlier run left" in proc.stderr
    nodes = local.kubectl_run("get", "nodes", "--no-headers").stdout
    assert " Ready " in nodes, nodes
    # The fresh cluster does not know the old pod, and its container is gone from the node.
    pods = local.kubectl_run("get", "pods", "-A", "--no-headers").stdout
    assert "crash-witness" not in pods
