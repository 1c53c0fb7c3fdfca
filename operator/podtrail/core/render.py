"""Record ↔ the PodLifecycleRecord status (JSON), bounded to the CRD schema.

``load_status`` reads whatever is stored (tolerating anything) into a Record; ``render_status``
writes a Record as a status that validates against the CRD schema. Derived fields (outcome,
summary counters, durations, the termination verdict, lastEvent) are recomputed on every
render and ignored on load, so ``render_status(load_status(s))`` is a fixed point.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from .clock import format_time, parse_time, seconds_between
from .conclude import analyse_record
from .deletion import any_running
from .facts import MAX_KEY_LENGTH, MAX_SUMMARY_LENGTH, ContainerKind, Source, clip
from .limits import DEFAULT_LIMITS, Limits
from .model import (
    ConditionRecord,
    ContainerRecord,
    Deletion,
    EndpointRecord,
    EndpointRemoval,
    Entry,
    Instance,
    OwnerRecord,
    PreStopFailure,
    ProbeFailures,
    Record,
    Removal,
    SeenEvent,
)
from .observe import RUN_ID_LENGTH

MAX_NAME = 253
MAX_REASON = 128
MAX_SHORT = 64
MAX_EVIDENCE = 2048
MAX_LAST_EVENT = 80  # a printer column: long summaries make `kubectl get plr` unreadable
MAX_INT = 2**31 - 1
_SOURCES = frozenset(str(source) for source in Source)

# --- Loading ---------------------------------------------------------------------------------


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: object, limit: int) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value[:limit] if isinstance(item, Mapping)]


def _str(value: object, limit: int = MAX_NAME) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _int(value: object, low: int = -MAX_INT, high: int = MAX_INT) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return min(max(value, low), high)


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _source(value: object) -> str:
    return value if isinstance(value, str) and value in _SOURCES else Source.OBSERVED


def _entry(raw: Mapping[str, Any]) -> Entry | None:
    key, time = _str(raw.get("key"), MAX_KEY_LENGTH), parse_time(raw.get("time"))
    etype = _str(raw.get("type"), MAX_SHORT)
    if key is None or time is None or etype is None:
        return None
    last_time = parse_time(raw.get("lastTime"))
    return Entry(
        key=key,
        time=time,
        type=etype,
        summary=_str(raw.get("summary"), MAX_SUMMARY_LENGTH) or etype,
        source=_source(raw.get("source")),
        container=_str(raw.get("container")),
        reason=_str(raw.get("reason"), MAX_REASON),
        message=_str(raw.get("message"), 1024),
        from_phase=_str(raw.get("fromPhase"), 32),
        to_phase=_str(raw.get("toPhase"), 32),
        exit_code=_int(raw.get("exitCode")),
        signal=_str(raw.get("signal"), 16),
        probe=_str(raw.get("probe"), 16),
        count=_int(raw.get("count"), 1) or 1,
        last_time=last_time if last_time is not None and last_time > time else None,
    )


@lru_cache(maxsize=8192)
def _cached_entry(items: tuple[tuple[str, type, Any], ...]) -> Entry | None:
    return _entry({name: value for name, _, value in items})


def _load_entry(raw: Mapping[str, Any]) -> Entry | None:
    """Read an entry; stored entries repeat on every step, so reading is memoised.

    The value types are part of the cache key (1, 1.0 and True hash alike).
    """
    try:
        return _cached_entry(tuple((name, type(value), value) for name, value in raw.items()))
    except TypeError:  # an unhashable value: not a stored entry of ours
        return _entry(raw)


def _container(raw: Mapping[str, Any]) -> ContainerRecord | None:
    name = _str(raw.get("name"))
    if name is None:
        return None
    kind = _str(raw.get("kind"), 16)
    return ContainerRecord(
        name=name,
        kind=kind if kind is not None and kind in set(ContainerKind) else ContainerKind.APP,
        state=_str(raw.get("state"), 16),
        reason=_str(raw.get("reason"), MAX_REASON),
        ready=_bool(raw.get("ready")) is True,
        started=_bool(raw.get("started")),
        restart_count=_int(raw.get("restartCount"), 0) or 0,
        started_at=parse_time(raw.get("startedAt")),
        finished_at=parse_time(raw.get("finishedAt")),
        last_exit_code=_int(raw.get("lastExitCode")),
        last_reason=_str(raw.get("lastReason"), MAX_REASON),
        pre_stop=_bool(raw.get("preStop")) is True,
        started_run=_str(raw.get("startedRun"), RUN_ID_LENGTH),
        finished_run=_str(raw.get("finishedRun"), RUN_ID_LENGTH),
    )


def _condition(raw: Mapping[str, Any]) -> ConditionRecord | None:
    ctype, cstatus = _str(raw.get("type"), MAX_REASON), _str(raw.get("status"), 16)
    if ctype is None or cstatus is None:
        return None
    return ConditionRecord(
        type=ctype,
        status=cstatus,
        last_transition_time=parse_time(raw.get("lastTransitionTime")),
        reason=_str(raw.get("reason"), MAX_REASON),
        message=_str(raw.get("message"), 1024),
    )


def _endpoint(raw: Mapping[str, Any]) -> EndpointRecord | None:
    service, address = _str(raw.get("service")), _str(raw.get("address"), MAX_SHORT)
    if service is None or address is None:
        return None
    return EndpointRecord(
        service=service,
        address=address,
        ready=_bool(raw.get("ready")),
        serving=_bool(raw.get("serving")),
        terminating=_bool(raw.get("terminating")),
        since=parse_time(raw.get("since")),
    )


def _removal_item(raw: Mapping[str, Any]) -> EndpointRemoval | None:
    service = _str(raw.get("service"))
    if service is None:
        return None
    return EndpointRemoval(
        service=service,
        terminating_at=parse_time(raw.get("terminatingAt")),
        removed_at=parse_time(raw.get("removedAt")),
    )


def _instance(raw: Mapping[str, Any]) -> Instance | None:
    uid = _str(raw.get("uid"), 128)
    if uid is None:
        return None
    return Instance(
        uid=uid,
        created=parse_time(raw.get("created")),
        deleted=parse_time(raw.get("deleted")),
        outcome=_str(raw.get("outcome"), MAX_SHORT),
        node_name=_str(raw.get("nodeName")),
        restarts=_int(raw.get("restarts"), 0) or 0,
    )


def _seen(raw: Mapping[str, Any]) -> SeenEvent | None:
    ident, time = _str(raw.get("id"), MAX_NAME), parse_time(raw.get("lastTime"))
    count = _int(raw.get("count"), 1)
    if ident is None or time is None or count is None:
        return None
    return SeenEvent(ident, count, time)


def _unique(items: list[Any], key: Any) -> tuple[Any, ...]:
    seen: set[Any] = set()
    kept = []
    for item in items:
        if item is None or key(item) in seen:
            continue
        seen.add(key(item))
        kept.append(item)
    return tuple(kept)


def load_status(status: Mapping[str, Any] | None, limits: Limits = DEFAULT_LIMITS) -> Record:
    """Read a stored status (tolerating anything) into a Record.

    Args:
        status: The record's ``.status`` as stored, or None.
        limits: Bounds applied while reading.

    Returns:
        The record; unknown or malformed parts are left out.
    """
    raw = _map(status)
    times = _map(raw.get("times"))
    termination = _map(raw.get("termination"))
    owner_raw = _map(raw.get("owner"))
    owner = None
    if _str(owner_raw.get("kind"), 63) and _str(owner_raw.get("name")):
        owner = OwnerRecord(
            kind=_str(owner_raw.get("kind"), 63) or "",
            name=_str(owner_raw.get("name")) or "",
            deployment=_str(owner_raw.get("deployment")),
        )
    deletion = None
    stamp = parse_time(termination.get("deletionTimestamp"))
    if stamp is not None:
        grace = _int(termination.get("gracePeriodSeconds"), 0, 10 * 366 * 24 * 3600) or 0
        deletion = Deletion(stamp, grace)
    removal_raw = _map(raw.get("removal"))
    removal_time = parse_time(removal_raw.get("time"))
    removal = None
    if removal_time is not None:
        removal = Removal(removal_time, _bool(removal_raw.get("observed")) is True)
    failures = [
        PreStopFailure(name, when)
        for item in _items(termination.get("preStop"), 64)
        if (name := _str(item.get("container"))) is not None
        and (when := parse_time(item.get("failedAt"))) is not None
    ]
    probes = _map(raw.get("probeFailures"))
    cap = limits.timeline_cap()
    entries = [_load_entry(item) for item in _items(raw.get("timeline"), 1000)]
    return Record(
        pod_uid=_str(raw.get("podUID"), 128),
        node_name=_str(raw.get("nodeName")),
        phase=_str(raw.get("phase"), 32),
        pod_reason=_str(raw.get("reason"), MAX_REASON),
        owner=owner,
        created=parse_time(times.get("created")),
        scheduled=parse_time(times.get("scheduled")),
        initialized=parse_time(times.get("initialized")),
        ready=parse_time(times.get("ready")),
        deletion=deletion,
        killing_at=parse_time(termination.get("killingAt")),
        disruption_reason=_str(termination.get("disruptionReason"), MAX_REASON),
        disruption_message=_str(termination.get("disruptionMessage"), 1024),
        pre_stop_failures=_unique(list(failures), lambda f: f)[-16:],
        removal=removal,
        containers=_unique(
            [_container(item) for item in _items(raw.get("containers"), 64)], lambda c: c.name
        )[: limits.containers_cap()],
        conditions=_unique(
            [_condition(item) for item in _items(raw.get("conditions"), 32)], lambda c: c.type
        ),
        endpoints=_unique(
            [_endpoint(item) for item in _items(raw.get("endpoints"), 64)],
            lambda e: (e.service, e.address),
        )[-limits.endpoints_cap() :],
        endpoint_removals=_unique(
            [_removal_item(item) for item in _items(termination.get("endpointRemovals"), 64)],
            lambda r: r.service,
        )[-limits.endpoints_cap() :],
        probe_failures=ProbeFailures(
            liveness=_int(probes.get("liveness"), 0) or 0,
            readiness=_int(probes.get("readiness"), 0) or 0,
            startup=_int(probes.get("startup"), 0) or 0,
        ),
        timeline=tuple(sorted(_unique(entries, lambda e: e.key), key=Entry.order))[-cap:],
        timeline_dropped=_int(raw.get("timelineDropped"), 0) or 0,
        previous=_unique(
            [_instance(item) for item in _items(raw.get("previousInstances"), 20)],
            lambda i: i.uid,
        )[: limits.previous_cap()],
        seen_events=_unique(
            [_seen(item) for item in _items(raw.get("seenEvents"), 256)], lambda s: s.id
        )[: limits.seen_events_cap()],
    )


# --- Rendering -------------------------------------------------------------------------------


def _t(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _render_entry(entry: Entry, limits: Limits) -> dict[str, Any]:
    return dict(_rendered_entry(entry, limits.message_cap()))


@lru_cache(maxsize=8192)
def _rendered_entry(entry: Entry, message_cap: int) -> tuple[tuple[str, Any], ...]:
    """An entry's JSON fields; memoised, entries being immutable and rendered on every step."""
    fields = _clean(
        {
            "time": _t(entry.time),
            "type": entry.type[:MAX_SHORT],
            "summary": clip(entry.summary, MAX_SUMMARY_LENGTH),
            "container": clip(entry.container, MAX_NAME),
            "reason": clip(entry.reason, MAX_REASON),
            "message": clip(entry.message, message_cap),
            "fromPhase": clip(entry.from_phase, 32),
            "toPhase": clip(entry.to_phase, 32),
            "exitCode": entry.exit_code,
            "signal": clip(entry.signal, 16),
            "probe": clip(entry.probe, 16),
            "count": entry.count,
            "lastTime": _t(entry.last_time),
            "source": entry.source[:16],
            "key": entry.key[:MAX_KEY_LENGTH],
        }
    )
    return tuple(fields.items())


