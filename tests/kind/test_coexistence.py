"""The local host-process cluster keeps working while the kind cluster runs on the same machine:
its pods still reach each other, by address and through a Service, although dockerd has set up
its own forwarding rules (docs/kind.md, "Next to the local cluster")."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from tests.e2e.support import Kube, container, pod, pod_ready
from tests.kind.conftest import KindCluster

pytestmark = [pytest.mark.cluster, pytest.mark.kubelet, pytest.mark.kind]

LOCAL_KUBECONFIG = Path(os.environ.get("PODTRAIL_CLUSTER_DIR", "/var/lib/podtrail/cluster")) / (
    "kubeconfig"
)


@pytest.fixture
async def local_cluster(kind: KindCluster) -> AsyncIterator[Kube]:
    if not LOCAL_KUBECONFIG.exists():
        pytest.skip("the local cluster is not running (make cluster)")
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(LOCAL_KUBECONFIG), client_configuration=configuration
    )
    api = client.ApiClient(configuration)
    try:
        try:
            await client.VersionApi(api).get_code()
        except Exception as error:  # noqa: BLE001 - any failure means: not reachable
            pytest.skip(f"the local cluster does not answer: {error}")
        yield Kube(api)
    finally:
        await api.close()


async def test_local_cluster_pods_still_reach_each_other(
    kind: KindCluster, local_cluster: Kube
) -> None:
    assert all(kind.running(n) for n in kind.nodes), "the kind cluster is not fully running"
    kube = local_cluster
    namespace = await kube.namespace("kind-coexist")
    try:
        await kube.create_pod(
            namespace, pod("web", container("app", "httpd -f -p 8080 -h /var/www"), grace=1)
        )
        service: Any = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
        await kube.core.create_namespaced_service(namespace, service)
        web = await kube.wait_pod(namespace, "web", pod_ready, what="Ready")
        get = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {} | grep -q testbox"
        targets = [f"{web['status']['podIP']} 8080", f"web.{namespace}.svc.cluster.local 80"]
        script = "; ".join(
            f"ok=0; for i in $(seq 1 20); do if {get.format(t)}; then ok=1; break; fi; sleep 1; "
            f"done; [ $ok = 1 ] || {{ echo 'cannot reach {t}'; exit 1; }}"
            for t in targets
        )
        await kube.create_pod(namespace, pod("client", container("app", script), restart="Never"))
        done = await kube.wait_pod(
            namespace,
            "client",
            lambda p: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
            what="the client's end",
        )
        assert done["status"]["phase"] == "Succeeded", done["status"]
    finally:
        await kube.core.delete_namespace(namespace, propagation_policy="Background")
