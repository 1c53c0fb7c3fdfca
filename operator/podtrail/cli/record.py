"""Reading a PodLifecycleRecord dict, whichever version of the record format wrote it.

The record format moves (durations gained units in their names, owner, node and outcome are
also labels, the timeline's order may change): every read here accepts the old and the new
spelling, and nothing relies on a field that an older or newer operator may not write.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from podtrail.core.clock import parse_time

Raw = Mapping[str, Any]

LABEL_OWNER_KIND = "podtrail.io/owner-kind"
LABEL_OWNER_NAME = "podtrail.io/owner-name"
LABEL_NODE = "podtrail.io/node"
LABEL_OUTCOME = "podtrail.io/outcome"
POD_TEMPLATE_HASH = "pod-template-hash"

_UNIT = re.compile(r"(?<=[a-z])(Seconds|Milliseconds|Millis|Ms)$")
_MILLI = ("Milliseconds", "Millis", "Ms")


def _map(value: object) -> Raw:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def status(record: Raw) -> Raw:
    """The record's status (empty before the operator first wrote it)."""
    return _map(record.get("status"))


def metadata(record: Raw) -> Raw:
    """The record's metadata."""
    return _map(record.get("metadata"))


def name(record: Raw) -> str:
    """The record's name (the pod's name)."""
    return (
        _str(metadata(record).get("name")) or _str(_map(record.get("spec")).get("podName")) or "?"
    )


def namespace(record: Raw) -> str:
    """The record's namespace."""
    return _str(metadata(record).get("namespace")) or ""


def labels(record: Raw) -> Mapping[str, str]:
    """The record's labels: the pod's own, plus podtrail's when the operator writes them."""
    found = _map(metadata(record).get("labels"))
    return {str(key): str(value) for key, value in found.items()}


@dataclass(frozen=True, slots=True)
class Owner:
    """The pod's controller; `deployment` when it is a Deployment's ReplicaSet."""

    kind: str
    name: str
    deployment: str | None = None

    @property
    def short(self) -> str:
        """The kubectl short form, e.g. rs/web-5d9f (also a target of `kubectl podtrail`)."""
        return f"{SHORT_KINDS.get(self.kind, self.kind.lower())}/{self.name}"


SHORT_KINDS = {
    "ReplicaSet": "rs",
    "StatefulSet": "sts",
    "DaemonSet": "ds",
    "Job": "job",
    "Deployment": "deploy",
    "Node": "node",
    "CronJob": "cj",
}


def owner(record: Raw) -> Owner | None:
    """The pod's controller: status.owner, else podtrail's owner labels."""
    found = _map(status(record).get("owner"))
    kind, owner_name = _str(found.get("kind")), _str(found.get("name"))
    if kind and owner_name:
        return Owner(
            kind, owner_name, _str(found.get("deployment")) or _deployment(kind, owner_name, record)
        )
    marks = labels(record)
    kind, owner_name = marks.get(LABEL_OWNER_KIND), marks.get(LABEL_OWNER_NAME)
    if not kind or not owner_name:
        return None
    template_hash = marks.get(POD_TEMPLATE_HASH)
    if kind == "Deployment" and template_hash:
        # The label names the workload; the pod's controller is the ReplicaSet of its hash.
        return Owner("ReplicaSet", f"{owner_name}-{template_hash}", owner_name)
    return Owner(kind, owner_name, _deployment(kind, owner_name, record))


def _deployment(kind: str, owner_name: str, record: Raw) -> str | None:
    """The Deployment of a ReplicaSet named `<deployment>-<pod-template-hash>` (inferred)."""
    if kind == "Deployment":
        return owner_name
    template_hash = labels(record).get(POD_TEMPLATE_HASH)
    if kind == "ReplicaSet" and template_hash and owner_name.endswith(f"-{template_hash}"):
        return owner_name[: -len(template_hash) - 1] or None
    return None


def node(record: Raw) -> str | None:
    """The pod's node: status.nodeName, else the node label."""
    return _str(status(record).get("nodeName")) or labels(record).get(LABEL_NODE) or None


def outcome(record: Raw) -> str | None:
    """How the pod's life ended (None while it lives): status.outcome, else the label."""
    return _str(status(record).get("outcome")) or labels(record).get(LABEL_OUTCOME) or None


def phase(record: Raw) -> str | None:
    """The pod's last known phase."""
    return _str(status(record).get("phase"))


def summary(record: Raw) -> Raw:
    """The counters block (init, ready, restarts)."""
    return _map(status(record).get("summary"))