def _render_container(c: ContainerRecord) -> dict[str, Any]:
    return _clean(
        {
            "name": c.name,
            "kind": c.kind,
            "state": c.state,
            "reason": c.reason,
            "ready": c.ready,
            "started": c.started,
            "restartCount": c.restart_count,
            "lastExitCode": c.last_exit_code,
            "lastReason": c.last_reason,
            "startedAt": _t(c.started_at),
            "finishedAt": _t(c.finished_at),
            "preStop": c.pre_stop,
            "startedRun": c.started_run,
            "finishedRun": c.finished_run,
        }
    )


def _summary(record: Record) -> dict[str, Any]:
    inits = [c for c in record.containers if c.kind != ContainerKind.APP]
    init_done = sum(
        1
        for c in inits
        if (c.kind == ContainerKind.INIT and c.state == "terminated" and c.last_exit_code == 0)
        or (c.kind == ContainerKind.SIDECAR and c.started is True)
    )
    shown = [c for c in record.containers if c.kind != ContainerKind.INIT]
    ready = sum(1 for c in shown if c.ready)
    return {
        "initDone": init_done,
        "initTotal": len(inits),
        "readyContainers": ready,
        "totalContainers": len(shown),
        "restarts": min(record.restarts(), MAX_INT),
        "init": f"{init_done}/{len(inits)}",
        "ready": f"{ready}/{len(shown)}",
    }


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


