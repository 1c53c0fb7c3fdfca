"""Raw JSON → observations."""

from __future__ import annotations

from typing import Any

import pytest

from podtrail import core
from podtrail.core.facts import ContainerKind

from .builders import (
    NAMESPACE,
    POD,
    UID,
    at,
    container,
    endpoint_slice,
    event,
    micro_ts,
    pod,
    running,
    sidecar,
    terminated_state,
    waiting,
)


def test_observe_pod_reads_the_fields_podtrail_uses() -> None:
    raw = pod(
        phase="Running",
        init_containers=[container("migrate"), sidecar("proxy")],
        containers=[container("app", pre_stop=["sleep", "5"], startup_probe=True)],
        init_statuses=[waiting("migrate", "PodInitializing"), running("proxy", 3)],
        statuses=[running("app", 10, restart_count=2, last=terminated_state(1, 4, 9))],
        deleted_at=100,
        grace=20,
    )
    seen = core.observe_pod(raw)
    assert (seen.namespace, seen.pod_name, seen.pod_uid) == (NAMESPACE, POD, UID)
    assert seen.deletion_timestamp == at(120)
    assert seen.deletion_grace_seconds == 20
    assert seen.owner is not None and seen.owner.deployment == "web"
    kinds = {c.name: c.kind for c in seen.containers}
    assert kinds == {
        "migrate": ContainerKind.INIT,
        "proxy": ContainerKind.SIDECAR,
        "app": ContainerKind.APP,
    }
    app = seen.containers[-1]
    assert app.pre_stop and app.startup_probe
    assert app.restart_count == 2 and app.started_at == at(10)
    assert app.last_ended is not None and app.last_ended.exit_code == 1


@pytest.mark.parametrize(
    ("owner", "template_hash", "deployment"),
    [
        (("ReplicaSet", "web-7d9f8b6c5d"), "7d9f8b6c5d", "web"),
        (("ReplicaSet", "web-7d9f8b6c5d"), "other", None),
        (("StatefulSet", "web"), "7d9f8b6c5d", None),
    ],
)
def test_owner_deployment_is_inferred_only_from_a_matching_hash(
    owner: tuple[str, str], template_hash: str, deployment: str | None
) -> None:
    seen = core.observe_pod(pod(owner=owner, template_hash=template_hash))
    assert seen.owner is not None
    assert (seen.owner.kind, seen.owner.name, seen.owner.deployment) == (*owner, deployment)


def test_observe_event_reads_container_counts_and_times() -> None:
    raw = event(
        "Unhealthy",
        "Readiness probe failed: boom",
        first=5,
        last=50,
        count=7,
        container="migrate",
        init=True,
        kind="Warning",
    )
    seen = core.observe_event(raw)
    assert seen is not None
    assert (seen.pod_name, seen.pod_uid, seen.container, seen.init_container) == (
        POD,
        UID,
        "migrate",
        True,
    )
    assert (seen.first_time, seen.last_time, seen.count) == (at(5), at(50), 7)


def test_observe_event_series_and_event_time() -> None:
    raw = event("Unhealthy", "Liveness probe failed: x")
    raw.update(
        firstTimestamp=None,
        lastTimestamp=None,
        count=None,
        eventTime=micro_ts(5.25),
        series={"count": 12, "lastObservedTime": micro_ts(80.5)},
    )
    seen = core.observe_event(raw)
    assert seen is not None
    assert (seen.first_time, seen.last_time, seen.count) == (at(5.25), at(80.5), 12)


@pytest.mark.parametrize(
    "change",
    [
        {"involvedObject": {"kind": "Node", "name": "worker-1"}},
        {"reason": None},
        {"firstTimestamp": None, "lastTimestamp": None, "metadata": {"name": "x"}},
        {"involvedObject": "garbage"},
    ],
)
def test_observe_event_refuses_irrelevant_or_unusable_events(change: dict[str, Any]) -> None:
    raw = event("Scheduled", "Successfully assigned shop/web-0 to worker-1")
    raw.update(change)
    assert core.observe_event(raw) is None


MEMBER = (POD, UID, "10.244.1.7")


def test_endpoint_slice_change_per_pod() -> None:
    ready = endpoint_slice(
        members=[(*MEMBER, True, True, False), ("web-1", "u1", "10.0.0.2", True, True, False)]
    )
    terminating = endpoint_slice(
        members=[(*MEMBER, False, True, True), ("web-1", "u1", "10.0.0.2", True, True, False)]
    )
    gone = endpoint_slice(members=[("web-1", "u1", "10.0.0.2", True, True, False)])

    created = core.observe_endpoint_slice_change(None, ready, now=at(10))
    assert {(e.pod_name, e.ready, e.removed) for e in created} == {
        (POD, True, False),
        ("web-1", True, False),
    }
    changed = core.observe_endpoint_slice_change(ready, terminating, now=at(100))
    assert [(e.pod_name, e.ready, e.serving, e.terminating, e.time) for e in changed] == [
        (POD, False, True, True, at(100))
    ]
    removed = core.observe_endpoint_slice_change(terminating, gone, now=at(103))
    assert [(e.pod_name, e.pod_uid, e.removed, e.service) for e in removed] == [
        (POD, UID, True, "web")
    ]
    deleted = core.observe_endpoint_slice_change(gone, None, now=at(104))
    assert [(e.pod_name, e.removed) for e in deleted] == [("web-1", True)]
    assert core.observe_endpoint_slice_change(ready, ready, now=at(11)) == []


def test_endpoint_slice_without_service_label_is_ignored() -> None:
    raw = endpoint_slice(members=[(*MEMBER, True, True, False)])
    raw["metadata"]["labels"] = {}
    assert core.observe_endpoint_slice_change(None, raw, now=at(1)) == []
