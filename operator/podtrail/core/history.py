"""What a record keeps of an earlier pod of the same name: a bounded summary of its life.

When a pod is recreated under the same name (a StatefulSet's, a bare pod deleted and created
again), the record starts over for the new pod and keeps, for the earlier one, its identity and
outcome, its last notable timeline entries and its termination block cut down to the verdict
and its evidence. Every part is bounded, so the record's size bound holds (see size.py).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from ._access import MAX_INT
from .conclude import analyse_record
from .deletion import any_running
from .facts import Importance, importance
from .limits import Limits
from .model import EndSummary, Instance, Moment, Record, Removal
from .order import STAGES, Stage
from .termination import Analysis, Outcome

LAST_MOMENTS = 3
"""Timeline entries kept of an earlier instance: its last notable ones."""
MOMENT_SUMMARY = 120
"""Characters kept of each of those entries' summaries."""
END_EVIDENCE = 160
"""Characters kept of an earlier instance's termination evidence."""


def short(text: str | None, limit: int) -> str | None:
    """Text cut to ``limit`` characters, a cut one ending with "…" (for short fields)."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def _moments(record: Record) -> tuple[Moment, ...]:
    """The last notable entries (removal entries left out: ``deleted`` tells the removal)."""
    notable = [
        entry
        for entry in record.timeline
        if importance(entry.type) >= Importance.NOTABLE
        and STAGES.get(entry.type) is not Stage.REMOVAL
    ]
    return tuple(
        Moment(entry.time, entry.type, short(entry.summary, MOMENT_SUMMARY) or entry.type)
        for entry in notable[-LAST_MOMENTS:]
    )


def end_summary(record: Record, analysis: Analysis) -> EndSummary | None:
    """The termination block of an instance, cut down; None when it had none."""
    deletion = record.deletion
    if deletion is None and record.disruption_reason is None and record.killing_at is None:
        return None
    return EndSummary(
        requested_at=deletion.requested_at if deletion else None,
        grace_seconds=deletion.grace_seconds if deletion else None,
        forced=(
            deletion.grace_seconds == 0 and any_running(c.state for c in record.containers)
            if deletion
            else None
        ),
        killing_at=record.killing_at,
        disruption_reason=record.disruption_reason,
        verdict=analysis.verdict,
        evidence=short(analysis.evidence, END_EVIDENCE),
    )


def summarise(record: Record, limits: Limits) -> Instance:
    """The summary of the record's current pod, as an earlier instance (the pod is gone)."""
    assert record.pod_uid is not None
    ended = record
    if ended.removal is None:
        ended = replace(ended, removal=Removal(time=datetime.min, observed=False))
    analysis = analyse_record(ended, limits)
    outcome = analysis.outcome or Outcome.DELETED_UNOBSERVED
    return Instance(
        uid=record.pod_uid,
        created=record.created,
        deleted=record.removal.time if record.removal else None,
        outcome=str(outcome),
        node_name=record.node_name,
        restarts=record.restarts(),
        phase=record.phase,
        entries=min(len(record.timeline) + record.timeline_dropped, MAX_INT),
        last=_moments(record),
        termination=end_summary(ended, analysis),
    )
