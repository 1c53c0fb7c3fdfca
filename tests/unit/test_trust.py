"""EndpointSlices speak only for pods of their own namespace, named with the pod's UID."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from podtrail import core

from .builders import NAMESPACE, POD, UID, at, endpoint_slice, pod, running, running_conditions

OLDER_UID = "8d5e7c1a-0000-4000-8000-0000000000ff"
ADDRESS = "10.244.1.7"


def _running_record() -> core.Record:
    raw = pod(phase="Running", statuses=[running("app", 10)], conditions=running_conditions(1, 12))
    return core.step(core.Record(), core.observe_pod(raw), now=at(20)).record


def _slice(**target: Any) -> dict[str, Any]:
    """A slice of this namespace whose one endpoint's targetRef is changed by `target`."""
    raw = endpoint_slice(members=[(POD, UID, ADDRESS, False, True, True)])
    ref = raw["endpoints"][0]["targetRef"]
    for name, value in target.items():
        if value is None:
            ref.pop(name, None)
        else:
            ref[name] = value
    return raw


def _in_namespace(raw: dict[str, Any], namespace: str) -> dict[str, Any]:
    moved = copy.deepcopy(raw)
    moved["metadata"]["namespace"] = namespace
    return moved


def _apply(record: core.Record, old: Any, new: Any) -> core.Record:
    for observation in core.observe_endpoint_slice_change(old, new, now=at(100)):
        if (observation.namespace, observation.pod_name) == (NAMESPACE, POD):
            record = core.step(record, observation, now=at(100)).record
    return record


def _endpoint_traces(record: core.Record) -> tuple[object, ...]:
    status = core.render_record(record)
    entries = [e for e in status["timeline"] if "ndpoint" in e["type"]]
    removals = status.get("termination", {}).get("endpointRemovals", [])
    return (*entries, *status.get("endpoints", []), *removals)


@pytest.mark.parametrize(
    ("case", "raw"),
    [
        ("another namespace names the pod", _in_namespace(_slice(), "intruder")),
        (
            "another namespace, targetRef without namespace",
            _in_namespace(_slice(namespace=None), "intruder"),
        ),
        ("targetRef in another namespace", _slice(namespace="other")),
        ("no UID", _slice(uid=None)),
        ("UID of an earlier pod of the same name", _slice(uid=OLDER_UID)),
        ("not a Pod", _slice(kind="Node")),
    ],
)
def test_untrusted_endpoints_touch_no_record(case: str, raw: dict[str, Any]) -> None:
    record = _running_record()
    added = _apply(record, None, raw)
    removed = _apply(added, raw, None)
    assert _endpoint_traces(added) == (), case
    assert _endpoint_traces(removed) == (), case


@pytest.mark.parametrize("namespace", [NAMESPACE, None])
def test_the_pods_own_slice_is_recorded(namespace: str | None) -> None:
    raw = _slice(namespace=namespace)
    record = _apply(_running_record(), None, raw)
    status = core.render_record(record)
    assert [e["service"] for e in status["endpoints"]] == ["web"]
    assert status["termination"]["endpointRemovals"][0]["terminatingAt"]
    gone = core.render_record(_apply(record, raw, None))
    assert "endpoints" not in gone or gone["endpoints"] == []
    assert [e["type"] for e in gone["timeline"]][-1] == "RemovedFromEndpoints"


def test_observations_carry_the_trusted_uid_only() -> None:
    mixed = endpoint_slice(
        members=[
            (POD, UID, ADDRESS, True, True, False),
            ("web-1", None, "10.0.0.9", True, True, False),
        ]
    )
    seen = core.observe_endpoint_slice_change(None, mixed, now=at(1))
    assert [(o.pod_name, o.pod_uid, o.namespace) for o in seen] == [(POD, UID, NAMESPACE)]


def test_a_record_without_a_pod_uid_takes_no_endpoint() -> None:
    raw = _slice()
    assert _endpoint_traces(_apply(core.Record(), None, raw)) == ()
