"""A workload's pods from their records: which belong to it, in time order, who replaced whom.

Pure: record dicts in, lines out. A replacement is inferred, never read: a pod of the same
workload created at or after another pod's deletion request (or its failure, for a pod that
ended without one), within ten minutes, is taken as its replacement; each pod replaces at most
one other, the one whose end came last before it was created.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from podtrail.cli import record as rec
from podtrail.cli.columns import Cell, cell, render
from podtrail.cli.life import gaps
from podtrail.cli.style import PLAIN, Style, outcome_role
from podtrail.cli.timefmt import gap, offset, seconds
from podtrail.core.clock import format_time, parse_time

Raw = rec.Raw

# What a user may type before the slash, and the kind it names.
KINDS = {
    "deploy": "Deployment",
    "deployment": "Deployment",
    "deployments": "Deployment",
    "sts": "StatefulSet",
    "statefulset": "StatefulSet",
    "statefulsets": "StatefulSet",
    "ds": "DaemonSet",
    "daemonset": "DaemonSet",
    "daemonsets": "DaemonSet",
    "job": "Job",
    "jobs": "Job",
    "rs": "ReplicaSet",
    "replicaset": "ReplicaSet",
    "replicasets": "ReplicaSet",
}

REPLACEMENT_WINDOW = (
    600.0  # a Job's retry waits up to 6 min; a scale-up an hour later is no replacement
)
_ENDED_ON_ITS_OWN = frozenset(
    {"Failed", "OOMKilled", "Evicted", "Preempted", "TaintManagerDeletion"}
)


@dataclass(frozen=True, slots=True)
class Workload:
    """A controller of pods, as the user named it."""

    kind: str
    name: str


def belongs(record: Raw, workload: Workload) -> bool:
    """Whether the record's pod is the workload's.

    A Deployment's pods are owned by its ReplicaSets, named `<deployment>-<pod-template-hash>`:
    they match by the owner's `deployment` field, or by the owner's name and the record's
    pod-template-hash label (records carry the pod's labels), or by podtrail's owner labels.
    """
    owner = rec.owner(record)
    if owner is None:
        return False
    if workload.kind == "Deployment":
        return owner.deployment == workload.name
    return owner.kind == workload.kind and owner.name == workload.name


@dataclass(frozen=True, slots=True)
class Pod:
    """One pod of the workload: a record, or an earlier pod of the same name it summarises."""

    name: str
    uid: str | None
    created: datetime | None
    record: Raw | None  # None: an earlier instance, known only from its successor's record
    earlier: Raw | None = None

    @property
    def label(self) -> str:
        """The pod's name; an earlier instance also shows the start of its UID."""
        if self.record is None and self.uid:
            return f"{self.name} (earlier, uid {self.uid[:8]})"
        return self.name

    @property
    def end_marker(self) -> datetime | None:
        """When a successor may have been asked for: the deletion request, else a failure."""
        if self.record is None:
            earlier = self.earlier or {}
            ending = earlier.get("termination")
            requested = parse_time(ending.get("requestedAt")) if isinstance(ending, dict) else None
            return requested or parse_time(earlier.get("deleted"))
        moments = rec.times(self.record)
        if "deletionrequested" in moments:
            return moments["deletionrequested"]
        if rec.outcome(self.record) in _ENDED_ON_ITS_OWN:
            return moments.get("finished") or moments.get("deleted")
        return None


def pods_of(records: Iterable[Raw]) -> list[Pod]:
    """The records' pods, and the earlier pods each record summarises, oldest first."""
    found: list[Pod] = []
    for record in records:
        uid = rec.status(record).get("podUID")
        found.append(
            Pod(
                rec.name(record), uid if isinstance(uid, str) else None, rec.created(record), record
            )
        )
        for earlier in rec.previous_instances(record):
            found.append(
                Pod(
                    rec.name(record),
                    str(earlier.get("uid") or "") or None,
                    parse_time(earlier.get("created")),
                    None,
                    earlier,
                )
            )
    return sorted(found, key=_order)


def _order(pod: Pod) -> tuple[bool, float, str]:
    return (pod.created is None, pod.created.timestamp() if pod.created else 0.0, pod.name)


@dataclass(frozen=True, slots=True)
class Replacement:
    """`new` replaced `old` (inferred)."""

    old: Pod
    new: Pod
    marker: datetime


def replacements(pods: Sequence[Pod], window: float = REPLACEMENT_WINDOW) -> list[Replacement]:
    """Which pod replaced which (inferred).

    A pod recreated under the same name (a StatefulSet's) replaced its earlier instance. Any
    other pod, oldest first, replaced the pod whose deletion request (or failure) came last at
    or before its creation, within `window` seconds, and that no earlier pod replaced already.

    Times are whole seconds, hence "at or before": a ReplicaSet replaces a pod within the second.
    """
    found = _recreated(pods)
    old_taken = {id(item.old) for item in found}
    new_taken = {id(item.new) for item in found}
    for new in pods:
        if new.created is None or id(new) in new_taken:
            continue
        best: tuple[datetime, Pod] | None = None
        for old in pods:
            marker = old.end_marker
            if id(old) in old_taken or old is new or marker is None or marker > new.created:
                continue
            if (new.created - marker).total_seconds() > window:
                continue
            if old.created is not None and old.created > new.created:
                continue
            if best is None or marker > best[0]:
                best = (marker, old)
        if best is not None:
            old_taken.add(id(best[1]))
            found.append(Replacement(best[1], new, best[0]))
    return sorted(found, key=lambda item: _order(item.new))


def _recreated(pods: Sequence[Pod]) -> list[Replacement]:
    """Each instance of a name that a record knows earlier instances of replaced the one before."""
    names = {pod.name for pod in pods if pod.record is None}
    found = []
    for name in sorted(names):
        chain = [pod for pod in pods if pod.name == name]  # already oldest first
        for old, new in zip(chain, chain[1:], strict=False):
            marker = old.end_marker or new.created
            if marker is not None:
                found.append(Replacement(old, new, marker))
    return found


def _pod_row(pod: Pod, base: datetime | None, show_owner: bool) -> list[Cell]:
    record = pod.record
    if record is None:
        earlier = pod.earlier or {}
        outcome = earlier.get("outcome") if isinstance(earlier.get("outcome"), str) else None
        cells = [cell(_at(base, pod.created)), cell(pod.label, "dim")]
        if show_owner:
            cells.append(cell(None))
        deleted = _at(base, parse_time(earlier.get("deleted")))
        return cells + [
            cell(earlier.get("nodeName")),
            cell(earlier.get("phase")),
            cell(outcome, outcome_role(outcome)),
            cell(earlier.get("restarts")),
            *[cell(None)] * 4,
            cell(deleted),
        ]
    return _record_row(record, pod, base, show_owner)


def _record_row(record: Raw, pod: Pod, base: datetime | None, show_owner: bool) -> list[Cell]:
    found = {label: value for label, value, _ in gaps(record)}
    outcome = rec.outcome(record)
    owner = rec.owner(record)
    cells = [cell(_at(base, pod.created)), cell(pod.label)]
    if show_owner:
        cells.append(cell(owner.name if owner else None))
    return cells + [
        cell(rec.node(record)),
        cell(rec.phase(record)),
        cell(outcome, outcome_role(outcome)),
        cell(rec.restarts(record)),
        *[
            cell(gap(found[key]) if key in found else None)
            for key in ("to schedule", "to ready", "deletion to exit", "exit to removal")
        ],
        cell(_at(base, rec.ended(record))),
    ]


def _at(base: datetime | None, when: datetime | None) -> str | None:
    span = seconds(base, when)
    return offset(span) if span is not None else None


def describe(workload: Workload, records: Sequence[Raw], style: Style = PLAIN) -> list[str]:
    """The workload's pods in time order, then the replacements."""
    pods = pods_of(records)
    live = sum(1 for r in records if rec.outcome(r) is None and "deleted" not in rec.times(r))
    base = min((p.created for p in pods if p.created), default=None)
    since = f"; T+ counts from {format_time(base)}" if base else ""
    head = (
        f"{workload.kind} {rec.namespace(records[0]) if records else ''}/{workload.name}: "
        f"{len(pods)} pods ({live} live, {len(pods) - live} ended){since}"
    )
    owners = {o.name for o in (rec.owner(r) for r in records) if o}
    show_owner = len(owners) > 1 or workload.kind == "Deployment"
    headers = ["CREATED", "POD"]
    if show_owner:
        headers.append("REPLICASET" if workload.kind == "Deployment" else "OWNER")
    headers += [
        "NODE", "PHASE", "OUTCOME", "RESTARTS",
        "TO SCHEDULE", "TO READY", "DELETION→EXIT", "EXIT→REMOVAL", "ENDED",
    ]  # fmt: skip
    rows = [_pod_row(pod, base, show_owner) for pod in pods]
    lines = [style.paint(head, "head"), "", *render(headers, rows, style)]
    lines.extend(_replacement_lines(replacements(pods), base, style))
    return lines


def _how_ended(pod: Pod) -> str:
    if pod.record is None:
        ending = (pod.earlier or {}).get("termination")
        requested = isinstance(ending, dict) and ending.get("requestedAt")
        return "deletion requested" if requested else "removal seen"
    return "deletion requested" if "deletionrequested" in rec.times(pod.record) else "ended"


def _replacement_lines(
    found: Sequence[Replacement], base: datetime | None, style: Style
) -> list[str]:
    title = (
        "Replacements (inferred: created at or after the other's deletion request,"
        " or recreated under its name):"
    )
    lines = ["", style.paint(title, "head")]
    if not found:
        return [*lines, "  (none)"]
    width = max(len(item.new.label) for item in found)
    for item in found:
        wait = seconds(item.marker, item.new.created)
        why = f"({_how_ended(item.old)} {_at(base, item.marker)}, "
        why += f"created {_at(base, item.new.created)}"
        why += f", +{gap(wait)})" if wait is not None and wait > 0 else ")"
        lines.append(
            f"  {item.new.label.ljust(width)}   replaced   {item.old.label}   "
            + style.paint(why, "dim")
        )
    return lines
