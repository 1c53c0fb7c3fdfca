"""Record + observation + facts → the next record.

Three steps: ``route`` picks the pod instance an observation belongs to (rolling the record
over to a new UID when the pod was recreated), ``absorb`` folds the observation's current state
into the record, and ``apply_facts`` adds the new facts to the timeline (merging repeats) and
keeps it within its bound.
"""

from __future__ import annotations

import heapq
from dataclasses import replace
from datetime import datetime

from ._access import MAX_INT
from .clock import earlier, later
from .facts import Fact, FactType, Merge, Probe, importance, kept_message
from .history import summarise
from .limits import Limits
from .model import (
    OCCURRENCE_FIELDS,
    ConditionRecord,
    ContainerRecord,
    Deletion,
    EndpointRecord,
    EndpointRemoval,
    Entry,
    OwnerRecord,
    PreStopFailure,
    ProbeFailures,
    Record,
    Removal,
    SeenEvent,
)
from .observe import ContainerSeen, EndpointSeen, EventSeen, Observation, PodGone, PodSeen
from .order import causal_order

KEEP_LATEST = 20


# --- Routing -------------------------------------------------------------------------------


def _anchor(record: Record) -> datetime | None:
    if record.created is not None:
        return record.created
    return min((e.time for e in record.timeline), default=None)


def route(record: Record, observation: Observation, limits: Limits) -> Record | None:
    """The record state an observation applies to, or None when it must be ignored.

    A pod with another UID than the record's is a new instance (the record rolls over and the
    old instance becomes a previous-instance summary) unless it is a known previous instance
    or was created before the current one. An Event for another UID rolls over only when the
    current instance is already being deleted or gone and the Event is newer than it; other
    observations about other UIDs are ignored, so they never pollute the current instance.
    A pod object without a UID is ignored, and so is an endpoint that does not name the
    record's own pod UID (anyone who may write EndpointSlices can name any pod).
    """
    uid = observation.pod_uid
    current = record.pod_uid
    if isinstance(observation, PodSeen) and uid is None:
        return None  # the API always sets a UID: such an object is not a real pod
    if isinstance(observation, EndpointSeen):
        return record if current is not None and uid == current else None
    if isinstance(observation, PodGone):
        if current is None or (uid is not None and uid != current):
            return None
        return record
    if uid is None or current is None or uid == current:
        return record
    if any(instance.uid == uid for instance in record.previous):
        return None
    anchor = _anchor(record)
    if isinstance(observation, PodSeen):
        if anchor is not None and observation.created is not None and observation.created < anchor:
            return None
        return rollover(record, limits)
    if isinstance(observation, EventSeen):
        ending = record.removal is not None or record.deletion is not None
        if ending and anchor is not None and observation.first_time >= anchor:
            return rollover(record, limits)
    return None


def close_previous_instance(record: Record, gone: PodGone) -> Record | None:
    """Note the removal of an earlier instance whose removal arrived after its successor.

    Pods with different UIDs are watched independently, so a recreated pod (a StatefulSet's)
    can be seen before its predecessor's removal. Returns None when there is nothing to note.
    """
    if gone.pod_uid is None or gone.pod_uid == record.pod_uid:
        return None
    previous = tuple(
        replace(instance, deleted=gone.time)
        if instance.uid == gone.pod_uid and instance.deleted is None
        else instance
        for instance in record.previous
    )
    if previous == record.previous:
        return None
    return replace(record, previous=previous)


def rollover(record: Record, limits: Limits) -> Record:
    """Start over for a new pod instance, keeping a summary of the current one."""
    if record.pod_uid is None:
        return Record(previous=record.previous, label_marks=record.label_marks)
    summary = summarise(record, limits)
    return Record(
        previous=((summary,) + record.previous)[: limits.previous_cap()],
        label_marks=record.label_marks,
    )


# --- Absorbing the observed state ----------------------------------------------------------


