"""A record → its pod's life as a trace: plain spans, ready for any tracing exporter.

One trace per pod instance. The trace id is the pod's UID (a UUID is 128 bits) and every span id
is derived from the UID and the span's place in the life, so a restarted operator, or another
replica, sends the same ids for the same spans. Times come from the record's timeline; nothing
here reads a clock (the shell passes ``now`` for a life that has not ended).

The shape: a root span for the life (creation to removal); under it ``schedule`` (creation to
scheduling, FailedScheduling as events), ``sandbox`` (scheduling to the sandbox's readiness),
one span per container run (init containers, sidecars and app containers; restarts are runs of
their own, with exit code and reason; probe failures, readiness and hooks as events), and
``termination`` (the deletion request or disruption to removal, with grace period, deadline,
verdict and evidence; Killing, SIGTERM exits and SIGKILL as events).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .clock import format_time
from .conclude import analyse_record
from .facts import ContainerKind, FactType
from .limits import Limits
from .model import Entry, Record
from .termination import Analysis

AttrValue = str | int | float | bool
Attributes = tuple[tuple[str, AttrValue], ...]

MAX_ATTRIBUTE_TEXT = 1024
STARTS = frozenset({FactType.CONTAINER_STARTED, FactType.SIDECAR_STARTED})
ENDS = frozenset(
    {
        FactType.CONTAINER_TERMINATED,
        FactType.EXITED_ON_TERM,
        FactType.KILLED_AFTER_GRACE,
        FactType.OOM_KILLED,
    }
)
RUN_EVENTS = frozenset(
    {
        FactType.CONTAINER_READY,
        FactType.CONTAINER_NOT_READY,
        FactType.STARTUP_PROBE_PASSED,
        FactType.SIDECAR_READY,
        FactType.PROBE_FAILED,
        FactType.LIVENESS_RESTART,
        FactType.POST_START_HOOK_FAILED,
        FactType.PRE_STOP_HOOK_FAILED,
        FactType.BACK_OFF,
    }
)
ENDINGS = frozenset(
    {
        FactType.DELETION_REQUESTED,
        FactType.FORCE_DELETED,
        FactType.EVICTED,
        FactType.PREEMPTED,
        FactType.TAINT_MANAGER_DELETION,
    }
)
TERMINATION_EVENTS = frozenset(
    {
        FactType.KILLING_STARTED,
        FactType.PRE_STOP_HOOK_FAILED,
        FactType.REMOVED_FROM_ENDPOINTS,
        FactType.EXITED_ON_TERM,
        FactType.KILLED_AFTER_GRACE,
        FactType.OOM_KILLED,
        FactType.CONTAINER_TERMINATED,
    }
)
DEFAULT_LIMITS = Limits()
ROOT_EVENTS = frozenset({FactType.PHASE_CHANGED, FactType.POD_DELETED, FactType.DELETED_UNOBSERVED})
EVENT_NAMES: dict[str, str] = {
    FactType.KILLED_AFTER_GRACE: "SIGKILL",
    FactType.EXITED_ON_TERM: "exited on SIGTERM",
    FactType.KILLING_STARTED: "kubelet stopping container",
}
RUN_NAMES: dict[str, str] = {ContainerKind.INIT: "init", ContainerKind.SIDECAR: "sidecar"}
OWNER_ATTRIBUTES = {
    "ReplicaSet": "k8s.replicaset.name",
    "StatefulSet": "k8s.statefulset.name",
    "DaemonSet": "k8s.daemonset.name",
    "Job": "k8s.job.name",
    "CronJob": "k8s.cronjob.name",
}


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """A moment inside a span (a probe failure, a SIGKILL)."""

    name: str
    time: datetime
    attributes: Attributes = ()


@dataclass(frozen=True, slots=True)
class Span:
    """One span: ids are 64-bit and never 0; ``error`` is the status message of a failed span."""

    span_id: int
    parent_id: int | None
    name: str
    start: datetime
    end: datetime
    attributes: Attributes = ()
    events: tuple[SpanEvent, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PodTrace:
    """A pod instance's life as a trace: its resource attributes and spans (the root first)."""

    trace_id: int
    resource: Attributes
    spans: tuple[Span, ...]
    ended: bool

    @property
    def root(self) -> Span:
        """The span of the whole life."""
        return self.spans[0]