def restarts(record: Raw) -> int | None:
    """Container restarts summed over the pod's containers."""
    found = _int(summary(record).get("restarts"))
    if found is not None:
        return found
    counts = [_int(c.get("restartCount")) for c in containers(record)]
    known = [count for count in counts if count is not None]
    return sum(known) if known else None


def containers(record: Raw) -> list[Raw]:
    """Per-container summaries."""
    return [_map(item) for item in _list(status(record).get("containers")) if _map(item)]


def _time_key(key: str) -> str:
    key = key.lower()
    return key[:-2] if key.endswith("at") and len(key) > 2 else key


def times(record: Raw) -> dict[str, datetime]:
    """Key moments by lower-case name, whether or not the format spells them with `At`.

    Names: created, scheduled, initialized, ready, deletionrequested, finished, deleted.
    """
    found: dict[str, datetime] = {}
    for key, value in _map(status(record).get("times")).items():
        parsed = parse_time(value)
        if parsed is not None:
            found[_time_key(str(key))] = parsed
    return found


def _duration_key(key: str) -> tuple[str, float]:
    """`timeToSchedule`, `timeToScheduleSeconds`, `initSeconds` → (schedule, 1.0), (init, 1.0)."""
    scale = 1.0
    unit = _UNIT.search(key)
    if unit:
        scale = 0.001 if unit.group(1) in _MILLI else 1.0
        key = key[: unit.start()]
    lowered = key.lower()
    for prefix in ("timeto", "to"):
        if lowered.startswith(prefix) and len(lowered) > len(prefix):
            lowered = lowered[len(prefix) :]
            break
    return lowered, scale


def durations(record: Raw) -> dict[str, float]:
    """The record's durations in seconds by plain name: schedule, init, ready, termination."""
    found: dict[str, float] = {}
    for key, value in _map(status(record).get("durations")).items():
        number = _number(value)
        if number is not None:
            plain, scale = _duration_key(str(key))
            found[plain] = number * scale
    return found


def created(record: Raw) -> datetime | None:
    """When the pod was created: times.created, else the first entry, else the record's own."""
    found = times(record).get("created")
    if found is not None:
        return found
    entries = timeline(record)
    if entries:
        return entries[0].time
    return parse_time(metadata(record).get("creationTimestamp"))


def ended(record: Raw) -> datetime | None:
    """When the pod's life ended: the last exit once it has an outcome, else its removal."""
    found = times(record)
    if outcome(record) is not None:
        return found.get("finished") or found.get("deleted")
    return found.get("deleted")


def termination(record: Raw) -> Raw:
    """The termination block (empty when the pod was never deleted)."""
    return _map(status(record).get("termination"))


def previous_instances(record: Raw) -> list[Raw]:
    """Earlier pods with the same name, newest first."""
    return [_map(item) for item in _list(status(record).get("previousInstances")) if _map(item)]


@dataclass(frozen=True, slots=True)
class Entry:
    """One timeline entry, read tolerantly."""

    time: datetime
    type: str
    summary: str
    source: str | None
    container: str | None
    count: int
    last_time: datetime | None
    exit_code: int | None


def _entry(item: Raw) -> Entry | None:
    when = parse_time(item.get("time"))
    kind = _str(item.get("type"))
    if when is None or kind is None:
        return None
    return Entry(
        time=when,
        type=kind,
        summary=_str(item.get("summary")) or _str(item.get("message")) or kind,
        source=_str(item.get("source")),
        container=_str(item.get("container")),
        count=max(1, _int(item.get("count")) or 1),
        last_time=parse_time(item.get("lastTime")),
        exit_code=_int(item.get("exitCode")),
    )


def timeline(record: Raw) -> list[Entry]:
    """The timeline oldest first, whatever order the record keeps it in.

    Entries are sorted by time; entries of the same time keep the record's order (read oldest
    first: a record that keeps its newest entries first is turned around before sorting).
    """
    entries = [
        e for e in (_entry(_map(item)) for item in _list(status(record).get("timeline"))) if e
    ]
    if len(entries) > 1 and entries[0].time > entries[-1].time:
        entries.reverse()
    return sorted(entries, key=lambda e: e.time)


def last_activity(record: Raw) -> datetime | None:
    """The newest moment the record knows of: its times, its entries and their repeats."""
    moments = list(times(record).values())
    for item in timeline(record):
        moments.append(item.last_time or item.time)
    return max(moments) if moments else None