def absorb(
    record: Record,
    observation: Observation,
    facts: list[Fact],
    limits: Limits,
    *,
    deletion: Deletion | None,
) -> Record:
    """Fold an observation's state into the record (called only when it brought new facts).

    ``deletion`` is the deletion request to keep (see derive).
    """
    if isinstance(observation, PodSeen):
        return _absorb_pod(record, observation, facts, limits, deletion)
    if isinstance(observation, EventSeen):
        return _absorb_event(record, observation, limits)
    if isinstance(observation, EndpointSeen):
        return _absorb_endpoint(record, observation, limits)
    return _absorb_gone(record, observation)


def _true_since(pod: PodSeen, ctype: str) -> datetime | None:
    for cond in pod.conditions:
        if cond.type == ctype and cond.status == "True":
            return cond.last_transition_time
    return None


def _absorb_container(old: ContainerRecord | None, c: ContainerSeen) -> ContainerRecord:
    base = old or ContainerRecord(name=c.name, kind=str(c.kind))
    if not c.has_status:
        return replace(base, kind=str(c.kind), pre_stop=c.pre_stop)
    current_run = c.ended.run_id if c.ended is not None else c.run_id
    started_at, started_run = base.started_at, base.started_run
    last = c.last_ended
    for start, run in (
        (last.started_at, last.run_id) if last else (None, None),
        (c.started_at, current_run),
    ):
        if start is not None and (started_at is None or start >= started_at):
            started_at, started_run = start, run
    finished_at, finished_run = base.finished_at, base.finished_run
    exit_code, reason = base.last_exit_code, base.last_reason
    for end in (last, c.ended):
        if end is None:
            continue
        if end.finished_at is None or finished_at is None or end.finished_at >= finished_at:
            finished_at = end.finished_at or finished_at
            finished_run = end.run_id if end.finished_at else finished_run
            exit_code, reason = end.exit_code, end.reason
    return ContainerRecord(
        name=c.name,
        kind=str(c.kind),
        state=c.state,
        reason=c.reason,
        ready=c.ready,
        started=c.started,
        restart_count=c.restart_count,
        started_at=started_at,
        finished_at=finished_at,
        last_exit_code=exit_code,
        last_reason=reason,
        pre_stop=c.pre_stop,
        started_run=started_run,
        finished_run=finished_run,
    )


def _absorb_pod(
    record: Record, pod: PodSeen, facts: list[Fact], limits: Limits, deletion: Deletion | None
) -> Record:
    created = record.created or pod.created
    if created is None:
        created = next((f.time for f in facts if f.type == FactType.CREATED), None)
    containers = (
        tuple(_absorb_container(record.container(c.name), c) for c in pod.containers)
        or record.containers
    )
    disruption_reason, disruption_message = record.disruption_reason, record.disruption_message
    target = next(
        (c for c in pod.conditions if c.type == "DisruptionTarget" and c.status == "True"), None
    )
    if target is not None and target.reason:
        disruption_reason = target.reason
        disruption_message = kept_message(target.message, limits)
    elif pod.reason == "Evicted" and disruption_reason is None:
        disruption_reason, disruption_message = "Evicted", kept_message(pod.message, limits)
    conditions = tuple(
        ConditionRecord(
            c.type, c.status, c.last_transition_time, c.reason, kept_message(c.message, limits)
        )
        for c in pod.conditions
    )
    owner = record.owner
    if pod.owner is not None:
        owner = OwnerRecord(pod.owner.kind, pod.owner.name, pod.owner.deployment)
    return replace(
        record,
        pod_uid=pod.pod_uid or record.pod_uid,
        node_name=pod.node_name or record.node_name,
        phase=pod.phase or record.phase,
        pod_reason=pod.reason,
        owner=owner,
        created=created,
        scheduled=record.scheduled or _true_since(pod, "PodScheduled"),
        initialized=record.initialized or _true_since(pod, "Initialized"),
        ready=record.ready or _true_since(pod, "Ready"),
        deletion=deletion,
        disruption_reason=disruption_reason,
        disruption_message=disruption_message,
        containers=containers[: limits.containers_cap()],
        conditions=conditions or record.conditions,
    )