@dataclass(frozen=True, slots=True)
class _Life:
    """What every span of one trace needs: the ids' seed, the root, the end."""

    seed: str
    root_id: int
    start: datetime
    end: datetime
    entries: tuple[Entry, ...] = field(default=())

    def span_id(self, place: str) -> int:
        return _id(f"{self.seed}/{place}", 8)


def trace_id(pod_uid: str | None, namespace: str, pod_name: str, created: datetime | None) -> int:
    """The pod's UID as 128 bits; a hash of its identity when the UID is not a UUID."""
    if pod_uid:
        try:
            return uuid.UUID(pod_uid).int or _id(pod_uid, 16)
        except ValueError:
            return _id(pod_uid, 16)
    born = format_time(created) if created is not None else ""
    return _id(f"{namespace}/{pod_name}/{born}", 16)


def _id(text: str, size: int) -> int:
    """A non-zero id of `size` bytes derived from `text`."""
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:size], "big")
    return value or 1


def pod_trace(
    record: Record,
    namespace: str,
    pod_name: str,
    *,
    now: datetime,
    limits: Limits = DEFAULT_LIMITS,
) -> PodTrace | None:
    """The record's pod as a trace; None while nothing dates the pod's start.

    Args:
        record: The record.
        namespace: The pod's namespace.
        pod_name: The pod's name.
        now: The end of a life that has not ended (its root span ends here for now).
        limits: The operator's limits (the termination analysis's kill slack).
    """
    analysis = analyse_record(record, limits)
    entries = tuple(sorted(record.timeline, key=lambda e: e.time))
    start = record.created or (entries[0].time if entries else None)
    if start is None:
        return None
    removal = record.removal.time if record.removal else None
    ended = removal is not None or analysis.outcome is not None
    end = removal or (_latest(entries) if ended else now) or start
    end = max(end, start)
    tid = trace_id(record.pod_uid, namespace, pod_name, record.created)
    seed = f"{tid:032x}"
    life = _Life(seed, _id(f"{seed}/pod", 8), start, end, entries)
    spans = [_root(record, analysis, life, namespace, pod_name)]
    spans += _schedule(record, life)
    spans += _runs(record, life)
    spans += _termination(record, analysis, life)
    return PodTrace(tid, _resource(record, namespace, pod_name), tuple(spans), ended)


def _latest(entries: Sequence[Entry]) -> datetime | None:
    return max((e.latest for e in entries), default=None)


def _resource(record: Record, namespace: str, pod_name: str) -> Attributes:
    attributes: list[tuple[str, AttrValue]] = [
        ("service.name", "podtrail"),
        ("k8s.namespace.name", namespace),
        ("k8s.pod.name", pod_name),
    ]
    if record.pod_uid:
        attributes.append(("k8s.pod.uid", record.pod_uid))
    if record.node_name:
        attributes.append(("k8s.node.name", record.node_name))
    owner = record.owner
    if owner is not None:
        key = OWNER_ATTRIBUTES.get(owner.kind)
        if key:
            attributes.append((key, owner.name))
        if owner.deployment:
            attributes.append(("k8s.deployment.name", owner.deployment))
    return tuple(attributes)