def _termination(record: Record, limits: Limits) -> dict[str, Any] | None:
    analysis = analyse_record(record, limits)
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
    pre_stop = [
        _clean(
            {
                "container": c.name,
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
    configured = {c.name for c in record.containers if c.pre_stop}
    pre_stop += [
        {"container": f.container, "configured": False, "failed": True, "failedAt": _t(f.time)}
        for f in record.pre_stop_failures
        if f.container not in configured
    ]
    block: dict[str, Any] = {
        "killingAt": _t(record.killing_at),
        "disruptionReason": record.disruption_reason,
        "disruptionMessage": clip(record.disruption_message, limits.message_cap()),
        "preStop": pre_stop[:64],
        "endpointRemovals": [
            _clean(
                {
                    "service": r.service,
                    "terminatingAt": _t(r.terminating_at),
                    "removedAt": _t(r.removed_at),
                }
            )
            for r in record.endpoint_removals
        ],
        "containers": [
            _clean(
                {
                    "name": j.name,
                    "verdict": str(j.verdict),
                    "exitCode": j.exit_code,
                    "reason": clip(j.reason, MAX_REASON),
                    "signal": j.signal,
                    "finishedAt": _t(j.finished_at),
                    "secondsAfterRequest": _bounded(j.seconds_after_request),
                    "secondsFromDeadline": _bounded(j.seconds_from_deadline),
                }
            )
            for j in analysis.judgements
        ],
        "verdict": analysis.verdict,
        "evidence": clip(analysis.evidence, MAX_EVIDENCE),
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
            }
        )
    return _clean(block)


def render_status(record: Record, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Write a Record as a PodLifecycleRecord status (valid against the CRD schema).

    Args:
        record: The record.
        limits: Bounds (message length).

    Returns:
        The complete status, JSON-serialisable.
    """
    analysis = analyse_record(record, limits)
    finished = _finished(record)
    deletion = record.deletion
    requested = deletion.requested_at if deletion else None
    deleted = record.removal.time if record.removal else None
    seen_deleted = deleted if record.removal and record.removal.observed else None
    newest = max(record.timeline, key=lambda e: (e.latest, e.key), default=None)
    owner = None
    if record.owner is not None:
        owner = _clean(
            {
                "kind": record.owner.kind,
                "name": record.owner.name,
                "deployment": record.owner.deployment,
            }
        )
    status = {
        "podUID": record.pod_uid,
        "nodeName": record.node_name,
        "phase": record.phase,
        "reason": record.pod_reason,
        "outcome": str(analysis.outcome) if analysis.outcome else None,
        "owner": owner,
        "summary": _summary(record),
        "times": _clean(
            {
                "created": _t(record.created),
                "scheduled": _t(record.scheduled),
                "initialized": _t(record.initialized),
                "ready": _t(record.ready),
                "deletionRequested": _t(requested),
                "deleted": _t(deleted),
                "finished": _t(finished),
            }
        ),
        "durations": _clean(
            {
                "timeToSchedule": _duration(record.created, record.scheduled),
                "init": _duration(record.scheduled, record.initialized),
                "timeToReady": _duration(record.created, record.ready),
                "termination": _duration(requested, seen_deleted or finished),
            }
        ),
        "containers": [_render_container(c) for c in record.containers],
        "probeFailures": {
            "liveness": record.probe_failures.liveness,
            "readiness": record.probe_failures.readiness,
            "startup": record.probe_failures.startup,
        },
        "termination": _termination(record, limits),
        "conditions": [
            _clean(
                {
                    "type": c.type,
                    "status": c.status,
                    "lastTransitionTime": _t(c.last_transition_time),
                    "reason": c.reason,
                    "message": clip(c.message, limits.message_cap()),
                }
            )
            for c in record.conditions
        ],
        "endpoints": [
            _clean(
                {
                    "service": e.service,
                    "address": e.address,
                    "ready": e.ready,
                    "serving": e.serving,
                    "terminating": e.terminating,
                    "since": _t(e.since),
                }
            )
            for e in record.endpoints
        ],
        "removal": (
            {"time": _t(record.removal.time), "observed": record.removal.observed}
            if record.removal
            else None
        ),
        "timeline": [_render_entry(e, limits) for e in record.timeline],
        "timelineDropped": record.timeline_dropped,
        "lastEvent": clip(newest.summary, MAX_LAST_EVENT) if newest else None,
        "previousInstances": [
            _clean(
                {
                    "uid": i.uid,
                    "created": _t(i.created),
                    "deleted": _t(i.deleted),
                    "outcome": i.outcome,
                    "nodeName": i.node_name,
                    "restarts": i.restarts,
                }
            )
            for i in record.previous
        ],
        "seenEvents": [
            {"id": s.id, "count": s.count, "lastTime": _t(s.last_time)} for s in record.seen_events
        ],
    }
    return _clean(status)
