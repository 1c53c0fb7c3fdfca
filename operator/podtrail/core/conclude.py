"""Record → termination analysis inputs, and the record's outcome."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from .clock import seconds_between
from .facts import ContainerKind, FactType
from .limits import Limits
from .model import Deletion, Record
from .termination import (
    EARLY_TOLERANCE_SECONDS,
    Analysis,
    ContainerEnd,
    DeletionWindow,
    EndInputs,
    WindowSource,
    analyse,
)


def deletion_window(deletion: Deletion | None) -> DeletionWindow | None:
    """The window a deletion's metadata gives (no request to judge by when seen at removal)."""
    if deletion is None:
        return None
    source = WindowSource.REMOVAL if deletion.at_removal else WindowSource.REQUEST
    return DeletionWindow(deletion.requested_at, deletion.grace_seconds, source)


def stopping_began(record: Record) -> datetime | None:
    """When the kubelet began stopping the pod's app containers for a request not seen.

    Only for a deletion first seen at the pod's removal: the first Killing Event ("Stopping
    container", not a probe's restart) for an app container that ended after it. Not for a pod
    past its activeDeadlineSeconds (the kubelet stops it without a request), nor for sidecars,
    which the kubelet stops once the app containers have finished on their own.
    """
    if record.deletion is None or not record.deletion.at_removal:
        return None
    if record.pod_reason == "DeadlineExceeded":
        return None
    ended = {
        c.name: c.finished_at
        for c in record.containers
        if c.kind == ContainerKind.APP and c.finished_at is not None
    }
    stopping = [
        e.time
        for e in record.timeline
        if e.type == FactType.KILLING_STARTED
        and e.container in ended
        and (seconds_between(e.time, ended[e.container]) or 0.0) >= -EARLY_TOLERANCE_SECONDS
    ]
    return min(stopping, default=None)


def end_inputs(record: Record) -> EndInputs:
    """What the outcome depends on, read from the record."""
    window = deletion_window(record.deletion)
    began = stopping_began(record)
    if began is not None:
        window = DeletionWindow(began, 0, WindowSource.KILLING)
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
