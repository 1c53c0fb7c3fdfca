"""Reading PodLifecycleRecords as the API returns them (plain dicts), for failure messages too.

What every cluster suite asserts on: a record's status, its timeline entries of one type, the
timeline keys, and a readable account of the record when a wait or an assertion fails.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

GROUP, VERSION, PLURAL = "podtrail.io", "v1alpha1", "podlifecyclerecords"
CRD_NAME = f"{PLURAL}.{GROUP}"
RECORD_BUDGET_BYTES = 256 * 1024  # the spec's aim for any record
DESCRIBED_LINES = 200  # a record's account in a failure message stops there

Obj = dict[str, Any]


def parse_time(value: str) -> datetime:
    """An RFC 3339 time as the API writes it (a trailing Z) -> an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def status_of(record: Obj | None) -> Obj:
    """The record's status ({} before the operator wrote one)."""
    status: Obj = (record or {}).get("status") or {}
    return status


def timeline(record: Obj | None) -> list[Obj]:
    """The record's timeline entries, in order."""
    return list(status_of(record).get("timeline") or [])


def entries(record: Obj, kind: str, container_name: str | None = None) -> list[Obj]:
    """The record's timeline entries of one type (and container)."""
    return [
        item
        for item in timeline(record)
        if item.get("type") == kind
        and (container_name is None or item.get("container") == container_name)
    ]


def entry(record: Obj, kind: str, container_name: str | None = None) -> Obj:
    """The last timeline entry of one type (and container); fails the test when there is none."""
    found = entries(record, kind, container_name)
    assert found, f"no {kind} entry in {describe(record)}"
    return found[-1]


def timeline_keys(record: Obj | None) -> list[str]:
    """The keys of the record's timeline entries, in order: status.tracking.timelineKeys (at the
    entries' indexes), or the entries' own "key" in records written before the keys moved."""
    status = status_of(record)
    keys = (status.get("tracking") or {}).get("timelineKeys")
    if keys is None:
        keys = [item.get("key") for item in status.get("timeline") or []]
    return [str(key) for key in keys]


def duplicate_keys(record: Obj) -> list[str]:
    """Timeline keys that occur more than once (each fact must be recorded once)."""
    tracking = status_of(record).get("tracking") or {}
    keys = Counter(str(k) for k in tracking.get("timelineKeys") or [])
    return sorted(key for key, count in keys.items() if count > 1)


def record_bytes(record: Obj) -> int:
    """The record's size as JSON, as etcd stores it (near enough)."""
    return len(json.dumps(record, separators=(",", ":")).encode())


def describe(record: Obj | None) -> str:
    """A record's timeline as lines, for failure messages."""
    if record is None:
        return "<no record>"
    status = status_of(record)
    lines = [f"outcome={status.get('outcome')} phase={status.get('phase')}"]
    lines += [
        f"  {e.get('time')} {e.get('type')} [{e.get('container', '')}] {e.get('summary')}"
        for e in timeline(record)
    ]
    return "\n".join(lines[:DESCRIBED_LINES])


def has_outcome(*outcomes: str) -> Callable[[Obj], bool]:
    """A predicate: the record's outcome is one of these."""
    return lambda record: status_of(record).get("outcome") in outcomes


def has_phase(phase: str) -> Callable[[Obj], bool]:
    """A predicate: the record says the pod is in this phase."""
    return lambda record: status_of(record).get("phase") == phase


def has_entry(kind: str, container_name: str | None = None) -> Callable[[Obj], bool]:
    """A predicate: the record has a timeline entry of this type (and container)."""
    return lambda record: bool(entries(record, kind, container_name))
