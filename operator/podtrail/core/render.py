"""A Record written as its PodLifecycleRecord status (JSON), bounded to the CRD schema.

``render_status`` writes a Record as a status that validates against the CRD schema, every
string and list cut to its cap. Derived fields (outcome, summary counters, durations, the
termination verdict, lastEvent) are recomputed on every render and ignored when a status is
read back (load.py), so ``render_status(load_status(s))`` is a fixed point.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from ._access import (
    MAX_ADDRESS,
    MAX_CONDITION_TYPE,
    MAX_CONDITIONS,
    MAX_FLAG,
    MAX_INT,
    MAX_KIND,
    MAX_LABEL,
    MAX_NAME,
    MAX_PHASE,
    MAX_PRE_STOP,
    MAX_REASON,
    MAX_SHORT,
    MAX_UID,
    RUN_ID_LENGTH,
    as_word,
    clean_text,
)
from .clock import format_time, seconds_between
from .conclude import analyse_record
from .deletion import any_running
from .facts import (
    MAX_EVENT_ID,
    MAX_KEY_LENGTH,
    MAX_SUMMARY_LENGTH,
    ContainerKind,
    FactType,
    Importance,
    clip,
    importance,
    kept_message,
    known_source,
    plain_id,
)
from .history import END_EVIDENCE, LAST_MOMENTS, MOMENT_SUMMARY, short
from .labels import MAX_MARKS, workload
from .limits import DEFAULT_LIMITS, Limits
from .model import (
    ContainerRecord,
    EndSummary,
    Entry,
    Instance,
    Record,
)
from .termination import Analysis

# Every string and list of the status has a cap, here or in _access.py (size.py bounds the
# record from them).
MAX_EVIDENCE = 2048
MAX_LAST_EVENT = 64  # a printer column: long summaries make `kubectl get plr` unreadable
MAX_OWNER = MAX_KIND + 1 + MAX_NAME  # kind/name, a printer column
LAST = " (last)"  # an ended record's phase and readiness: the pod's last known ones
# Entries a reader of the LAST EVENT column does not want: the ENDED column tells the removal,
# and the sandbox is a step of the start that Kubernetes often dates after the containers'.
QUIET = frozenset({FactType.POD_DELETED, FactType.SANDBOX_READY})


def _t(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _cut(text: str | None, limit: int) -> str | None:
    """Text clipped to its cap and safe to encode, whatever the record was built from."""
    clipped = clip(text, limit)
    return clean_text(clipped) if clipped is not None else None


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _render_entry(entry: Entry, limits: Limits) -> dict[str, Any]:
    return dict(_rendered_entry(entry, limits))


@lru_cache(maxsize=8192)
def _rendered_entry(entry: Entry, limits: Limits) -> tuple[tuple[str, Any], ...]:
    """An entry's JSON fields; memoised, entries being immutable and rendered on every step.

    The key is bookkeeping: it goes to ``tracking.timelineKeys``; a count of 1 is left out.
    """
    fields = _clean(
        {
            "time": _t(entry.time),
            "type": as_word(entry.type) or "EventReported",
            "summary": _cut(entry.summary, MAX_SUMMARY_LENGTH),
            "container": _cut(entry.container, MAX_LABEL),
            "reason": _cut(entry.reason, MAX_REASON),
            "message": kept_message(entry.message, limits),
            "fromPhase": _cut(entry.from_phase, MAX_PHASE),
            "toPhase": _cut(entry.to_phase, MAX_PHASE),
            "exitCode": entry.exit_code,
            "signal": as_word(entry.signal, MAX_FLAG),
            "probe": as_word(entry.probe, MAX_FLAG),
            "count": entry.count if entry.count != 1 else None,
            "lastTime": _t(entry.last_time),
            "source": known_source(entry.source),
        }
    )
    return tuple(fields.items())


def _render_container(c: ContainerRecord) -> dict[str, Any]:
    return _clean(
        {
            "name": _cut(c.name, MAX_LABEL),
            "kind": as_word(c.kind, MAX_FLAG) or ContainerKind.APP,
            "state": as_word(c.state, MAX_FLAG),
            "reason": _cut(c.reason, MAX_REASON),
            "ready": c.ready,
            "started": c.started,
            "restartCount": c.restart_count,
            "lastExitCode": c.last_exit_code,
            "lastReason": _cut(c.last_reason, MAX_REASON),
            "startedAt": _t(c.started_at),
            "finishedAt": _t(c.finished_at),
            "preStop": c.pre_stop,
            "startedRun": _cut(c.started_run, RUN_ID_LENGTH),
            "finishedRun": _cut(c.finished_run, RUN_ID_LENGTH),
        }
    )


def _init_done(record: Record, inits: list[ContainerRecord]) -> int:
    """Init containers done: all once the pod is initialized.

    Before that, the init containers that completed (exit 0) and the sidecars that started.
    """
    initialized = record.condition("Initialized")
    if initialized is not None and initialized.status == "True":
        return len(inits)
    return sum(
        1
        for c in inits
        if (c.kind == ContainerKind.INIT and c.state == "terminated" and c.last_exit_code == 0)
        or (c.kind == ContainerKind.SIDECAR and _started(c))
    )


def _started(c: ContainerRecord) -> bool:
    """Whether a sidecar started: the kubelet's started flag (its startup probe passed)."""
    return c.started is True or (c.started is None and c.state == "running")


