"""The benchmark's place in the cluster: CRD, kwok and its nodes, namespaces; and their removal.

Everything the harness creates carries the label bench.podtrail.io/bench=<run id> (nodes,
namespaces) so a crashed run's leftovers can be found and removed by the next one.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench.kubeapi import ApiError, Kube
from bench.lifecycle import SIM_KEY

BENCH_LABEL = "bench.podtrail.io/bench"
REPO = Path(__file__).resolve().parent.parent


async def apply_crd(kubectl: str, kubeconfig: str) -> None:
    """`kubectl apply -k crds/` and wait until it is served."""
    for argv in (
        [kubectl, "--kubeconfig", kubeconfig, "apply", "-k", str(REPO / "crds")],
        [
            kubectl,
            "--kubeconfig",
            kubeconfig,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/podlifecyclerecords.podtrail.io",
        ],
    ):
        proc = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[3:])} failed: {proc.stderr.strip()}")


def node_manifest(name: str, run_id: str) -> dict[str, object]:
    """A simulated node: kwok manages it (annotation); tainted so only bench pods go there."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                SIM_KEY: "true",
                BENCH_LABEL: run_id,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
            "annotations": {SIM_KEY: "true"},
        },
        "spec": {
            "taints": [
                {"key": SIM_KEY, "value": "true", "effect": "NoSchedule"},
                {"key": SIM_KEY, "value": "true", "effect": "NoExecute"},
            ]
        },
    }


async def create_nodes(
    kube: Kube, run_id: str, count: int, *, log: Callable[[str], None]
) -> list[str]:
    """Simulated nodes, and wait until kwok has made them all Ready."""
    names = [f"bench-kwok-{run_id}-{i}" for i in range(count)]
    for name in names:
        await kube.request("POST", "/api/v1/nodes", body=node_manifest(name, run_id))
    deadline = time.monotonic() + 120
    while True:
        listing = await kube.request(
            "GET", "/api/v1/nodes", params={"labelSelector": f"{BENCH_LABEL}={run_id}"}
        )
        ready = sum(
            1
            for node in listing.get("items") or []
            for c in (node.get("status") or {}).get("conditions") or []
            if c.get("type") == "Ready" and c.get("status") == "True"
        )
        if ready == count:
            log(f"{count} simulated nodes Ready")
            return names
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {ready}/{count} simulated nodes became Ready: is kwok up?")
        await asyncio.sleep(1)


async def create_namespaces(kube: Kube, run_id: str, count: int) -> list[str]:
    """Namespaces bench-<run>-<i>, each with its default ServiceAccount in place."""
    names = [f"bench-{run_id}-{i}" for i in range(count)]
    for name in names:
        await kube.request(
            "POST",
            "/api/v1/namespaces",
            body={"metadata": {"name": name, "labels": {BENCH_LABEL: run_id}}},
            ok=(409,),
        )
    for name in names:
        for _ in range(120):
            found = await kube.request(
                "GET", f"/api/v1/namespaces/{name}/serviceaccounts/default", ok=(404,)
            )
            if found:
                break
            await asyncio.sleep(0.5)
    return names


async def delete_records(kube: Kube, namespaces: list[str]) -> None:
    """Remove every record in the benchmark's namespaces (a fresh start for the operator)."""
    for namespace in namespaces:
        await kube.request(
            "DELETE",
            f"/apis/podtrail.io/v1alpha1/namespaces/{namespace}/podlifecyclerecords",
            ok=(404,),
            timeout=300,
        )
    for _ in range(600):
        left = 0
        for namespace in namespaces:
            page = await kube.request(
                "GET",
                f"/apis/podtrail.io/v1alpha1/namespaces/{namespace}/podlifecyclerecords",
                params={"limit": "1"},
            )
            left += len(page.get("items") or [])
        if not left:
            return
        await asyncio.sleep(0.5)


async def teardown(kube: Kube, run_id: str | None, *, log: Callable[[str], None]) -> None:
    """Remove the benchmark's namespaces (pods force-deleted first) and simulated nodes.

    With run_id None, whatever any earlier run left behind.
    """
    selector = f"{BENCH_LABEL}={run_id}" if run_id else BENCH_LABEL
    namespaces = await kube.request("GET", "/api/v1/namespaces", params={"labelSelector": selector})
    names = [n["metadata"]["name"] for n in namespaces.get("items") or []]
    for name in names:
        try:
            # Nothing plays a kubelet for these pods any more: remove them at once.
            await kube.request(
                "DELETE",
                f"/api/v1/namespaces/{name}/pods",
                body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
                timeout=300,
            )
            await kube.request("DELETE", f"/api/v1/namespaces/{name}", ok=(404, 409))
        except ApiError as error:
            log(f"could not delete namespace {name}: {error}")
    nodes = await kube.request("GET", "/api/v1/nodes", params={"labelSelector": selector})
    for node in nodes.get("items") or []:
        name = node["metadata"]["name"]
        await kube.request("DELETE", f"/api/v1/nodes/{name}", ok=(404,))
        await kube.request(
            "DELETE",
            f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}",
            ok=(404,),
        )
    if names or nodes.get("items"):
        log(f"removed {len(names)} namespaces and {len(nodes.get('items') or [])} simulated nodes")
