"""Record → termination analysis inputs, and the record's outcome."""

from __future__ import annotations

from functools import lru_cache

from .facts import ContainerKind
from .limits import Limits
from .model import Record
from .termination import Analysis, ContainerEnd, DeletionWindow, EndInputs, analyse


def end_inputs(record: Record) -> EndInputs:
    """What the outcome depends on, read from the record."""
    window = None
    if record.deletion is not None:
        window = DeletionWindow(record.deletion.requested_at, record.deletion.grace_seconds)
    failed = {f.container for f in record.pre_stop_failures}
    ends = tuple(
        ContainerEnd(
            name=c.name,
            terminated=c.state == "terminated",
            exit_code=c.last_exit_code,
            reason=c.last_reason,
            finished_at=c.finished_at,
            pre_stop=c.pre_stop,
            pre_stop_failed=c.name in failed,
        )
        for c in record.containers
        if c.kind != ContainerKind.INIT
    )
    latest = max(
        (c for c in record.containers if c.finished_at is not None),
        key=lambda c: (c.finished_at, c.name),
        default=None,
    )
    return EndInputs(
        phase=record.phase,
        disruption_reason=record.disruption_reason,
        deletion=window,
        scheduled=record.node_name is not None,
        containers=ends,
        last_end_reason=latest.last_reason if latest else None,
        removal_observed=record.removal.observed if record.removal else None,
    )


def analyse_record(record: Record, limits: Limits) -> Analysis:
    """The record's outcome, termination verdict and per-container judgements.

    One write asks twice (the record's labels, then its status) and most steps leave the
    inputs as they were: the analysis of the same inputs is worked out once.
    """
    return _analysed(end_inputs(record), limits.kill_slack_seconds)


@lru_cache(maxsize=256)
def _analysed(inputs: EndInputs, slack_seconds: float) -> Analysis:
    return analyse(inputs, slack_seconds=slack_seconds)
