"""Which records to delete: retention after the pod is gone, and the bounds on record counts."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta


@dataclasses.dataclass(frozen=True, slots=True)
class RecordAge:
    """What the sweep needs to know of one record."""

    namespace: str
    name: str
    pod_gone_at: datetime | None
    """When its pod left the API; None while the pod lives (or was never seen)."""
    ttl_seconds: int | None = None
    """The record's own retention, overriding the operator's."""


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
    """Expired records, then the oldest records of gone pods until the bounds hold.

    The record of a live pod is never chosen, even when the bounds cannot be met without it.
    """
    removals: list[Removal] = []
    kept: list[RecordAge] = []
    for record in records:
        ttl = retention_seconds if record.ttl_seconds is None else record.ttl_seconds
        if record.pod_gone_at is not None and now - record.pod_gone_at >= timedelta(seconds=ttl):
            removals.append(Removal(record.namespace, record.name, "retention"))
        else:
            kept.append(record)

    by_namespace: dict[str, list[RecordAge]] = defaultdict(list)
    for record in kept:
        by_namespace[record.namespace].append(record)
    survivors: list[RecordAge] = []
    for namespace_records in by_namespace.values():
        excess = len(namespace_records) - max_per_namespace
        for record in _oldest_gone_first(namespace_records):
            if excess > 0 and record.pod_gone_at is not None:
                removals.append(Removal(record.namespace, record.name, "namespace-bound"))
                excess -= 1
            else:
                survivors.append(record)

    excess = len(survivors) - max_total
    for record in _oldest_gone_first(survivors):
        if excess <= 0:
            break
        if record.pod_gone_at is not None:
            removals.append(Removal(record.namespace, record.name, "cluster-bound"))
            excess -= 1
    return removals


def _oldest_gone_first(records: list[RecordAge]) -> list[RecordAge]:
    gone = sorted(
        (r for r in records if r.pod_gone_at is not None),
        key=lambda r: (r.pod_gone_at, r.namespace, r.name),
    )
    return gone + [r for r in records if r.pod_gone_at is None]