def _summary(record: Record) -> dict[str, Any]:
    """Counters and texts for the printer columns.

    An ended record's phase and readiness are its pod's last known ones, and say so.
    """
    inits = [c for c in record.containers if c.kind != ContainerKind.APP]
    init_done = _init_done(record, inits)
    shown = [c for c in record.containers if c.kind != ContainerKind.INIT]
    ready = sum(1 for c in shown if c.ready)
    last = LAST if record.removal is not None else ""
    owner = workload(record)
    phase = _cut(record.phase, MAX_PHASE)
    return _clean(
        {
            "initDone": init_done,
            "initTotal": len(inits),
            "readyContainers": ready,
            "totalContainers": len(shown),
            "restarts": min(record.restarts(), MAX_INT),
            "init": f"{init_done}/{len(inits)}",
            "ready": f"{ready}/{len(shown)}{last}",
            "phase": f"{phase}{last}" if phase else None,
            "owner": _cut(f"{owner[0]}/{owner[1]}", MAX_OWNER) if owner else None,
        }
    )


def _finished(record: Record) -> datetime | None:
    apps = [c for c in record.containers if c.kind != ContainerKind.INIT]
    ended = record.phase in ("Succeeded", "Failed") or (
        bool(apps) and all(c.state == "terminated" for c in apps)
    )
    if not ended:
        return None
    return max((c.finished_at for c in apps if c.finished_at is not None), default=None)


def _bounded(seconds: float | None) -> float | None:
    return seconds if seconds is not None and -1e9 < seconds < 1e9 else None


def _duration(start: datetime | None, end: datetime | None) -> float | None:
    value = seconds_between(start, end)
    return value if value is not None and 0 <= value < 1e9 else None


def _pre_stop(record: Record) -> list[dict[str, Any]]:
    """PreStop hooks: every container that has one, and every hook failure reported."""
    configured = {c.name for c in record.containers if c.pre_stop}
    hooks = [
        _clean(
            {
                "container": _cut(c.name, MAX_LABEL),
                "configured": True,
                "failed": any(f.container == c.name for f in record.pre_stop_failures),
                "failedAt": _t(
                    min(
                        (f.time for f in record.pre_stop_failures if f.container == c.name),
                        default=None,
                    )
                ),
            }
        )
        for c in record.containers
        if c.pre_stop
    ]
    hooks += [
        {
            "container": _cut(f.container, MAX_LABEL),
            "configured": False,
            "failed": True,
            "failedAt": _t(f.time),
        }
        for f in record.pre_stop_failures
        if f.container not in configured
    ]
    return hooks[:MAX_PRE_STOP]


def _judgements(analysis: Analysis) -> list[dict[str, Any]]:
    return [
        _clean(
            {
                "name": _cut(j.name, MAX_LABEL),
                "verdict": str(j.verdict),
                "exitCode": j.exit_code,
                "reason": _cut(j.reason, MAX_REASON),
                "signal": j.signal,
                "finishedAt": _t(j.finished_at),
                "secondsAfterRequest": _bounded(j.seconds_after_request),
                "secondsFromDeadline": _bounded(j.seconds_from_deadline),
            }
        )
        for j in analysis.judgements
    ]


