"""The benchmark's place in the cluster: CRD, kwok and its nodes, namespaces; and their removal.

Everything the harness creates carries the label bench.podtrail.io/bench=<run id> (nodes,
namespaces) so a crashed run's leftovers can be found and removed by the next one. A run holds
a Lease (default/podtrail-bench-<run id>) while it lives: another run waits for it to end, and
never removes what a live run created.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

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


# Pods (and so records) per namespace at most: a namespace's pods are deleted in one request,
# which the API server cuts off at its request timeout (60 s by default).
PODS_PER_NAMESPACE = 1250
PODS_PER_NODE = 1000  # half the simulated nodes' capacity (kwok-stages.yaml: 2,000 pods)


def namespaces_for(pods: int) -> int:
    """How many namespaces the pods are spread over: 4, more beyond 5,000 pods."""
    return max(4, -(-pods // PODS_PER_NAMESPACE))


def nodes_for(pods: int) -> int:
    """How many simulated nodes carry the pods: 10, more beyond 10,000 pods."""
    return max(10, -(-pods // PODS_PER_NODE))


def _records_path(namespace: str) -> str:
    return f"/apis/podtrail.io/v1alpha1/namespaces/{namespace}/podlifecyclerecords"


async def delete_records(
    kube: Kube, namespaces: list[str], *, expected: int = 0, log: Callable[[str], None] = print
) -> None:
    """Remove every record in the benchmark's namespaces (a fresh start for the operator).

    A collection delete cut off by the API server's request timeout is asked again, until none
    is left or a deadline that grows with the `expected` number of records.
    """
    deadline = time.monotonic() + max(300.0, expected * 0.05)
    while True:
        left = [ns for ns in namespaces if await _has_records(kube, ns)]
        if not left:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"records still in {', '.join(left)}: the start would not be fresh")
        for namespace in left:
            try:
                await kube.request("DELETE", _records_path(namespace), ok=(404,), timeout=300)
            except (ApiError, TimeoutError, aiohttp.ClientError) as error:
                log(f"deleting the records of {namespace}: {error}; asking again")
        await asyncio.sleep(0.5)


async def _has_records(kube: Kube, namespace: str) -> bool:
    page = await kube.request("GET", _records_path(namespace), params={"limit": "1"})
    return bool(page.get("items"))


LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
LEASE_SECONDS = 60


def _lease_body(run_id: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": f"podtrail-bench-{run_id}", "labels": {BENCH_LABEL: run_id}},
        "spec": {
            "holderIdentity": f"podtrail-bench-{run_id}",
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": now,
        },
    }


async def hold_lease(kube: Kube, run_id: str) -> None:
    """Say this run is alive (a Lease renewed every 10 s) until cancelled, then drop it."""
    try:
        await kube.request("POST", LEASES, body=_lease_body(run_id), ok=(409,))
        while True:
            await asyncio.sleep(10)
            with contextlib.suppress(ApiError, OSError):
                await kube.request(
                    "PATCH",
                    f"{LEASES}/podtrail-bench-{run_id}",
                    body={"spec": _lease_body(run_id)["spec"]},
                    content_type="application/merge-patch+json",
                )
    finally:
        with contextlib.suppress(Exception):
            await kube.request("DELETE", f"{LEASES}/podtrail-bench-{run_id}", ok=(404,))


async def live_runs(kube: Kube) -> set[str]:
    """Runs of the benchmark whose lease is current (another run going on against this API)."""
    leases = await kube.request("GET", LEASES, params={"labelSelector": BENCH_LABEL})
    alive = set()
    now = datetime.now(UTC)
    for lease in leases.get("items") or []:
        renewed = (lease.get("spec") or {}).get("renewTime")
        run = (lease["metadata"].get("labels") or {}).get(BENCH_LABEL)
        if not renewed or not run:
            continue
        when = datetime.fromisoformat(renewed.replace("Z", "+00:00"))
        if (now - when).total_seconds() < LEASE_SECONDS:
            alive.add(run)
    return alive


async def wait_for_other_runs(
    kube: Kube, *, log: Callable[[str], None], timeout: float = 3600
) -> None:
    """Two runs at once would measure each other: wait until no other run is alive."""
    deadline = time.monotonic() + timeout
    said = False
    while others := await live_runs(kube):
        if time.monotonic() > deadline:
            raise RuntimeError(f"another benchmark run is still going on: {sorted(others)}")
        if not said:
            log(f"another benchmark run is going on ({', '.join(sorted(others))}); waiting")
            said = True
        await asyncio.sleep(10)


async def teardown(kube: Kube, run_id: str | None, *, log: Callable[[str], None]) -> None:
    """Remove the benchmark's namespaces (pods force-deleted first) and simulated nodes.

    With run_id None: what earlier runs left behind (never a run whose lease is current).
    """
    selector = f"{BENCH_LABEL}={run_id}" if run_id else BENCH_LABEL
    spared = set() if run_id else await live_runs(kube)

    def ours(obj: dict[str, Any]) -> bool:
        return (obj["metadata"].get("labels") or {}).get(BENCH_LABEL) not in spared

    namespaces = await kube.request("GET", "/api/v1/namespaces", params={"labelSelector": selector})
    names = [n["metadata"]["name"] for n in namespaces.get("items") or [] if ours(n)]
    for name in names:
        await _delete_namespace(kube, name, log=log)
    nodes = await kube.request("GET", "/api/v1/nodes", params={"labelSelector": selector})
    nodes["items"] = [n for n in nodes.get("items") or [] if ours(n)]
    for node in nodes["items"]:
        name = node["metadata"]["name"]
        await kube.request("DELETE", f"/api/v1/nodes/{name}", ok=(404,))
        await kube.request(
            "DELETE",
            f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}",
            ok=(404,),
        )
    if names or nodes.get("items"):
        log(f"removed {len(names)} namespaces and {len(nodes.get('items') or [])} simulated nodes")
    await _until_namespaces_gone(kube, names, log=log)


async def _delete_namespace(kube: Kube, name: str, *, log: Callable[[str], None]) -> None:
    """Its pods at once (nothing plays their kubelet any more), then the namespace."""
    try:
        await kube.request(
            "DELETE",
            f"/api/v1/namespaces/{name}/pods",
            body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
            timeout=300,
        )
    except (ApiError, TimeoutError, aiohttp.ClientError) as error:
        # Cut off by the API server's request timeout, say: the namespace's removal ends it.
        log(f"deleting the pods of namespace {name}: {error}")
    try:
        await kube.request("DELETE", f"/api/v1/namespaces/{name}", ok=(404, 409))
    except (ApiError, TimeoutError, aiohttp.ClientError) as error:
        log(f"could not delete namespace {name}: {error}")


NAMESPACES_GONE_SECONDS = 900.0


async def _until_namespaces_gone(
    kube: Kube, names: list[str], *, log: Callable[[str], None]
) -> None:
    """Wait (bounded) until the namespaces are gone.

    Emptying them (tens of thousands of objects after a large run) should not go on under the
    next run's measurements. At the deadline it logs those left and returns.
    """
    began = time.monotonic()
    left = list(names)
    while left:
        found = [name for name in left if await _exists(kube, f"/api/v1/namespaces/{name}")]
        if not found:
            log(f"{len(names)} namespaces gone ({time.monotonic() - began:.0f} s)")
            return
        if time.monotonic() - began > NAMESPACES_GONE_SECONDS:
            log(f"namespaces still being removed after {NAMESPACES_GONE_SECONDS:.0f} s: {found}")
            return
        left = found
        await asyncio.sleep(2.0)


async def _exists(kube: Kube, path: str) -> bool:
    return bool(await kube.request("GET", path, ok=(404,)))
