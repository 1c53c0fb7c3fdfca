"""Throttled by API Priority and Fairness: the operator's identity gets one seat and 429s.

The operator runs as a ServiceAccount with the rights the shipped ClusterRole grants (its rules
read from manifests/rbac/role.yaml) through a token kubeconfig. A FlowSchema sends every request
of that identity to a PriorityLevelConfiguration with the smallest concurrency that rejects
what does not fit, while a burst of pods is created and deleted. The API server's own APF
counters prove the 429s were sent; the operator's counters must show it saw them and backed off;
once the FlowSchema is deleted, every record must catch up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tests.e2e.support import container, pod
from tests.faults.conftest import plays
from tests.faults.support import (
    FaultHarness,
    Obj,
    describe,
    duplicate_keys,
    record_figures,
    status_of,
)
from tests.support.kube import wait_for
from tests.support.operator import REPO, MetricKey, has_metric

BURST_PODS = 30
STEADY_PODS = 4
THROTTLE_SECONDS = 45
# Where the operator counts a 429 (a request's result, a stream's restart, a write's failure).
THROTTLE_COUNTERS = (
    "podtrail_api_requests_total",
    "podtrail_stream_restarts_total",
    "podtrail_record_write_failures_total",
)
# Backing off: well under what a client retrying without pause would send.
MAX_REQUESTS_PER_SECOND = 20


def shipped_rules() -> list[Obj]:
    """The rules of the operator's ClusterRole as the manifests ship it."""
    for doc in yaml.safe_load_all((REPO / "manifests" / "rbac" / "role.yaml").read_text()):
        if doc and doc.get("kind") == "ClusterRole":
            return list(doc["rules"])
    raise AssertionError("no ClusterRole in manifests/rbac/role.yaml")


async def service_account_kubeconfig(h: FaultHarness, namespace: str, suffix: str) -> Path:
    """An SA with the shipped rights (and Leases in its namespace); a token kubeconfig for it."""
    rbac = client.RbacAuthorizationV1Api(h.kube.api)
    account = f"podtrail-{suffix}"
    role = f"fault-podtrail-{suffix}"
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    await h.kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    await rbac.create_cluster_role({"metadata": {"name": role}, "rules": shipped_rules()})
    h.cleanups.append(lambda: rbac.delete_cluster_role(role))
    await rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": subject,
        }
    )
    h.cleanups.append(lambda: rbac.delete_cluster_role_binding(role))
    # The lease lives in this namespace here, not in podtrail-system as when deployed.
    lease_rules = [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "watch", "create", "update", "patch"],
        }
    ]
    await rbac.create_namespaced_role(
        namespace, {"metadata": {"name": "lease"}, "rules": lease_rules}
    )
    await rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "lease"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lease"},
            "subjects": subject,
        },
    )
    token = h.kubectl_run("-n", namespace, "create", "token", account, "--duration=2h").strip()
    admin = yaml.safe_load(Path(h.kubeconfig).read_text())
    authority = admin["clusters"][0]["cluster"]
    path = h.log_dir / f"kubeconfig-{account}"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "local", "cluster": {**authority, "server": "https://127.0.0.1:6443"}}
                ],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "local", "user": account}}],
                "current-context": "sa",
            }
        )
    )
    path.chmod(0o600)
    return path


def throttle_objects(suffix: str, namespace: str, account: str) -> list[Obj]:
    level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": f"fault-tiny-{suffix}"},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 1,
                "lendablePercent": 0,
                "limitResponse": {"type": "Reject"},
            },
        },
    }
    schema = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": f"fault-throttle-{suffix}"},
        "spec": {
            "priorityLevelConfiguration": {"name": f"fault-tiny-{suffix}"},
            "matchingPrecedence": 100,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "serviceAccount": {"name": account, "namespace": namespace},
                        }
                    ],
                    "resourceRules": [
                        {
                            "verbs": ["*"],
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "clusterScope": True,
                            "namespaces": ["*"],
                        }
                    ],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }
            ],
        },
    }
    return [level, schema]


async def remove_throttle(h: FaultHarness, objects: list[Obj]) -> None:
    flow = client.FlowcontrolApiserverV1Api(h.kube.api)
    for obj in reversed(objects):
        with contextlib.suppress(ApiException):
            if obj["kind"] == "FlowSchema":
                await flow.delete_flow_schema(obj["metadata"]["name"])
            else:
                await flow.delete_priority_level_configuration(obj["metadata"]["name"])


