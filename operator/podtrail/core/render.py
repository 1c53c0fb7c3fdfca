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

from ._access import (
    MAX_ADDRESS,
    MAX_CONDITION_TYPE,
    MAX_CONDITIONS,
    MAX_CONTAINERS,
    MAX_FLAG,
    MAX_GRACE,
    MAX_INT,
    MAX_KIND,
    MAX_LABEL,
    MAX_NAME,
    MAX_PHASE,
    MAX_REASON,
    MAX_SHORT,
    MAX_UID,
    RUN_ID_LENGTH,
    as_bool,
    as_int,
    as_items,
    as_map,
    as_str,
    as_word,
    clean_text,
)
from .clock import format_time, parse_time, seconds_between
from .conclude import analyse_record
from .deletion import any_running
from .facts import (
    MAX_EVENT_ID,
    MAX_KEY_LENGTH,
    MAX_SUMMARY_LENGTH,
    ContainerKind,
    FactType,
    Importance,
    Source,
    clip,
    importance,
    kept_message,
    make_key,
    plain_id,
)
from .history import END_EVIDENCE, LAST_MOMENTS, MOMENT_SUMMARY, short
from .labels import MAX_MARKS, clean_marks, workload
from .limits import DEFAULT_LIMITS, Limits
from .model import (
    ConditionRecord,
    ContainerRecord,
    Deletion,
    EndpointRecord,
    EndpointRemoval,
    EndSummary,
    Entry,
    Instance,
    Moment,
    OwnerRecord,
    PreStopFailure,
    ProbeFailures,
    Record,
    Removal,
    SeenEvent,
)
from .order import causal_order
from .termination import Analysis

# Every string and list of the status has a cap, here or in _access.py (size.py bounds the
# record from them).
MAX_EVIDENCE = 2048
MAX_LAST_EVENT = 64  # a printer column: long summaries make `kubectl get plr` unreadable
MAX_OWNER = MAX_KIND + 1 + MAX_NAME  # kind/name, a printer column
LAST = " (last)"  # an ended record's phase and readiness: the pod's last known ones
MAX_LEDGER_ITEM = MAX_EVENT_ID + 1 + 11 + 1 + 40  # "<id> <count> <time>"
# Entries a reader of the LAST EVENT column does not want: the ENDED column tells the removal,
# and the sandbox is a step of the start that Kubernetes often dates after the containers'.
QUIET = frozenset({FactType.POD_DELETED, FactType.SANDBOX_READY})
MAX_PRE_STOP = 64
_SOURCES = frozenset(str(source) for source in Source)

# --- Loading ---------------------------------------------------------------------------------


def _exit_code(value: object) -> int | None:
    """An exit code as stored statuses have always been read: from -MAX_INT (not int32's min)."""
    return as_int(value, -MAX_INT)


def _source(value: object) -> str:
    return value if isinstance(value, str) and value in _SOURCES else Source.OBSERVED


def _entry(raw: Mapping[str, Any], stored_key: object) -> Entry | None:
    time, etype = parse_time(raw.get("time")), as_word(raw.get("type"))
    if time is None or etype is None:
        return None
    key = as_str(stored_key, 1024) or as_str(raw.get("key"), 1024)  # before 0.2: in the entry
    if key is None:  # a key lost: a stable stand-in, so the entry is kept
        key = make_key("untracked", etype, time, raw.get("container"), raw.get("summary"))
    last_time = parse_time(raw.get("lastTime"))
    return Entry(
        key=plain_id(key, MAX_KEY_LENGTH),
        time=time,
        type=etype,
        summary=as_str(raw.get("summary"), MAX_SUMMARY_LENGTH) or etype,
        source=_source(raw.get("source")),
        container=as_str(raw.get("container"), MAX_LABEL),
        reason=as_str(raw.get("reason"), MAX_REASON),
        message=as_str(raw.get("message"), 1024),
        from_phase=as_str(raw.get("fromPhase"), MAX_PHASE),
        to_phase=as_str(raw.get("toPhase"), MAX_PHASE),
        exit_code=_exit_code(raw.get("exitCode")),
        signal=as_word(raw.get("signal"), MAX_FLAG),
        probe=as_word(raw.get("probe"), MAX_FLAG),
        count=as_int(raw.get("count"), 1) or 1,
        last_time=last_time if last_time is not None and last_time > time else None,
    )


@lru_cache(maxsize=8192)
def _cached_entry(items: tuple[tuple[str, type, Any], ...], key: object) -> Entry | None:
    return _entry({name: value for name, _, value in items}, key)


def _load_entry(raw: object, key: object) -> Entry | None:
    """Read an entry; stored entries repeat on every step, so reading is memoised.

    The value types are part of the cache key (1, 1.0 and True hash alike).
    """
    if not isinstance(raw, Mapping):
        return None
    if not isinstance(key, str):
        key = None
    try:
        return _cached_entry(tuple((name, type(value), value) for name, value in raw.items()), key)
    except TypeError:  # an unhashable value: not a stored entry of ours
        return _entry(raw, key)


