"""A stored PodLifecycleRecord status (JSON) read back into the core's model.

``load_status`` tolerates anything: what is stored may come from an earlier version, a user's
edit or a broken write. Unknown or malformed parts are left out, strings are cut to the caps the
writer (render.py) applies, and the derived fields the writer recomputes on every render
(outcome, summary counters, durations, the termination verdict, lastEvent) are not read, so
``render_status(load_status(s))`` is a fixed point.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ._access import (
    MAX_ADDRESS,
    MAX_CONDITION_TYPE,
    MAX_CONDITIONS,
    MAX_CONTAINERS,
    MAX_FLAG,
    MAX_GRACE,
    MAX_KIND,
    MAX_LABEL,
    MAX_NAME,
    MAX_PHASE,
    MAX_PRE_STOP,
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
)
from .clock import parse_time
from .facts import (
    MAX_EVENT_ID,
    MAX_KEY_LENGTH,
    MAX_SUMMARY_LENGTH,
    ContainerKind,
    known_source,
    make_key,
    plain_id,
)
from .history import END_EVIDENCE, LAST_MOMENTS, MOMENT_SUMMARY
from .labels import clean_marks
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

MAX_LEDGER_ITEM = MAX_EVENT_ID + 1 + 11 + 1 + 40  # "<id> <count> <time>"


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
        source=known_source(raw.get("source")),
        container=as_str(raw.get("container"), MAX_LABEL),
        reason=as_str(raw.get("reason"), MAX_REASON),
        message=as_str(raw.get("message"), 1024),
        from_phase=as_str(raw.get("fromPhase"), MAX_PHASE),
        to_phase=as_str(raw.get("toPhase"), MAX_PHASE),
        exit_code=as_int(raw.get("exitCode")),  # int32, as observed
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
        last_exit_code=as_int(raw.get("lastExitCode")),
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


def _owner(raw: Mapping[str, Any]) -> OwnerRecord | None:
    kind, name = as_str(raw.get("kind"), MAX_KIND), as_str(raw.get("name"))
    if not (kind and name):
        return None
    return OwnerRecord(kind=kind, name=name, deployment=as_str(raw.get("deployment")))


def _deletion(termination: Mapping[str, Any]) -> Deletion | None:
    stamp = parse_time(termination.get("deletionTimestamp"))
    if stamp is None:
        return None
    grace = as_int(termination.get("gracePeriodSeconds"), 0, MAX_GRACE) or 0
    return Deletion(stamp, grace, as_bool(termination.get("seenAtRemoval")) is True)


def _removal(raw: object) -> Removal | None:
    data = as_map(raw)
    time = parse_time(data.get("time"))
    if time is None:
        return None
    return Removal(time, as_bool(data.get("observed")) is True)


def _pre_stop_failures(termination: Mapping[str, Any]) -> tuple[PreStopFailure, ...]:
    failures = [
        PreStopFailure(name, when)
        for item in as_items(termination.get("preStop"), MAX_PRE_STOP)
        if (name := as_str(item.get("container"), MAX_LABEL)) is not None
        and (when := parse_time(item.get("failedAt"))) is not None
    ]
    return _unique(failures, lambda f: f)[-16:]


def _probe_failures(raw: object) -> ProbeFailures:
    probes = as_map(raw)
    return ProbeFailures(
        liveness=as_int(probes.get("liveness"), 0) or 0,
        readiness=as_int(probes.get("readiness"), 0) or 0,
        startup=as_int(probes.get("startup"), 0) or 0,
    )


def _endpoints(
    raw: Mapping[str, Any], termination: Mapping[str, Any], limits: Limits
) -> tuple[tuple[EndpointRecord, ...], tuple[EndpointRemoval, ...]]:
    """The current endpoint memberships, and the removals from each Service's rotation."""
    cap = limits.endpoints_cap()
    endpoints = _unique(
        [_endpoint(item) for item in as_items(raw.get("endpoints"), 64)],
        lambda e: (e.service, e.address),
    )
    removals = _unique(
        [_removal_item(item) for item in as_items(termination.get("endpointRemovals"), 64)],
        lambda r: r.service,
    )
    return endpoints[-cap:], removals[-cap:]


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
    containers = _unique(
        [_container(item) for item in as_items(raw.get("containers"), MAX_CONTAINERS)],
        lambda c: c.name,
    )[: limits.containers_cap()]
    entries = _unique(_timeline(raw, tracking), lambda e: e.key)
    endpoints, endpoint_removals = _endpoints(raw, termination, limits)
    return Record(
        pod_uid=as_str(raw.get("podUID"), MAX_UID),
        node_name=as_str(raw.get("nodeName")),
        phase=as_str(raw.get("phase"), MAX_PHASE),
        pod_reason=as_str(raw.get("reason"), MAX_REASON),
        owner=_owner(as_map(raw.get("owner"))),
        created=parse_time(times.get("created")),
        scheduled=parse_time(times.get("scheduled")),
        initialized=parse_time(times.get("initialized")),
        ready=parse_time(times.get("ready")),
        deletion=_deletion(termination),
        killing_at=parse_time(termination.get("killingAt")),
        disruption_reason=as_str(termination.get("disruptionReason"), MAX_REASON),
        disruption_message=as_str(termination.get("disruptionMessage"), 1024),
        pre_stop_failures=_pre_stop_failures(termination),
        removal=_removal(raw.get("removal")),
        containers=containers,
        conditions=_unique(
            [_condition(item) for item in as_items(raw.get("conditions"), MAX_CONDITIONS)],
            lambda c: c.type,
        ),
        endpoints=endpoints,
        endpoint_removals=endpoint_removals,
        probe_failures=_probe_failures(raw.get("probeFailures")),
        timeline=causal_order(entries, containers)[-limits.timeline_cap() :],
        timeline_dropped=as_int(raw.get("timelineDropped"), 0) or 0,
        previous=_unique(
            [_instance(item) for item in as_items(raw.get("previousInstances"), 20)],
            lambda i: i.uid,
        )[: limits.previous_cap()],
        seen_events=_unique(_ledger(raw, tracking), lambda s: s.id)[: limits.seen_events_cap()],
        label_marks=clean_marks(tracking.get("labels")),
    )