def _termination(record: Record, analysis: Analysis, limits: Limits) -> dict[str, Any] | None:
    deletion = record.deletion
    if not (
        deletion
        or record.disruption_reason
        or record.killing_at
        or record.pre_stop_failures
        or record.endpoint_removals
        or record.removal
    ):
        return None
    block: dict[str, Any] = {
        "killingAt": _t(record.killing_at),
        "disruptionReason": _cut(record.disruption_reason, MAX_REASON),
        "disruptionMessage": kept_message(record.disruption_message, limits),
        "preStop": _pre_stop(record),
        "endpointRemovals": [
            _clean(
                {
                    "service": _cut(r.service, MAX_LABEL),
                    "terminatingAt": _t(r.terminating_at),
                    "removedAt": _t(r.removed_at),
                }
            )
            for r in record.endpoint_removals[-limits.endpoints_cap() :]
        ],
        "containers": _judgements(analysis),
        "verdict": analysis.verdict,
        "evidence": _cut(analysis.evidence, MAX_EVIDENCE),
    }
    if deletion is not None:
        block.update(
            {
                "requestedAt": _t(deletion.requested_at),
                "deletionTimestamp": _t(deletion.timestamp),
                "gracePeriodSeconds": deletion.grace_seconds,
                "deadline": _t(deletion.timestamp),
                "forced": deletion.grace_seconds == 0
                and any_running(c.state for c in record.containers),
                "seenAtRemoval": deletion.at_removal or None,
            }
        )
    return _clean(block)


def _times(record: Record, finished: datetime | None) -> dict[str, Any]:
    requested = record.deletion.requested_at if record.deletion else None
    return _clean(
        {
            "created": _t(record.created),
            "scheduled": _t(record.scheduled),
            "initialized": _t(record.initialized),
            "ready": _t(record.ready),
            "deletionRequested": _t(requested),
            "deleted": _t(record.removal.time if record.removal else None),
            "finished": _t(finished),
        }
    )


def _durations(record: Record, finished: datetime | None) -> dict[str, Any]:
    requested = record.deletion.requested_at if record.deletion else None
    removal = record.removal
    seen_deleted = removal.time if removal and removal.observed else None
    return _clean(
        {
            "timeToScheduleSeconds": _duration(record.created, record.scheduled),
            "initSeconds": _duration(record.scheduled, record.initialized),
            "timeToReadySeconds": _duration(record.created, record.ready),
            "terminationSeconds": _duration(requested, seen_deleted or finished),
        }
    )


def _owner(record: Record) -> dict[str, Any] | None:
    if record.owner is None:
        return None
    return _clean(
        {
            "kind": _cut(record.owner.kind, MAX_KIND),
            "name": _cut(record.owner.name, MAX_NAME),
            "deployment": _cut(record.owner.deployment, MAX_NAME),
        }
    )


def _conditions(record: Record, limits: Limits) -> list[dict[str, Any]]:
    return [
        _clean(
            {
                "type": _cut(c.type, MAX_CONDITION_TYPE),
                "status": _cut(c.status, MAX_FLAG),
                "lastTransitionTime": _t(c.last_transition_time),
                "reason": _cut(c.reason, MAX_REASON),
                "message": kept_message(c.message, limits),
            }
        )
        for c in record.conditions[:MAX_CONDITIONS]
    ]


def _endpoints(record: Record, limits: Limits) -> list[dict[str, Any]]:
    return [
        _clean(
            {
                "service": _cut(e.service, MAX_LABEL),
                "address": _cut(e.address, MAX_ADDRESS),
                "ready": e.ready,
                "serving": e.serving,
                "terminating": e.terminating,
                "since": _t(e.since),
            }
        )
        for e in record.endpoints[-limits.endpoints_cap() :]
    ]


def _render_end(end: EndSummary | None) -> dict[str, Any] | None:
    if end is None:
        return None
    return _clean(
        {
            "requestedAt": _t(end.requested_at),
            "gracePeriodSeconds": end.grace_seconds,
            "forced": end.forced,
            "killingAt": _t(end.killing_at),
            "disruptionReason": _cut(end.disruption_reason, MAX_REASON),
            "verdict": as_word(end.verdict, MAX_SHORT),
            "evidence": _cut(end.evidence, END_EVIDENCE),
        }
    )


