"""The largest record the core can be made to write: every list full, every string at its cap.

Every string that can come from outside (names, reasons, messages, UIDs, addresses) is made of
one wide character (4 bytes in UTF-8 by default), each string distinct where identity matters.
"""

from __future__ import annotations

import json
from typing import Any

from podtrail import core

from .builders import NAMESPACE, POD, at, ts

WIDE = 0x1F600  # 4 bytes in UTF-8
SERVICES = 32
EVENTS_BEYOND_THE_TIMELINE = 8

Json = dict[str, Any]


class Text:
    """Distinct strings of a chosen length made of wide characters."""

    def __init__(self, base: int = WIDE) -> None:
        self.base = base
        self.counter = 0

    def __call__(self, length: int) -> str:
        """A string never returned before (its first characters count up)."""
        self.counter += 1
        digits, value = [], self.counter
        while value:
            value, digit = divmod(value, 64)
            digits.append(chr(self.base + digit))
        return ("".join(digits) + chr(self.base) * length)[:length]


def _terminated(text: Text, started: float, finished: float, exit_code: int) -> Json:
    return {
        "exitCode": exit_code,
        "reason": text(64),
        "message": text(1100),
        "startedAt": ts(started),
        "finishedAt": ts(finished),
        "containerID": "containerd://" + text(12),
    }


def _pod(text: Text, uid: str, created: float, containers: int, deleted: bool) -> Json:
    names = [text(63) for _ in range(containers)]
    spec_items = [
        {"name": n, "image": "x", "lifecycle": {"preStop": {"exec": {"command": ["x"]}}}}
        for n in names
    ]
    statuses = [
        {
            "name": n,
            "state": {"terminated": _terminated(text, created + 10, created + 40, 137)},
            "lastState": {"terminated": _terminated(text, created + 5, created + 9, 1)},
            "ready": False,
            "restartCount": 2**31 - 1,
            "containerID": "containerd://" + text(12),
        }
        for n in names
    ]
    conditions = [
        {
            "type": text(128),
            "status": text(16),
            "lastTransitionTime": ts(created + 2),
            "reason": text(64),
            "message": text(1100),
        }
        for _ in range(15)
    ]
    conditions.append(
        {
            "type": "DisruptionTarget",
            "status": "True",
            "lastTransitionTime": ts(created + 3),
            "reason": text(64),
            "message": text(1100),
        }
    )
    meta: Json = {
        "name": POD,
        "namespace": NAMESPACE,
        "uid": uid,
        "creationTimestamp": ts(created),
        "ownerReferences": [{"kind": text(63), "name": text(253), "controller": True}],
    }
    if deleted:
        meta["deletionTimestamp"] = ts(created + 40)
        meta["deletionGracePeriodSeconds"] = 30
    return {
        "metadata": meta,
        "spec": {"nodeName": text(253), "containers": spec_items},
        "status": {
            "phase": text(16),
            "reason": text(64),
            "message": text(1100),
            "conditions": conditions,
            "containerStatuses": statuses,
        },
    }


def _slice(text: Text, uid: str) -> Json:
    return {
        "metadata": {
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": text(63)},
        },
        "endpoints": [
            {
                "addresses": [text(64)],
                "conditions": {"ready": False, "serving": True, "terminating": True},
                "targetRef": {"kind": "Pod", "name": POD, "uid": uid},
            }
        ],
    }


def _event(text: Text, uid: str, index: int, created: float, reason: str | None = None) -> Json:
    first = created + 50 + index
    return {
        "metadata": {"uid": text(128), "namespace": NAMESPACE},
        "involvedObject": {
            "kind": "Pod",
            "name": POD,
            "namespace": NAMESPACE,
            "uid": uid,
            "fieldPath": "spec.containers{" + text(63) + "}",
        },
        "reason": reason or text(64),
        "message": text(1100),
        "type": "Warning",
        "firstTimestamp": ts(first),
        "lastTimestamp": ts(first + 0.5 + 1),
        "count": 2**31 - 1,
    }


def worst_case_record(limits: core.Limits, base: int = WIDE) -> core.Record:
    """A record with every list full and every string at its cap, built through core.step."""
    text = Text(base)
    record = core.Record()

    def feed(observation: core.Observation | None, now: float) -> None:
        nonlocal record
        assert observation is not None
        record = core.step(record, observation, now=at(now), limits=limits).record

    for instance in range(limits.previous_cap()):
        created = instance * 1000.0
        earlier = text(128)
        feed(core.observe_pod(_pod(text, earlier, created, 1, False)), created + 1)
        for index in range(3):  # notable entries with long summaries, for its summary
            event = _event(text, earlier, index, created, "BackOff")
            feed(core.observe_event(event), created + 2)
        feed(core.observe_pod(_pod(text, earlier, created, 1, True)), created + 60)
    created = 100_000.0
    uid = text(128)
    feed(core.observe_pod(_pod(text, uid, created, limits.containers_cap(), False)), created + 1)
    for _ in range(SERVICES):
        feed(core.observe_endpoint_slice_change(None, _slice(text, uid), now=at(created))[0], 0)
    events = max(limits.timeline_cap(), limits.seen_events_cap()) + EVENTS_BEYOND_THE_TIMELINE
    for index in range(events):
        feed(core.observe_event(_event(text, uid, index, created)), created + 2)
    feed(core.observe_pod(_pod(text, uid, created, limits.containers_cap(), True)), created + 60)
    return record


def encoded_size(status: Json) -> int:
    """Bytes of the status as UTF-8 JSON (how the API server stores a 4-byte character)."""
    return len(json.dumps(status, ensure_ascii=False).encode())


def go_encoded_size(status: Json) -> int:
    """Bytes as Go's encoder writes it: also <, > and & as 6-byte escapes."""
    text = json.dumps(status, ensure_ascii=False, separators=(",", ":"))
    escapes = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}
    return len(text.translate(escapes).encode())