def rejected_by_server(h: FaultHarness, schema: str) -> float:
    """The API server's own count of requests its APF rejected for this FlowSchema."""
    text = h.kubectl_run("get", "--raw=/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_flowcontrol_rejected_requests_total{") and (
            f'flow_schema="{schema}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def throttled_counts(metrics: dict[MetricKey, float]) -> dict[str, float]:
    """Per counter, the 429s the operator counted (a request's result, a stream's restart, a
    write's failure: one 429 may show in more than one of them)."""
    counts = dict.fromkeys(THROTTLE_COUNTERS, 0.0)
    for (name, labels), value in metrics.items():
        if name in counts and any(v in ("429", "throttled") for _, v in labels):
            counts[name] += value
    return counts


def request_count(metrics: dict[MetricKey, float]) -> float:
    return sum(v for (name, _), v in metrics.items() if name == "podtrail_api_requests_total")


async def burst(h: FaultHarness, namespace: str) -> None:
    """Pods created at once that run briefly and succeed: many record writes at the same time."""
    names = [f"burst-{index}" for index in range(BURST_PODS)]
    body = container("app", "sleep 2; exit 0")
    await asyncio.gather(*(h.create_pod(namespace, pod(n, body, restart="Never")) for n in names))


async def throttled(h: FaultHarness) -> dict[str, Any]:
    namespace = await h.namespace("throttle")
    suffix = namespace.rsplit("-", 1)[-1]
    kubeconfig = await service_account_kubeconfig(h, namespace, suffix)
    # Every observation written at once, many at a time: the burst surely needs more than the
    # priority level's 3 seats (with the defaults a quiet run asked for more only now and then).
    operator = h.operator(
        "throttle",
        [namespace],
        "--write-concurrency",
        "32",
        "--coalesce-seconds",
        "0",
        kubeconfig=str(kubeconfig),
    )
    await operator.start()
    for index in range(STEADY_PODS):
        await h.create_pod(
            namespace, pod(f"steady-{index}", container("app", "sleep 3600"), grace=1)
        )
    objects = throttle_objects(suffix, namespace, f"podtrail-{suffix}")
    h.cleanups.append(lambda: remove_throttle(h, objects))
    schema = objects[1]["metadata"]["name"]
    before = await operator.metrics()
    began = time.monotonic()
    for obj in objects:
        await h.kube.apply(obj)
    await burst(h, namespace)
    await asyncio.sleep(max(0.0, THROTTLE_SECONDS - (time.monotonic() - began)))
    during = await operator.metrics()
    throttled_for = time.monotonic() - began
    rejected = rejected_by_server(h, schema)
    await remove_throttle(h, objects)
    lifted = time.monotonic()
    records = await caught_up(h, namespace)
    return {
        "before": before,
        "during": during,
        "seconds": throttled_for,
        "rejected": rejected,
        "catch_up_seconds": time.monotonic() - lifted,
        "records": records,
        "healthz": await operator.healthz(),
    }


async def caught_up(h: FaultHarness, namespace: str) -> dict[str, Obj]:
    """Wait (up to 120 s) until every burst pod's record has its outcome and steady ones run."""
    latest: dict[str, Obj] = {}

    async def done() -> bool:
        latest.clear()
        latest.update({r["metadata"]["name"]: r for r in await h.records(namespace)})
        return all(
            status_of(latest.get(f"burst-{i}")).get("outcome") == "Succeeded"
            for i in range(BURST_PODS)
        ) and all(
            status_of(latest.get(f"steady-{i}")).get("phase") == "Running"
            for i in range(STEADY_PODS)
        )

    with contextlib.suppress(AssertionError):
        await wait_for(done, timeout=120, what="records to catch up", interval=2)
    return dict(latest)


@plays(throttled)
def test_throttled_operator_backs_off_and_loses_nothing(outcome: dict[str, Any]) -> None:
    before, during = outcome["before"], outcome["during"]
    records: dict[str, Obj] = outcome["records"]
    requests = request_count(during) - request_count(before)
    counted_before, counted_during = throttled_counts(before), throttled_counts(during)
    seen = {name: counted_during[name] - counted_before[name] for name in THROTTLE_COUNTERS}
    wrong = [
        name
        for name in [f"burst-{i}" for i in range(BURST_PODS)]
        if status_of(records.get(name)).get("outcome") != "Succeeded"
    ] + [
        name
        for name in [f"steady-{i}" for i in range(STEADY_PODS)]
        if status_of(records.get(name)).get("phase") != "Running"
    ]
    record_figures(
        "5. throttled by API Priority and Fairness",
        {
            "throttled for (s)": round(outcome["seconds"], 1),
            "pods in the burst / steady": f"{BURST_PODS} / {STEADY_PODS}",
            "429s the API server sent (APF rejected)": outcome["rejected"],
            "429s the operator counted, by counter": seen,
            "operator requests while throttled": requests,
            "operator requests per second while throttled": round(requests / outcome["seconds"], 2),
            "records caught up after the FlowSchema went (s)": round(
                outcome["catch_up_seconds"], 1
            ),
            "records wrong after catching up": len(wrong),
            "duplicate timeline keys": sum(len(duplicate_keys(r)) for r in records.values()),
        },
    )
    assert outcome["healthz"] == 200
    assert outcome["rejected"] > 0, "the FlowSchema did not throttle the operator"
    assert not wrong, "\n".join(f"{n}: {describe(records.get(n))}" for n in wrong)
    assert not any(duplicate_keys(r) for r in records.values())
    assert has_metric(during, "podtrail_api_requests_total"), (
        "podtrail_api_requests_total is not exported: the request counter has not landed"
    )
    assert seen["podtrail_api_requests_total"] > 0, "the operator did not count the 429s it got"
    assert requests / outcome["seconds"] <= MAX_REQUESTS_PER_SECOND