def _root(record: Record, analysis: Analysis, life: _Life, namespace: str, pod_name: str) -> Span:
    attributes: list[tuple[str, AttrValue]] = [("k8s.pod.restarts", record.restarts())]
    if record.phase:
        attributes.append(("k8s.pod.phase", record.phase))
    if analysis.outcome is not None:
        attributes.append(("podtrail.outcome", str(analysis.outcome)))
    if record.removal is not None:
        attributes.append(("podtrail.removal_observed", record.removal.observed))
    failed = analysis.outcome is not None and str(analysis.outcome) not in _CLEAN_OUTCOMES
    phases = tuple(_event(e) for e in life.entries if e.type in ROOT_EVENTS)
    return Span(
        span_id=life.root_id,
        parent_id=None,
        name=f"pod {namespace}/{pod_name}",
        start=life.start,
        end=life.end,
        attributes=tuple(attributes),
        events=phases,
        error=f"outcome {analysis.outcome}" if failed else None,
    )


_CLEAN_OUTCOMES = frozenset({"Succeeded", "GracefulShutdown", "Deleted"})


def _schedule(record: Record, life: _Life) -> list[Span]:
    spans = []
    failures = tuple(
        SpanEvent("FailedScheduling", e.time, (("podtrail.count", e.count), _message(e.summary)))
        for e in life.entries
        if e.type == FactType.FAILED_SCHEDULING
    )
    scheduled = record.scheduled
    if scheduled is not None or failures:
        attributes: Attributes = (("k8s.node.name", record.node_name),) if record.node_name else ()
        spans.append(
            _child(
                life,
                "schedule",
                "schedule",
                life.start,
                scheduled or life.end,
                attributes,
                failures,
            )
        )
    sandbox = next((e.time for e in life.entries if e.type == FactType.SANDBOX_READY), None)
    if scheduled is not None and sandbox is not None:
        spans.append(_child(life, "sandbox", "sandbox", scheduled, sandbox))
    return spans


def _child(
    life: _Life,
    place: str,
    name: str,
    start: datetime,
    end: datetime,
    attributes: Attributes = (),
    events: tuple[SpanEvent, ...] = (),
    error: str | None = None,
) -> Span:
    start = min(max(start, life.start), life.end)
    return Span(
        span_id=life.span_id(place),
        parent_id=life.root_id,
        name=name,
        start=start,
        end=min(max(end, start), life.end),
        attributes=attributes,
        events=events,
        error=error,
    )


def _message(text: str) -> tuple[str, AttrValue]:
    return ("podtrail.summary", text[:MAX_ATTRIBUTE_TEXT])


# --- Container runs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Run:
    container: str
    kind: str
    index: int
    start: datetime
    end: Entry | None
    key: str


def _runs(record: Record, life: _Life) -> list[Span]:
    spans = []
    for c in record.containers:
        own = [e for e in life.entries if e.container == c.name]
        runs = list(_pair_runs(c.name, str(c.kind), own))
        for number, run in enumerate(runs):
            until = runs[number + 1].start if number + 1 < len(runs) else life.end
            spans.append(_run_span(life, run, own, until))
    return spans


def _pair_runs(container: str, kind: str, entries: Sequence[Entry]) -> Iterator[_Run]:
    """Each start opens a run; the next end closes it (an end with no start is a run of its own).

    A run's key is its first entry's (which names the container's run): its span id stays the
    same when the timeline's bound drops older runs.
    """
    start: Entry | None = None
    index = 0
    for entry in entries:
        if entry.type in STARTS:
            if start is not None:
                yield _Run(container, kind, index, start.time, None, start.key)
                index += 1
            start = entry
        elif entry.type in ENDS:
            first = start or entry
            yield _Run(container, kind, index, first.time, entry, first.key)
            index += 1
            start = None
    if start is not None:
        yield _Run(container, kind, index, start.time, None, start.key)