_EVENT_DISRUPTIONS = {
    "Preempted": "Preempted",
    "Evicted": "Evicted",
    "TaintManagerEviction": "DeletionByTaintManager",
}


def _absorb_event(record: Record, ev: EventSeen, limits: Limits) -> Record:
    ledger = (SeenEvent(ev.event_id, ev.count, ev.last_time),) + tuple(
        item for item in record.seen_events if item.id != ev.event_id
    )
    changes: dict[str, object] = {"seen_events": ledger[: limits.seen_events_cap()]}
    if record.pod_uid is None and ev.pod_uid is not None:
        changes["pod_uid"] = ev.pod_uid
    if ev.reason == "Scheduled":
        changes["scheduled"] = record.scheduled or ev.first_time
    if ev.reason == "Killing" and "will be restarted" not in (ev.message or ""):
        changes["killing_at"] = earlier(record.killing_at, ev.first_time)
    if ev.reason == "FailedPreStopHook" and ev.container:
        failure = PreStopFailure(ev.container, ev.first_time)
        if failure not in record.pre_stop_failures:
            changes["pre_stop_failures"] = (record.pre_stop_failures + (failure,))[-16:]
    disruption = _EVENT_DISRUPTIONS.get(ev.reason)
    if disruption is not None and record.disruption_reason is None:
        changes["disruption_reason"] = disruption
        changes["disruption_message"] = kept_message(ev.message, limits)
    return replace(record, **changes)  # type: ignore[arg-type]


def _absorb_endpoint(record: Record, ep: EndpointSeen, limits: Limits) -> Record:
    others = tuple(
        e for e in record.endpoints if (e.service, e.address) != (ep.service, ep.address)
    )
    removals = {r.service: r for r in record.endpoint_removals}
    removal = removals.get(ep.service, EndpointRemoval(ep.service))
    if ep.removed:
        endpoints = others
        removal = replace(removal, removed_at=ep.time)
    else:
        endpoints = others + (
            EndpointRecord(ep.service, ep.address, ep.ready, ep.serving, ep.terminating, ep.time),
        )
        if ep.terminating and not ep.ready and removal.terminating_at is None:
            removal = replace(removal, terminating_at=ep.time)
    if removal.terminating_at or removal.removed_at:
        removals[ep.service] = removal
    cap = limits.endpoints_cap()
    return replace(
        record,
        pod_uid=record.pod_uid or ep.pod_uid,
        endpoints=endpoints[-cap:],
        endpoint_removals=tuple(removals.values())[-cap:],
    )


def _absorb_gone(record: Record, gone: PodGone) -> Record:
    if record.removal is not None:
        return record
    return replace(record, removal=Removal(gone.time, gone.observed))


# --- Facts into the timeline ----------------------------------------------------------------


def _entry(fact: Fact) -> Entry:
    """A new timeline entry: the fact's occurrence, with plain strings for type and source.

    Its last time is kept only for a repeat (ADD) and when later than its time.
    """
    occurrence = {name: getattr(fact, name) for name in OCCURRENCE_FIELDS}
    repeated = fact.merge is Merge.ADD and fact.last_time and fact.last_time > fact.time
    occurrence.update(
        type=str(fact.type),
        source=str(fact.source),
        last_time=fact.last_time if repeated else None,
    )
    return Entry(**occurrence)


def _merge(entry: Entry, fact: Fact) -> Entry:
    latest = later(entry.latest, later(fact.time, fact.last_time)) or entry.latest
    newer = later(fact.time, fact.last_time) or fact.time
    fresh = newer >= entry.latest
    first = earlier(entry.time, fact.time) or entry.time
    return replace(
        entry,
        time=first,
        count=min(entry.count + fact.count, MAX_INT),
        last_time=latest if latest > first else None,
        summary=fact.summary if fresh else entry.summary,
        reason=fact.reason if fresh else entry.reason,
        message=fact.message if fresh else entry.message,
        exit_code=fact.exit_code if fresh else entry.exit_code,
        signal=fact.signal if fresh else entry.signal,
    )


