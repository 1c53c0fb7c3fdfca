"""`kubectl podtrail ls`: records as a table, filtered by outcome, node and recent activity.

Pure: record dicts and the current time in, lines out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from podtrail.cli import record as rec
from podtrail.cli.columns import Cell, cell, render
from podtrail.cli.style import PLAIN, Style, outcome_role
from podtrail.cli.timefmt import age

Raw = rec.Raw

LIVE = "live"  # --outcome live: pods whose life has not ended


@dataclass(frozen=True, slots=True)
class Filters:
    """What `ls` keeps.

    Any of `outcomes` (case-insensitive; "live": no outcome yet), pods on `node`, records with
    anything at or after `since`.
    """

    outcomes: frozenset[str] = field(default_factory=frozenset)
    node: str | None = None
    since: datetime | None = None


def keep(record: Raw, filters: Filters) -> bool:
    """Whether a record passes the filters."""
    if filters.outcomes:
        outcome = rec.outcome(record)
        wanted = (outcome or LIVE).lower()
        if wanted not in filters.outcomes:
            return False
    if filters.node is not None and rec.node(record) != filters.node:
        return False
    if filters.since is not None:
        last = rec.last_activity(record)
        if last is None or last < filters.since:
            return False
    return True


def select(records: Iterable[Raw], filters: Filters) -> list[Raw]:
    """The records that pass, by namespace then pod creation (oldest first), then name."""
    kept = [r for r in records if keep(r, filters)]
    return sorted(kept, key=_order)


def _order(record: Raw) -> tuple[str, bool, float, str]:
    created = rec.created(record)
    return (
        rec.namespace(record),
        created is None,
        created.timestamp() if created else 0.0,
        rec.name(record),
    )


def _ago(now: datetime, when: datetime | None) -> str | None:
    return age((now - when).total_seconds()) if when is not None else None


def row(record: Raw, now: datetime, all_namespaces: bool) -> list[Cell]:
    """One record's cells."""
    owner = rec.owner(record)
    outcome = rec.outcome(record)
    restarts = rec.restarts(record)
    cells = [cell(rec.namespace(record))] if all_namespaces else []
    return cells + [
        cell(rec.name(record)),
        cell(owner.short if owner else None),
        cell(rec.node(record)),
        cell(rec.phase(record)),
        cell(outcome, outcome_role(outcome)),
        cell(restarts, "warn" if restarts else None),
        cell(_ago(now, rec.created(record))),
        cell(_ago(now, rec.ended(record))),
    ]


def describe(
    records: Sequence[Raw], now: datetime, *, all_namespaces: bool, style: Style = PLAIN
) -> list[str]:
    """The table, times as ages (kubectl style).

    Columns: NAMESPACE (with -A), NAME, OWNER, NODE, PHASE, OUTCOME, RESTARTS, CREATED, ENDED.
    """
    headers = ["NAME", "OWNER", "NODE", "PHASE", "OUTCOME", "RESTARTS", "CREATED", "ENDED"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    return render(headers, [row(r, now, all_namespaces) for r in records], style)