def _run_span(life: _Life, run: _Run, own: Sequence[Entry], until: datetime) -> Span:
    end = run.end.time if run.end is not None else until
    attributes: list[tuple[str, AttrValue]] = [
        ("k8s.container.name", run.container),
        ("podtrail.container.kind", run.kind),
        ("podtrail.run", run.index),
        ("podtrail.run.ended", run.end is not None),
    ]
    error = None
    if run.end is not None:
        attributes += _end_attributes(run.end)
        if _failed_run(run.end):
            error = run.end.summary[:MAX_ATTRIBUTE_TEXT]
    events = tuple(_event(e) for e in own if e.type in RUN_EVENTS and run.start <= e.time <= end)
    prefix = RUN_NAMES.get(run.kind, "container")
    return _child(
        life,
        f"run/{run.key}",
        f"{prefix} {run.container}",
        run.start,
        end,
        tuple(attributes),
        events,
        error,
    )


def _failed_run(end: Entry) -> bool:
    """An OOM kill, a SIGKILL at the deadline, or a non-zero exit not caused by SIGTERM."""
    if end.type in (FactType.OOM_KILLED, FactType.KILLED_AFTER_GRACE):
        return True
    code = end.exit_code
    return code is not None and code != 0 and end.type != FactType.EXITED_ON_TERM


def _end_attributes(end: Entry) -> list[tuple[str, AttrValue]]:
    attributes: list[tuple[str, AttrValue]] = [("podtrail.end", end.type)]
    if end.exit_code is not None:
        attributes.append(("container.exit_code", end.exit_code))
    if end.reason:
        attributes.append(("podtrail.reason", end.reason))
    if end.signal:
        attributes.append(("podtrail.signal", end.signal))
    return attributes


def _event(entry: Entry) -> SpanEvent:
    attributes: list[tuple[str, AttrValue]] = [_message(entry.summary)]
    if entry.count > 1:
        attributes.append(("podtrail.count", entry.count))
    if entry.probe:
        attributes.append(("podtrail.probe", entry.probe))
    if entry.last_time is not None:
        attributes.append(("podtrail.last_time", format_time(entry.last_time) or ""))
    return SpanEvent(entry.type, entry.time, tuple(attributes))


# --- Termination ---------------------------------------------------------------------------


def _termination(record: Record, analysis: Analysis, life: _Life) -> list[Span]:
    began = next((e for e in life.entries if e.type in ENDINGS), None)
    start = began.time if began is not None else None
    if record.deletion is not None and not record.deletion.at_removal:
        start = min(start or record.deletion.requested_at, record.deletion.requested_at)
    if start is None:
        return []
    attributes: list[tuple[str, AttrValue]] = []
    if began is not None:
        attributes.append(("podtrail.began", began.type))
    if record.deletion is not None:
        attributes.append(("podtrail.grace_period_seconds", record.deletion.grace_seconds))
        attributes.append(("podtrail.deadline", format_time(record.deletion.timestamp) or ""))
        if record.deletion.at_removal:
            attributes.append(("podtrail.request_seen", False))
    if analysis.verdict:
        attributes.append(("podtrail.verdict", analysis.verdict))
    if analysis.evidence:
        attributes.append(("podtrail.evidence", analysis.evidence[:MAX_ATTRIBUTE_TEXT]))
    events = tuple(
        _termination_event(e)
        for e in life.entries
        if e.type in TERMINATION_EVENTS and e.time >= start
    )
    killed = any(e.type == FactType.KILLED_AFTER_GRACE for e in life.entries)
    return [
        _child(
            life,
            "termination",
            "termination",
            start,
            life.end,
            tuple(attributes),
            events,
            "SIGKILL after the grace period" if killed else None,
        )
    ]


def _termination_event(entry: Entry) -> SpanEvent:
    event = _event(entry)
    name = EVENT_NAMES.get(entry.type, entry.type)
    attributes = event.attributes
    if entry.container:
        attributes += (("k8s.container.name", entry.container),)
    if entry.exit_code is not None:
        attributes += (("container.exit_code", entry.exit_code),)
    return SpanEvent(name, entry.time, attributes)
