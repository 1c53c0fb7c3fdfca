"""The records themselves: labels, owners, opt-out, validation, retention, recreated pods."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from tests.e2e.conftest import Harness, plays
from tests.e2e.support import (
    GROUP,
    PLURAL,
    VERSION,
    container,
    entries,
    has_outcome,
    has_phase,
    pod,
    pod_running,
    status_of,
)

SLEEP = "trap 'exit 0' TERM; while true; do sleep 0.2; done"


def _template(app: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app, "tier": "e2e"}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "automountServiceAccountToken": False,
            "containers": [container("app", SLEEP)],
        },
    }


async def deployment_records(h: Harness) -> Any:
    namespace = await h.namespace("deploy")
    await h.kube.apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "shop"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "shop"}},
                "template": _template("shop"),
            },
        },
    )
    await h.kube.create_pod(namespace, pod("loner", container("app", SLEEP), grace=1))
    for _ in range(180):
        records = await h.kube.records(namespace, "app=shop")
        if len(records) == 2 and all((r.get("status") or {}).get("owner") for r in records):
            break
        await asyncio.sleep(0.5)
    return await h.kube.records(namespace, "app=shop"), await h.kube.records(namespace)


async def _list(h: Harness, namespace: str, **selectors: str) -> list[str]:
    listing = await h.kube.custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, **selectors
    )
    return sorted(item["metadata"]["name"] for item in listing["items"])


async def findable(h: Harness) -> Any:
    """Records selected by outcome, node and pod name; a user's label on a record kept."""
    namespace = await h.namespace("find")
    await h.kube.create_pod(namespace, pod("done", container("app", "sleep 5"), restart="Never"))
    await h.kube.create_pod(namespace, pod("broken", container("app", "exit 3"), restart="Never"))
    # Running, or already past it: a busy node's kubelet may report only the end of a short run.
    await h.kube.wait_record(
        namespace,
        "done",
        lambda r: (r.get("status") or {}).get("phase") in ("Running", "Succeeded"),
        what="the record of a started pod",
    )
    # a user labels the record, one label with the key the operator uses for the outcome
    mine = {"team": "payments", "podtrail.io/outcome": "mine"}
    await h.kube.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "done",
        {"metadata": {"labels": mine}},
        _content_type="application/merge-patch+json",
    )
    broken = await h.kube.wait_record(
        namespace,
        "broken",
        lambda r: (r["metadata"].get("labels") or {}).get("podtrail.io/outcome") == "Failed",
        what="the outcome label",
    )
    done = await h.kube.wait_record(namespace, "done", has_outcome("Succeeded"))
    await asyncio.sleep(3)  # past the coalescing window: whatever the operator writes is written
    node = broken["status"]["nodeName"]
    return {
        "done": await h.kube.record(namespace, "done"),
        "ended": done,
        "by label": await _list(h, namespace, label_selector="podtrail.io/outcome=Failed"),
        "by node label": await _list(h, namespace, label_selector=f"podtrail.io/node={node}"),
        "by outcome": await _list(h, namespace, field_selector="status.outcome=Succeeded"),
        "by node": await _list(h, namespace, field_selector=f"status.nodeName={node}"),
        "by pod": await _list(h, namespace, field_selector="spec.podName=broken"),
        "on the node": sorted(
            name
            for name, record in (("broken", broken), ("done", done))
            if record["status"].get("nodeName") == node
        ),
    }


async def opted_out(h: Harness) -> Any:
    quiet = await h.namespace("optout-ns", annotations={"podtrail.io/track": "false"})
    loud = await h.namespace("optout-pod")
    await h.kube.create_pod(quiet, pod("ignored", container("app", SLEEP), grace=1))
    await h.kube.create_pod(
        loud,
        pod(
            "private", container("app", SLEEP), grace=1, annotations={"podtrail.io/track": "false"}
        ),
    )
    await h.kube.create_pod(loud, pod("tracked", container("app", SLEEP), grace=1))
    await h.kube.wait_pod(quiet, "ignored", pod_running)
    await h.kube.wait_pod(loud, "private", pod_running)
    await h.kube.wait_record(loud, "tracked", has_phase("Running"))
    await asyncio.sleep(3)  # well past the coalescing window
    return await h.kube.records(quiet), await h.kube.record(loud, "private")


async def invalid_records(h: Harness) -> Any:
    namespace = await h.namespace("invalid")
    refusals = {}
    cases = {
        "name-mismatch": {"metadata": {"name": "one"}, "spec": {"podName": "other"}},
        "no-pod-name": {"metadata": {"name": "two"}, "spec": {}},
        "negative-ttl": {
            "metadata": {"name": "three"},
            "spec": {"podName": "three", "ttlSecondsAfterPodDeletion": -5},
        },
    }
    for case, body in cases.items():
        full = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PodLifecycleRecord", **body}
        try:
            await h.kube.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, full
            )
            refusals[case] = None
        except ApiException as error:
            refusals[case] = (error.status, str(error.body))
    return refusals