def _render_instance(i: Instance) -> dict[str, Any]:
    return _clean(
        {
            "uid": _cut(i.uid, MAX_UID),
            "created": _t(i.created),
            "deleted": _t(i.deleted),
            "outcome": _cut(i.outcome, MAX_SHORT),
            "phase": _cut(i.phase, MAX_PHASE),
            "nodeName": _cut(i.node_name, MAX_NAME),
            "restarts": i.restarts,
            "timelineEntries": i.entries,
            "lastEntries": [
                {
                    "time": _t(m.time),
                    "type": as_word(m.type) or "EventReported",
                    "summary": _cut(m.summary, MOMENT_SUMMARY),
                }
                for m in i.last[-LAST_MOMENTS:]
            ],
            "termination": _render_end(i.termination),
        }
    )


def _tracking(record: Record, timeline: tuple[Entry, ...], limits: Limits) -> dict[str, Any]:
    """What the operator keeps to stay idempotent: not for reading, so it comes last."""
    tracking: dict[str, Any] = {
        "timelineKeys": [plain_id(e.key, MAX_KEY_LENGTH) for e in timeline],
        "events": [
            f"{plain_id(s.id, MAX_EVENT_ID)} {s.count} {format_time(s.last_time)}"
            for s in record.seen_events[: limits.seen_events_cap()]
        ],
    }
    if record.label_marks is not None:
        tracking["labels"] = list(record.label_marks[:MAX_MARKS])
    return tracking


def _last_event(timeline: tuple[Entry, ...]) -> str | None:
    """The newest notable entry, short: what a reader of ``kubectl get plr -o wide`` wants.

    Details (conditions, endpoint changes, waiting, readiness) and the removal (the ENDED
    column tells it) are left out; without a notable entry, the newest entry.
    """
    newest = None
    for at, entry in enumerate(timeline):
        wanted = importance(entry.type) >= Importance.NOTABLE and entry.type not in QUIET
        if wanted and (newest is None or entry.latest >= newest[0]):
            newest = (entry.latest, at, entry)
    if newest is None and timeline:
        newest = (timeline[-1].latest, 0, timeline[-1])
    return _cut(short(newest[2].summary, MAX_LAST_EVENT), MAX_LAST_EVENT) if newest else None


def render_status(record: Record, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Write a Record as a PodLifecycleRecord status (valid against the CRD schema).

    Every string and list is cut to its cap here, whatever the record holds, so the status
    stays within ``size.record_size_bound(limits)``.

    Args:
        record: The record.
        limits: Bounds (message length and policy, list sizes).

    Returns:
        The complete status, JSON-serialisable.
    """
    analysis = analyse_record(record, limits)
    finished = _finished(record)
    timeline = record.timeline[-limits.timeline_cap() :]
    status = {
        "podUID": _cut(record.pod_uid, MAX_UID),
        "nodeName": _cut(record.node_name, MAX_NAME),
        "phase": _cut(record.phase, MAX_PHASE),
        "reason": _cut(record.pod_reason, MAX_REASON),
        "outcome": str(analysis.outcome) if analysis.outcome else None,
        "owner": _owner(record),
        "summary": _summary(record),
        "times": _times(record, finished),
        "durations": _durations(record, finished),
        "containers": [_render_container(c) for c in record.containers[: limits.containers_cap()]],
        "probeFailures": {
            "liveness": record.probe_failures.liveness,
            "readiness": record.probe_failures.readiness,
            "startup": record.probe_failures.startup,
        },
        "termination": _termination(record, analysis, limits),
        "conditions": _conditions(record, limits),
        "endpoints": _endpoints(record, limits),
        "removal": (
            {"time": _t(record.removal.time), "observed": record.removal.observed}
            if record.removal
            else None
        ),
        "timeline": [_render_entry(e, limits) for e in timeline],
        "timelineDropped": record.timeline_dropped,
        "lastEvent": _last_event(timeline),
        "previousInstances": [
            _render_instance(i) for i in record.previous[: limits.previous_cap()]
        ],
        "tracking": _tracking(record, timeline, limits),
    }
    return _clean(status)