def _timeline(raw: Mapping[str, Any], tracking: Mapping[str, Any]) -> list[Entry | None]:
    """The stored entries, each with its key from ``tracking.timelineKeys`` (same order)."""
    items = raw.get("timeline")
    if not isinstance(items, list):
        return []
    keys = tracking.get("timelineKeys")
    if not isinstance(keys, list) or len(keys) != len(items):
        keys = [None] * len(items)
    return [_load_entry(item, key) for item, key in zip(items[:1000], keys, strict=False)]


def _container(raw: Mapping[str, Any]) -> ContainerRecord | None:
    name = as_str(raw.get("name"), MAX_LABEL)
    if name is None:
        return None
    kind = as_str(raw.get("kind"), MAX_FLAG)
    return ContainerRecord(
        name=name,
        kind=kind if kind is not None and kind in set(ContainerKind) else ContainerKind.APP,
        state=as_word(raw.get("state"), MAX_FLAG),
        reason=as_str(raw.get("reason"), MAX_REASON),
        ready=as_bool(raw.get("ready")) is True,
        started=as_bool(raw.get("started")),
        restart_count=as_int(raw.get("restartCount"), 0) or 0,
        started_at=parse_time(raw.get("startedAt")),
        finished_at=parse_time(raw.get("finishedAt")),
        last_exit_code=_exit_code(raw.get("lastExitCode")),
        last_reason=as_str(raw.get("lastReason"), MAX_REASON),
        pre_stop=as_bool(raw.get("preStop")) is True,
        started_run=as_str(raw.get("startedRun"), RUN_ID_LENGTH),
        finished_run=as_str(raw.get("finishedRun"), RUN_ID_LENGTH),
    )


def _condition(raw: Mapping[str, Any]) -> ConditionRecord | None:
    ctype = as_str(raw.get("type"), MAX_CONDITION_TYPE)
    cstatus = as_str(raw.get("status"), MAX_FLAG)
    if ctype is None or cstatus is None:
        return None
    return ConditionRecord(
        type=ctype,
        status=cstatus,
        last_transition_time=parse_time(raw.get("lastTransitionTime")),
        reason=as_str(raw.get("reason"), MAX_REASON),
        message=as_str(raw.get("message"), 1024),
    )


def _endpoint(raw: Mapping[str, Any]) -> EndpointRecord | None:
    service, address = (
        as_str(raw.get("service"), MAX_LABEL),
        as_str(raw.get("address"), MAX_ADDRESS),
    )
    if service is None or address is None:
        return None
    return EndpointRecord(
        service=service,
        address=address,
        ready=as_bool(raw.get("ready")),
        serving=as_bool(raw.get("serving")),
        terminating=as_bool(raw.get("terminating")),
        since=parse_time(raw.get("since")),
    )


def _removal_item(raw: Mapping[str, Any]) -> EndpointRemoval | None:
    service = as_str(raw.get("service"), MAX_LABEL)
    if service is None:
        return None
    return EndpointRemoval(
        service=service,
        terminating_at=parse_time(raw.get("terminatingAt")),
        removed_at=parse_time(raw.get("removedAt")),
    )


def _moment(raw: Mapping[str, Any]) -> Moment | None:
    time, etype = parse_time(raw.get("time")), as_word(raw.get("type"))
    if time is None or etype is None:
        return None
    return Moment(time, etype, as_str(raw.get("summary"), MOMENT_SUMMARY) or etype)


def _end_summary(raw: object) -> EndSummary | None:
    data = as_map(raw)
    if not data:
        return None
    return EndSummary(
        requested_at=parse_time(data.get("requestedAt")),
        grace_seconds=as_int(data.get("gracePeriodSeconds"), 0, MAX_GRACE),
        forced=as_bool(data.get("forced")),
        killing_at=parse_time(data.get("killingAt")),
        disruption_reason=as_str(data.get("disruptionReason"), MAX_REASON),
        verdict=as_word(data.get("verdict"), MAX_SHORT),
        evidence=as_str(data.get("evidence"), END_EVIDENCE),
    )


def _instance(raw: Mapping[str, Any]) -> Instance | None:
    uid = as_str(raw.get("uid"), MAX_UID)
    if uid is None:
        return None
    moments = [_moment(item) for item in as_items(raw.get("lastEntries"), LAST_MOMENTS)]
    return Instance(
        uid=uid,
        created=parse_time(raw.get("created")),
        deleted=parse_time(raw.get("deleted")),
        outcome=as_str(raw.get("outcome"), MAX_SHORT),
        node_name=as_str(raw.get("nodeName")),
        restarts=as_int(raw.get("restarts"), 0) or 0,
        phase=as_str(raw.get("phase"), MAX_PHASE),
        entries=as_int(raw.get("timelineEntries"), 0) or 0,
        last=tuple(m for m in moments if m is not None),
        termination=_end_summary(raw.get("termination")),
    )


