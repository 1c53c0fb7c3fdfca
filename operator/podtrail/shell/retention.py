"""Which records to delete: retention after the pod is gone, and the bounds on record counts.

Pure: the sweep gathers what it knows of each record and deletes what this module chooses.

A record becomes removable when its pod is gone, or, for a record whose pod was never seen (a
user's placeholder), from its own creation. The bounds remove removable records oldest first and
never the record of a live pod. The cluster-wide bound is shared fairly between namespaces
(max-min fair: the namespaces holding the most records give them up first), so records a user
creates in one namespace can never push out another namespace's records.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from fractions import Fraction


@dataclasses.dataclass(frozen=True, slots=True)
class RecordAge:
    """What the sweep needs to know of one record."""

    namespace: str
    name: str
    pod_gone_at: datetime | None
    """When its pod left the API; None while the pod lives (or was never seen)."""
    ttl_seconds: int | None = None
    """The record's own retention, overriding the operator's."""
    created_at: datetime | None = None
    """The record's creationTimestamp."""
    pod_seen: bool = True
    """Whether a pod was ever seen for it; False for a placeholder a user created."""

    @property
    def removable_since(self) -> datetime | None:
        """From when the record may go: its pod's removal, or a placeholder's creation."""
        if self.pod_gone_at is not None:
            return self.pod_gone_at
        return None if self.pod_seen else self.created_at


@dataclasses.dataclass(frozen=True, slots=True)
class Removal:
    """A record to delete, and why."""

    namespace: str
    name: str
    reason: str


def choose_removals(
    records: Iterable[RecordAge],
    *,
    now: datetime,
    retention_seconds: int,
    max_per_namespace: int,
    max_total: int,
) -> list[Removal]:
    """Expired records, then the oldest removable records until the bounds hold.

    The record of a live pod is never chosen, even when the bounds cannot be met without it.
    For the cluster-wide bound only the namespaces above their fair share give up records (see
    `fair_share`), down to that share and no further.
    """
    removals: list[Removal] = []
    by_namespace: dict[str, list[RecordAge]] = defaultdict(list)
    expired: list[RecordAge] = []
    for record in records:
        if _expired(record, now, retention_seconds):
            expired.append(record)
        else:
            by_namespace[record.namespace].append(record)
    removals.extend(_as_removals(_oldest_first(expired), "retention"))

    trimmed: list[RecordAge] = []
    for namespace in sorted(by_namespace):
        removable = _oldest_first(by_namespace[namespace])
        excess = len(by_namespace[namespace]) - max_per_namespace
        cut = removable[: max(0, excess)]
        trimmed.extend(cut)
        gone = {id(record) for record in cut}
        by_namespace[namespace] = [r for r in by_namespace[namespace] if id(r) not in gone]
    removals.extend(_as_removals(_oldest_first(trimmed), "namespace-bound"))

    over_share = _cluster_bound_removals(by_namespace, max_total)
    removals.extend(_as_removals(_oldest_first(over_share), "cluster-bound"))
    return removals


def fair_share(counts: Mapping[str, int], max_total: int) -> Fraction | None:
    """The max-min fair share of `max_total` between namespaces; None when all fit.

    The share s is where sum(min(count, s)) == max_total ("water-filling"): a namespace at or
    under s keeps every record; the others are brought down to s.
    """
    total = sum(counts.values())
    if total <= max_total:
        return None
    remaining = Fraction(max(0, max_total))
    ordered = sorted(counts.values())
    for index, count in enumerate(ordered):
        left = len(ordered) - index
        if count * left > remaining:
            return remaining / left
        remaining -= count
    return None  # not reached: the total exceeds max_total


def _cluster_bound_removals(
    by_namespace: Mapping[str, list[RecordAge]], max_total: int
) -> list[RecordAge]:
    """Trim the namespaces above their fair share: each to ⌈s⌉, then some to ⌊s⌋.

    With a fractional share, sum over the namespaces above it of ⌈s⌉ exceeds what is left for
    them by k; k of them (those whose next record to go is the oldest) keep ⌊s⌋ instead.
    """
    counts = {namespace: len(items) for namespace, items in by_namespace.items()}
    share = fair_share(counts, max_total)
    if share is None:
        return []
    above = sorted(namespace for namespace, count in counts.items() if count > share)
    ceiling, floor = math.ceil(share), math.floor(share)
    extra = int(ceiling * len(above) - share * len(above))  # how many go down to the floor
    chosen: list[RecordAge] = []
    next_in_line: list[RecordAge] = []
    for namespace in above:
        removable = _oldest_first(by_namespace[namespace])
        cut = max(0, counts[namespace] - ceiling)
        chosen.extend(removable[:cut])
        if ceiling > floor and len(removable) > cut:
            next_in_line.append(removable[cut])
    chosen.extend(_oldest_first(next_in_line)[:extra])
    return chosen


def _expired(record: RecordAge, now: datetime, retention_seconds: int) -> bool:
    since = record.removable_since
    ttl = retention_seconds if record.ttl_seconds is None else record.ttl_seconds
    return since is not None and now - since >= timedelta(seconds=ttl)


def _oldest_first(records: Iterable[RecordAge]) -> list[RecordAge]:
    """The removable records among these, oldest first (never a live pod's)."""
    removable: list[tuple[datetime, str, str, RecordAge]] = []
    for record in records:
        since = record.removable_since
        if since is not None:
            removable.append((since, record.namespace, record.name, record))
    removable.sort(key=lambda item: item[:3])
    return [item[3] for item in removable]


def _as_removals(records: Iterable[RecordAge], reason: str) -> list[Removal]:
    return [Removal(record.namespace, record.name, reason) for record in records]