def apply_facts(record: Record, facts: list[Fact]) -> tuple[Record, list[Fact]]:
    """Add facts to the timeline; returns the record and the facts that were new."""
    timeline = list(record.timeline)
    index = {entry.key: i for i, entry in enumerate(timeline)}
    applied: list[Fact] = []
    probes = record.probe_failures
    for fact in facts:
        at = index.get(fact.key)
        if at is not None:
            if fact.merge is Merge.ONCE:
                continue
            timeline[at] = _merge(timeline[at], fact)
        else:
            index[fact.key] = len(timeline)
            timeline.append(_entry(fact))
        applied.append(fact)
        if fact.type == FactType.PROBE_FAILED:
            probes = _count_probe(probes, fact)
    return replace(record, timeline=tuple(timeline), probe_failures=probes), applied


def _count_probe(probes: ProbeFailures, fact: Fact) -> ProbeFailures:
    if fact.probe == Probe.LIVENESS:
        return replace(probes, liveness=min(MAX_INT, probes.liveness + fact.count))
    if fact.probe == Probe.READINESS:
        return replace(probes, readiness=min(MAX_INT, probes.readiness + fact.count))
    if fact.probe == Probe.STARTUP:
        return replace(probes, startup=min(MAX_INT, probes.startup + fact.count))
    return probes


def _recency(entry: Entry) -> tuple[datetime, str]:
    return (entry.latest, entry.key)


def _drop_rank(entry: Entry) -> tuple[int, datetime, str]:
    """Lowest first: less important, then older; an aggregated entry counts one level more."""
    return (importance(entry.type) + (1 if entry.count > 1 else 0), entry.latest, entry.key)


def bound_timeline(record: Record, limits: Limits) -> Record:
    """Keep the timeline within its bound, dropping the least important old entries first.

    Created entries and the newest entries (by latest occurrence) are kept; among the rest,
    the lowest-importance, oldest entries go first, an aggregated entry (count > 1) counting
    as one level more important than its type. ``timeline_dropped`` counts them.
    """
    cap = limits.timeline_cap()
    timeline = causal_order(record.timeline, record.containers)
    excess = len(timeline) - cap
    if excess <= 0:
        return replace(record, timeline=tuple(timeline))
    newest = heapq.nlargest(min(KEEP_LATEST, cap // 4), timeline, key=_recency)
    protected = {e.key for e in newest} | {e.key for e in timeline if e.type == FactType.CREATED}
    candidates = [e for e in timeline if e.key not in protected]
    if excess == 1 and candidates:  # the usual case once the timeline is full: no sort needed
        victims = {min(candidates, key=_drop_rank).key}
    else:
        candidates.sort(key=_drop_rank)
        if len(candidates) < excess:
            candidates += [e for e in timeline if e.key in protected and e.type != FactType.CREATED]
        victims = {e.key for e in candidates[:excess]}
    kept = tuple(e for e in timeline if e.key not in victims)
    kept = kept[-cap:]
    dropped = len(timeline) - len(kept)
    return replace(
        record, timeline=kept, timeline_dropped=min(record.timeline_dropped + dropped, MAX_INT)
    )


def reduce(
    record: Record,
    observation: Observation,
    facts: list[Fact],
    limits: Limits,
    *,
    deletion: Deletion | None,
) -> tuple[Record, list[Fact]]:
    """Apply an observation and its candidate facts; returns the record and the new facts.

    When no fact is new the record is returned unchanged, so a repeated observation changes
    nothing at all. ``deletion`` is the deletion request to keep (see derive).
    """
    updated, applied = apply_facts(record, facts)
    if not applied:
        return record, []
    updated = absorb(updated, observation, applied, limits, deletion=deletion)
    return bound_timeline(updated, limits), applied