async def retention(h: Harness) -> Any:
    namespace = await h.namespace("retention")
    # Created by a user ahead of its pod, with a short retention of its own.
    await h.kube.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PodLifecycleRecord",
            "metadata": {"name": "brief"},
            "spec": {"podName": "brief", "ttlSecondsAfterPodDeletion": 6},
        },
    )
    await h.kube.create_pod(namespace, pod("brief", container("app", "echo bye"), restart="Never"))
    await h.kube.create_pod(namespace, pod("kept", container("app", "echo bye"), restart="Never"))
    for name in ("brief", "kept"):
        await h.kube.wait_record(namespace, name, has_phase("Succeeded"))
    # Catch brief's record between its pod's removal and its own retention's end.
    await h.kube.delete_pod(namespace, "brief")
    gone = await h.kube.wait_record(
        namespace, "brief", lambda r: bool((status_of(r).get("times") or {}).get("deleted"))
    )
    await h.kube.delete_pod(namespace, "kept")
    for _ in range(60):
        if await h.kube.record(namespace, "brief") is None:
            break
        await asyncio.sleep(0.5)
    await h.kube.wait_record(
        namespace, "kept", lambda r: bool((status_of(r).get("times") or {}).get("deleted"))
    )
    await asyncio.sleep(5)  # brief's record stays gone: nothing brings it back
    return gone, await h.kube.record(namespace, "brief"), await h.kube.record(namespace, "kept")


async def statefulset_recreated(h: Harness) -> Any:
    namespace = await h.namespace("sts")
    await h.kube.apps.create_namespaced_stateful_set(
        namespace,
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": _template("db"),
            },
        },
    )
    first = await h.kube.wait_record(namespace, "db-0", has_phase("Running"))
    await h.kube.delete_pod(namespace, "db-0")
    return first, await h.kube.wait_record(
        namespace,
        "db-0",
        lambda r: (
            bool(status_of(r).get("previousInstances"))
            and has_phase("Running")(r)
            and status_of(r).get("podUID") != first["status"]["podUID"]
        ),
        timeout=120,
        what="the recreated pod",
    )


@plays(deployment_records)
def test_records_carry_labels_and_owner(outcome: Any) -> None:
    selected, everything = outcome
    assert len(selected) == 2, "kubectl get plr -l app=shop finds the Deployment's pods"
    assert len(everything) == 3
    for record in selected:
        assert record["metadata"]["labels"]["tier"] == "e2e"
        assert record["spec"]["podName"] == record["metadata"]["name"]
        owner = record["status"]["owner"]
        assert owner["kind"] == "ReplicaSet"
        assert owner["name"].startswith("shop-")
        assert not record["metadata"].get("ownerReferences"), "a record must outlive its pod"
        labels = record["metadata"]["labels"]
        assert labels["podtrail.io/owner-kind"] == "Deployment"
        assert labels["podtrail.io/owner-name"] == "shop"
        assert record["status"]["summary"]["owner"] == "Deployment/shop"
    (loner,) = [r for r in everything if r["metadata"]["name"] == "loner"]
    assert "podtrail.io/owner-kind" not in (loner["metadata"].get("labels") or {})


@plays(findable)
def test_records_are_found_by_outcome_node_and_pod(outcome: Any) -> None:
    assert outcome["by label"] == ["broken"]
    assert outcome["by node label"] == outcome["on the node"]
    assert outcome["by outcome"] == ["done"]
    assert outcome["by node"] == outcome["on the node"]
    assert outcome["by pod"] == ["broken"]


@plays(findable)
def test_a_users_label_on_a_record_is_never_overwritten(outcome: Any) -> None:
    labels = outcome["done"]["metadata"]["labels"]
    assert labels["team"] == "payments"
    assert labels["podtrail.io/outcome"] == "mine", "the user's value, not Succeeded"
    assert labels["podtrail.io/node"] == outcome["done"]["status"]["nodeName"]
    assert outcome["done"]["status"]["outcome"] == "Succeeded"


@plays(opted_out)
def test_opted_out_pods_get_no_record(outcome: Any) -> None:
    in_quiet_namespace, private = outcome
    assert in_quiet_namespace == []
    assert private is None


@plays(invalid_records)
def test_invalid_records_are_refused_with_a_clear_message(outcome: Any) -> None:
    for case, refusal in outcome.items():
        assert refusal is not None, f"{case} was accepted"
        assert refusal[0] == 422, case
    assert "metadata.name must equal spec.podName" in outcome["name-mismatch"][1]
    assert "podName" in outcome["no-pod-name"][1]
    assert "ttlSecondsAfterPodDeletion" in outcome["negative-ttl"][1]


@plays(retention)
def test_records_outlive_pods_until_their_retention(outcome: Any) -> None:
    gone, brief_after, kept_after = outcome
    assert gone["status"]["outcome"] == "Succeeded"
    assert entries(gone, "PodDeleted")
    assert brief_after is None, "removed once its own 6 s retention passed"
    assert kept_after is not None, "kept under the operator's 24 h default"
    assert kept_after["status"]["times"]["deleted"]


@plays(statefulset_recreated)
def test_pod_recreated_under_the_same_name_keeps_history(outcome: Any) -> None:
    first, second = outcome
    previous = second["status"]["previousInstances"][0]
    assert previous["uid"] == first["status"]["podUID"]
    assert previous.get("deleted")
    assert second["status"]["owner"]["kind"] == "StatefulSet"
    assert entries(second, "Created")
    # the earlier pod's life in short: its last notable entries and its termination
    assert previous["phase"] and previous["timelineEntries"] >= len(previous["lastEntries"]) > 0
    ending = {"DeletionRequested", "KillingStarted", "ExitedOnTerm", "PhaseChanged"}
    assert ending & {m["type"] for m in previous["lastEntries"]}, previous["lastEntries"]
    assert previous["termination"]["verdict"] == previous["outcome"] == "GracefulShutdown"
    assert previous["termination"]["gracePeriodSeconds"] == 2
    labels = second["metadata"]["labels"]
    assert (labels["podtrail.io/owner-kind"], labels["podtrail.io/owner-name"]) == (
        "StatefulSet",
        "db",
    )