def _seen(raw: object) -> SeenEvent | None:
    """An Event ledger item: ``<id> <count> <lastTime>``, or an object (before 0.2)."""
    if isinstance(raw, str):
        head, _, when = raw[:MAX_LEDGER_ITEM].rpartition(" ")
        name, _, number = head.rpartition(" ")
        plain = number.isascii() and number.isdigit() and len(number) < 12
        data: Mapping[str, Any] = {"id": name, "count": int(number) if plain else None}
        data = {**data, "lastTime": when}
    else:
        data = as_map(raw)
    ident, time = as_str(data.get("id"), MAX_NAME), parse_time(data.get("lastTime"))
    count = as_int(data.get("count"), 1)
    if ident is None or time is None or count is None:
        return None
    return SeenEvent(plain_id(ident, MAX_EVENT_ID), count, time)


def _ledger(raw: Mapping[str, Any], tracking: Mapping[str, Any]) -> list[SeenEvent | None]:
    items = tracking.get("events")
    if not isinstance(items, list):
        items = raw.get("seenEvents")  # before 0.2
    if not isinstance(items, list):
        return []
    return [_seen(item) for item in items[:256]]


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
    raw = as_map(status)
    tracking = as_map(raw.get("tracking"))
    times = as_map(raw.get("times"))
    termination = as_map(raw.get("termination"))
    owner_raw = as_map(raw.get("owner"))
    owner = None
    if as_str(owner_raw.get("kind"), MAX_KIND) and as_str(owner_raw.get("name")):
        owner = OwnerRecord(
            kind=as_str(owner_raw.get("kind"), MAX_KIND) or "",
            name=as_str(owner_raw.get("name")) or "",
            deployment=as_str(owner_raw.get("deployment")),
        )
    deletion = None
    stamp = parse_time(termination.get("deletionTimestamp"))
    if stamp is not None:
        grace = as_int(termination.get("gracePeriodSeconds"), 0, MAX_GRACE) or 0
        deletion = Deletion(stamp, grace)
    removal_raw = as_map(raw.get("removal"))
    removal_time = parse_time(removal_raw.get("time"))
    removal = None
    if removal_time is not None:
        removal = Removal(removal_time, as_bool(removal_raw.get("observed")) is True)
    failures = [
        PreStopFailure(name, when)
        for item in as_items(termination.get("preStop"), MAX_PRE_STOP)
        if (name := as_str(item.get("container"), MAX_LABEL)) is not None
        and (when := parse_time(item.get("failedAt"))) is not None
    ]
    probes = as_map(raw.get("probeFailures"))
    containers = _unique(
        [_container(item) for item in as_items(raw.get("containers"), MAX_CONTAINERS)],
        lambda c: c.name,
    )[: limits.containers_cap()]
    entries = _unique(_timeline(raw, tracking), lambda e: e.key)
    return Record(
        pod_uid=as_str(raw.get("podUID"), MAX_UID),
        node_name=as_str(raw.get("nodeName")),
        phase=as_str(raw.get("phase"), MAX_PHASE),
        pod_reason=as_str(raw.get("reason"), MAX_REASON),
        owner=owner,
        created=parse_time(times.get("created")),
        scheduled=parse_time(times.get("scheduled")),
        initialized=parse_time(times.get("initialized")),
        ready=parse_time(times.get("ready")),
        deletion=deletion,
        killing_at=parse_time(termination.get("killingAt")),
        disruption_reason=as_str(termination.get("disruptionReason"), MAX_REASON),
        disruption_message=as_str(termination.get("disruptionMessage"), 1024),
        pre_stop_failures=_unique(list(failures), lambda f: f)[-16:],
        removal=removal,
        containers=containers,
        conditions=_unique(
            [_condition(item) for item in as_items(raw.get("conditions"), MAX_CONDITIONS)],
            lambda c: c.type,
        ),
        endpoints=_unique(
            [_endpoint(item) for item in as_items(raw.get("endpoints"), 64)],
            lambda e: (e.service, e.address),
        )[-limits.endpoints_cap() :],
        endpoint_removals=_unique(
            [_removal_item(item) for item in as_items(termination.get("endpointRemovals"), 64)],
            lambda r: r.service,
        )[-limits.endpoints_cap() :],
        probe_failures=ProbeFailures(
            liveness=as_int(probes.get("liveness"), 0) or 0,
            readiness=as_int(probes.get("readiness"), 0) or 0,
            startup=as_int(probes.get("startup"), 0) or 0,
        ),
        timeline=causal_order(entries, containers)[-limits.timeline_cap() :],
        timeline_dropped=as_int(raw.get("timelineDropped"), 0) or 0,
        previous=_unique(
            [_instance(item) for item in as_items(raw.get("previousInstances"), 20)],
            lambda i: i.uid,
        )[: limits.previous_cap()],
        seen_events=_unique(_ledger(raw, tracking), lambda s: s.id)[: limits.seen_events_cap()],
        label_marks=clean_marks(tracking.get("labels")),
    )


# --- Rendering -------------------------------------------------------------------------------


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
            "source": _source(entry.source),
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
