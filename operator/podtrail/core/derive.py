"""Observation + record → facts.

Facts are derived by comparing what is observed with what the record already holds (phase,
conditions, per-container counters and times, the Event ledger, endpoint memberships), so a
repeated observation derives nothing new even when the timeline has dropped old entries.
Keys come from the pod UID, what happened and Kubernetes' own timestamps and counters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from .clock import format_time, seconds_between
from .conclude import deletion_window
from .deletion import any_running
from .facts import (
    ContainerKind,
    Fact,
    FactType,
    Merge,
    Probe,
    Source,
    kept_message,
    make_key,
    one_line,
    signal_of,
)
from .limits import Limits
from .model import ContainerRecord, Deletion, Record
from .observe import (
    ConditionSeen,
    ContainerSeen,
    EndpointSeen,
    EventSeen,
    Observation,
    PodGone,
    PodSeen,
    RunEnd,
)
from .termination import (
    ContainerEnd,
    DeletionWindow,
    Verdict,
    extension_used,
    judge_container,
    window_text,
)

SUMMARY_TEXT = 160


def derive(
    record: Record,
    observation: Observation,
    *,
    deletion: Deletion | None,
    now: datetime,
    limits: Limits,
) -> list[Fact]:
    """The facts an observation adds to a record (before de-duplication by key).

    Args:
        record: The record's state (already routed to the observation's pod instance).
        observation: What was observed.
        deletion: The deletion request the record keeps after this observation (see
            deletion.next_deletion; the record's own for anything but a pod).
        now: The operator's clock, used only where Kubernetes records no time.
        limits: Bounds (message length).

    Returns:
        Candidate facts; the reducer drops those whose key is already recorded (ONCE).
    """
    if isinstance(observation, PodSeen):
        return _pod_facts(record, observation, deletion, now, limits)
    if isinstance(observation, EventSeen):
        return _event_facts(record, observation, limits)
    if isinstance(observation, EndpointSeen):
        return _endpoint_facts(record, observation)
    return _gone_facts(record, observation)


def uid_of(record: Record, pod_uid: str | None) -> str:
    """The UID used in keys: the observation's, else the record's, else a placeholder."""
    return pod_uid or record.pod_uid or "-"


def _text(value: str | None, limits: Limits, limit: int = SUMMARY_TEXT) -> str:
    """A message's first line for a summary, or nothing when messages are not kept."""
    if not limits.keeps_messages():
        return ""
    return one_line(value, limit) or ""


def _label(name: str, kind: str) -> str:
    if kind == ContainerKind.INIT:
        return f"init container {name}"
    if kind == ContainerKind.SIDECAR:
        return f"sidecar {name}"
    return f"container {name}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- Pods --------------------------------------------------------------------------------


def _pod_facts(
    record: Record, pod: PodSeen, deletion: Deletion | None, now: datetime, limits: Limits
) -> list[Fact]:
    """The pod's rules, then each container's, in the order their facts are reported."""
    uid = uid_of(record, pod.pod_uid)
    facts = _created_facts(record, pod, uid, now)
    facts += _phase_facts(record, pod, uid, now, limits)
    facts += _condition_facts(record, pod, uid, now, limits)
    facts += _evicted_facts(record, pod, uid, now, limits)
    window = deletion_window(deletion)
    facts += _deletion_facts(record, pod, uid, deletion, window)
    for container in pod.containers:
        if container.has_status:
            facts += _container_facts(record, pod, container, uid, window, now, limits)
    return facts


def _created_facts(record: Record, pod: PodSeen, uid: str, now: datetime) -> list[Fact]:
    """Created: the first sight of the pod, at its creationTimestamp."""
    if record.created is not None:
        return []
    owner = f" by {pod.owner.kind} {pod.owner.name}" if pod.owner else ""
    return [
        Fact(
            key=make_key(uid, FactType.CREATED),
            type=FactType.CREATED,
            time=pod.created or now,
            summary=f"Pod created{owner}; phase Pending",
            source=Source.STATUS if pod.created else Source.OBSERVED,
            pod_uid=pod.pod_uid,
        )
    ]


def _phase_time(pod: PodSeen, now: datetime) -> tuple[datetime, Source]:
    apps = [c for c in pod.containers if c.kind == ContainerKind.APP]
    if pod.phase == "Pending" and pod.created:
        return pod.created, Source.STATUS
    if pod.phase == "Running":
        starts = [
            t
            for c in apps
            for t in (c.started_at, c.last_ended.started_at if c.last_ended else None)
            if t is not None
        ]
        if starts:
            return min(starts), Source.INFERRED
    if pod.phase in ("Succeeded", "Failed"):
        ends = [c.ended.finished_at for c in apps if c.ended and c.ended.finished_at]
        if ends:
            return max(ends), Source.INFERRED
    return now, Source.OBSERVED


def _phase_facts(
    record: Record, pod: PodSeen, uid: str, now: datetime, limits: Limits
) -> list[Fact]:
    if pod.phase is None or pod.phase == record.phase:
        return []
    if record.phase is None and pod.phase == "Pending":
        return []
    time, source = _phase_time(pod, now)
    if record.phase is None:
        summary = f"Phase {pod.phase} (first observed)"
    else:
        summary = f"Phase {record.phase} → {pod.phase}"
    if pod.reason:
        summary += f" ({pod.reason})"
    return [
        Fact(
            key=make_key(uid, FactType.PHASE_CHANGED, record.phase, pod.phase),
            type=FactType.PHASE_CHANGED,
            time=time,
            summary=summary,
            source=source,
            reason=pod.reason,
            message=kept_message(pod.message, limits),
            from_phase=record.phase,
            to_phase=pod.phase,
            merge=Merge.ADD,
            pod_uid=pod.pod_uid,
        )
    ]


_DISRUPTIONS = {
    "EvictionByEvictionAPI": (FactType.EVICTED, "Evicted through the Eviction API"),
    "TerminationByKubelet": (FactType.EVICTED, "Evicted by the kubelet"),
    "PreemptionByScheduler": (FactType.PREEMPTED, "Preempted by the scheduler"),
    "DeletionByTaintManager": (FactType.TAINT_MANAGER_DELETION, "Deleted by the taint manager"),
}

_FIRST_SIGHT_FALSE = frozenset({"PodScheduled", "DisruptionTarget"})


def _condition_facts(
    record: Record, pod: PodSeen, uid: str, now: datetime, limits: Limits
) -> list[Fact]:
    facts: list[Fact] = []
    for cond in pod.conditions:
        old = record.condition(cond.type)
        if old is not None and (old.status, old.last_transition_time) == (
            cond.status,
            cond.last_transition_time,
        ):
            continue
        if old is None and cond.status != "True" and cond.type not in _FIRST_SIGHT_FALSE:
            continue
        facts.append(_condition_fact(cond, pod, uid, now, limits))
    return facts


def _evicted_facts(
    record: Record, pod: PodSeen, uid: str, now: datetime, limits: Limits
) -> list[Fact]:
    """Evicted, from the pod's reason (a kubelet eviction), at its DisruptionTarget time."""
    if pod.reason != "Evicted" or record.pod_reason == "Evicted":
        return []
    target = next((c for c in pod.conditions if c.type == "DisruptionTarget"), None)
    time = target.last_transition_time if target else None
    return [
        Fact(
            key=make_key(uid, FactType.EVICTED),
            type=FactType.EVICTED,
            time=time or now,
            summary=f"Evicted by the kubelet: {_text(pod.message, limits)}".rstrip(": "),
            source=Source.STATUS if time else Source.OBSERVED,
            reason=pod.reason,
            message=kept_message(pod.message, limits),
            pod_uid=pod.pod_uid,
        )
    ]


def _condition_fact(
    cond: ConditionSeen, pod: PodSeen, uid: str, now: datetime, limits: Limits
) -> Fact:
    time = cond.last_transition_time or now
    source = Source.STATUS if cond.last_transition_time else Source.OBSERVED

    def fact(key: str, fact_type: FactType, summary: str) -> Fact:
        return Fact(
            key=key,
            type=fact_type,
            time=time,
            summary=summary,
            source=source,
            reason=cond.reason,
            message=kept_message(cond.message, limits),
            pod_uid=pod.pod_uid,
        )

    if cond.type == "PodScheduled" and cond.status == "True":
        node = pod.node_name or "an unknown node"
        return fact(
            make_key(uid, FactType.SCHEDULED), FactType.SCHEDULED, f"Scheduled to node {node}"
        )
    if cond.type == "PodReadyToStartContainers" and cond.status == "True":
        return fact(
            make_key(uid, FactType.SANDBOX_READY, cond.last_transition_time),
            FactType.SANDBOX_READY,
            "Pod sandbox ready: network configured, containers can start",
        )
    disruption = _DISRUPTIONS.get(cond.reason or "")
    if cond.type == "DisruptionTarget" and cond.status == "True" and disruption:
        fact_type, text = disruption
        detail = _text(cond.message, limits)
        return fact(make_key(uid, fact_type), fact_type, f"{text}: {detail}" if detail else text)
    summary = f"Condition {cond.type} is {cond.status}"
    if cond.reason:
        summary += f" ({cond.reason})"
    return fact(
        make_key(uid, FactType.CONDITION_CHANGED, cond.type, cond.status, time),
        FactType.CONDITION_CHANGED,
        summary,
    )


def _deletion_facts(
    record: Record,
    pod: PodSeen,
    uid: str,
    deletion: Deletion | None,
    window: DeletionWindow | None,
) -> list[Fact]:
    if deletion is None or window is None or deletion == record.deletion:
        return []
    stamp = deletion.timestamp
    grace = window.grace_seconds
    deadline = format_time(window.deadline)
    finished = pod.phase in ("Succeeded", "Failed")
    if grace == 0 and pod.node_name and not finished:
        # A user's grace 0 (the API server gives 0 itself only to unscheduled or ended pods).
        running = any_running(c.state for c in pod.containers)
        return [
            Fact(
                key=make_key(uid, FactType.FORCE_DELETED, stamp),
                type=FactType.FORCE_DELETED,
                time=window.requested_at,
                summary="Force deleted: grace period 0, containers killed at once"
                if running
                else "Force deleted: grace period 0, no container running",
                source=Source.STATUS,
                pod_uid=pod.pod_uid,
            )
        ]
    if not pod.node_name:
        summary = "Deletion requested before scheduling: the pod is removed at once"
    elif deletion.at_removal and record.phase not in ("Succeeded", "Failed"):
        # The pod's end and its grace-0 removal came in one sight: a request before, unseen.
        summary = "Finished pod removed (grace 0): any deletion request before it was not seen"
    elif grace == 0:
        summary = "Deletion requested after the pod had finished: it is removed at once"
    else:
        summary = f"Deletion requested: grace period {grace}s, SIGKILL deadline {deadline}"
    return [
        Fact(
            key=make_key(uid, FactType.DELETION_REQUESTED, stamp),
            type=FactType.DELETION_REQUESTED,
            time=window.requested_at,
            summary=summary,
            source=Source.STATUS,
            pod_uid=pod.pod_uid,
        )
    ]


# --- Containers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Container:
    """One container of a pod observation, with what its facts are derived from."""

    record: Record
    pod: PodSeen
    c: ContainerSeen
    uid: str
    window: DeletionWindow | None
    now: datetime
    limits: Limits

    @property
    def old(self) -> ContainerRecord | None:
        """What the record holds of this container."""
        return self.record.container(self.c.name)

    @property
    def label(self) -> str:
        """How summaries name it: "container app", "init container migrate", "sidecar x"."""
        return _label(self.c.name, self.c.kind)


def _container_facts(
    record: Record,
    pod: PodSeen,
    c: ContainerSeen,
    uid: str,
    window: DeletionWindow | None,
    now: datetime,
    limits: Limits,
) -> list[Fact]:
    """A container's rules, in the order their facts are reported."""
    seen = _Container(record, pod, c, uid, window, now, limits)
    return _run_facts(seen) + _waiting_facts(seen) + _ready_facts(seen) + _startup_facts(seen)


def _startup_facts(seen: _Container) -> list[Fact]:
    """StartupProbePassed: the kubelet's started flag turned true under a startup probe."""
    c, old = seen.c, seen.old
    old_started = old.started if old else None
    started = c.started is True and old_started is not True and c.state == "running"
    if not (c.startup_probe and started):
        return []
    return [
        Fact(
            key=make_key(seen.uid, c.name, "startup-passed", c.restart_count),
            type=FactType.STARTUP_PROBE_PASSED,
            time=seen.now,
            summary=f"{_cap(seen.label)} passed its startup probe",
            source=Source.OBSERVED,
            container=c.name,
            probe=Probe.STARTUP,
            pod_uid=seen.pod.pod_uid,
        )
    ]


def _run_facts(seen: _Container) -> list[Fact]:
    """Starts, ends and restarts, in the order they happened.

    The last run's start and end, the restart, then the current run's start and end.

    Kubernetes keeps whole seconds and restarts a failing init container at once: two runs
    can share a start and an end time. The run id (from the container ID) tells them apart.
    """
    c, old = seen.c, seen.old
    current_run = c.ended.run_id if c.ended is not None else c.run_id
    last = c.last_ended
    starts = [(last.started_at, last.run_id)] if last else []
    starts.append((c.started_at, current_run))
    known = (old.started_at, old.started_run) if old else (None, None)
    new_starts = _new_runs(starts, *known)
    ended = {(e.finished_at, e.run_id): e for e in (last, c.ended) if e is not None}
    known = (old.finished_at, old.finished_run) if old else (None, None)
    new_ends = _new_runs(list(ended), *known)
    last_start = (last.started_at, last.run_id) if last else None
    last_end = (last.finished_at, last.run_id) if last else None
    before = [_start_fact(seen, *run) for run in new_starts if run == last_start]
    before += [_end_fact(seen, ended[run]) for run in new_ends if run == last_end]
    after = [_start_fact(seen, *run) for run in new_starts if run != last_start]
    after += [_end_fact(seen, ended[run]) for run in new_ends if run != last_end]
    if (
        c.ended is not None
        and c.ended.finished_at is None
        and not (old and old.state == "terminated" and old.restart_count == c.restart_count)
    ):
        after.append(_end_fact(seen, c.ended, fallback=(seen.now, c.restart_count)))
    return before + _restart_facts(seen) + after


def _start_fact(seen: _Container, start: datetime, run: str | None) -> Fact:
    c = seen.c
    current_run = c.ended.run_id if c.ended is not None else c.run_id
    fact_type = (
        FactType.SIDECAR_STARTED if c.kind == ContainerKind.SIDECAR else FactType.CONTAINER_STARTED
    )
    suffix = (
        f" (restart {c.restart_count})"
        if c.restart_count and (start, run) == (c.started_at, current_run)
        else ""
    )
    return Fact(
        key=make_key(seen.uid, c.name, "started", start, run),
        type=fact_type,
        time=start,
        summary=f"{_cap(seen.label)} started{suffix}",
        source=Source.STATUS,
        container=c.name,
        pod_uid=seen.pod.pod_uid,
    )


def _restart_facts(seen: _Container) -> list[Fact]:
    c, old = seen.c, seen.old
    old_restarts = old.restart_count if old else 0
    if c.restart_count <= old_restarts:
        return []
    last = c.last_ended
    when = c.started_at if c.state == "running" else None
    when = when or (last.finished_at if last else None)
    detail = ""
    if last is not None and last.exit_code is not None:
        detail = f"; previous run exit {last.exit_code}"
        if last.reason:
            detail += f" ({last.reason})"
    return [
        Fact(
            key=make_key(seen.uid, c.name, FactType.CONTAINER_RESTARTED),
            type=FactType.CONTAINER_RESTARTED,
            time=when or seen.now,
            summary=f"{_cap(seen.label)} restarted (restart count {c.restart_count}{detail})",
            source=Source.STATUS if when else Source.OBSERVED,
            container=c.name,
            reason=last.reason if last else None,
            message=kept_message(last.message, seen.limits) if last else None,
            exit_code=last.exit_code if last else None,
            signal=signal_of(last.exit_code) if last else None,
            count=c.restart_count - old_restarts,
            last_time=when or seen.now,
            merge=Merge.ADD,
            pod_uid=seen.pod.pod_uid,
        )
    ]


def _waiting_facts(seen: _Container) -> list[Fact]:
    c, old = seen.c, seen.old
    if not (
        c.state == "waiting"
        and c.reason
        and (old is None or old.state != "waiting" or old.reason != c.reason)
    ):
        return []
    last_end = c.last_ended.finished_at if c.last_ended else None
    waited = last_end if c.reason == "CrashLoopBackOff" and last_end else None
    detail = _text(c.message, seen.limits, 120)
    return [
        Fact(
            key=make_key(seen.uid, c.name, "waiting", c.reason),
            type=FactType.CONTAINER_WAITING,
            time=waited or seen.now,
            summary=f"{_cap(seen.label)} waiting: {c.reason}" + (f": {detail}" if detail else ""),
            source=Source.INFERRED if waited else Source.OBSERVED,
            container=c.name,
            reason=c.reason,
            message=kept_message(c.message, seen.limits),
            merge=Merge.ADD,
            pod_uid=seen.pod.pod_uid,
        )
    ]


def _new_runs(
    runs: list[tuple[datetime | None, str | None]],
    known_time: datetime | None,
    known_run: str | None,
) -> list[tuple[datetime, str | None]]:
    """The runs (oldest first, as the pod lists them) not yet in the record.

    A run is known when its time is before the known one, or equal to it with the same or an
    unknown id; every run before the known run is known too.
    """
    fresh: list[tuple[datetime, str | None]] = []
    for time, run in runs:
        if time is None or any(t == time and (run is None or r in (None, run)) for t, r in fresh):
            continue
        if known_time is not None and time <= known_time:
            if time < known_time or run is None or known_run is None or run == known_run:
                fresh.clear()
                continue
        fresh.append((time, run))
    return fresh


def _ready_facts(seen: _Container) -> list[Fact]:
    """ContainerReady, SidecarReady or ContainerNotReady: the ready flag changed.

    Dated by the ContainersReady condition when it changed the same way since the start.
    """
    pod, c, old, uid, label = seen.pod, seen.c, seen.old, seen.uid, seen.label
    old_ready = old.ready if old else False
    if c.ready == old_ready or not (c.ready or c.state == "running"):
        return []
    cond = next((x for x in pod.conditions if x.type == "ContainersReady"), None)
    time, source = seen.now, Source.OBSERVED
    if (
        cond is not None
        and cond.last_transition_time is not None
        and (cond.status == "True") == c.ready
        and (c.started_at is None or cond.last_transition_time >= c.started_at)
    ):
        time, source = cond.last_transition_time, Source.INFERRED
    if c.ready:
        fact_type = (
            FactType.SIDECAR_READY if c.kind == ContainerKind.SIDECAR else FactType.CONTAINER_READY
        )
        summary = f"{_cap(label)} ready"
    else:
        fact_type, summary = FactType.CONTAINER_NOT_READY, f"{_cap(label)} not ready"
    return [
        Fact(
            key=make_key(uid, c.name, "ready" if c.ready else "not-ready", c.restart_count),
            type=fact_type,
            time=time,
            summary=summary,
            source=source,
            container=c.name,
            last_time=time,
            merge=Merge.ADD,
            pod_uid=pod.pod_uid,
        )
    ]


def _end_fact(seen: _Container, end: RunEnd, fallback: tuple[datetime, int] | None = None) -> Fact:
    c, label = seen.c, seen.label
    time = end.finished_at or (fallback[0] if fallback else None)
    assert time is not None
    ident: object = end.finished_at if end.finished_at else f"run{fallback[1] if fallback else 0}"
    code = end.exit_code
    code_text = f"exit {code}" if code is not None else "exit code unknown"
    if end.reason:
        code_text += f" ({end.reason})"
    fact_type = FactType.CONTAINER_TERMINATED
    source = Source.STATUS if end.finished_at else Source.OBSERVED
    signal = signal_of(code)
    summary = f"{_cap(label)} terminated: {code_text}"
    if c.kind == ContainerKind.INIT and code == 0:
        summary = f"{_cap(label)} completed (exit 0)"
    if end.reason == "OOMKilled":
        fact_type, signal = FactType.OOM_KILLED, "KILL"
        summary = f"{_cap(label)} killed by the OOM killer: {code_text}"
    else:
        judged = _judged_end(seen, end, code_text)
        if judged is not None:
            fact_type, source, signal, summary = judged
    run = end.run_id if end.finished_at else None
    return Fact(
        key=make_key(seen.uid, c.name, "terminated", ident, run),
        type=fact_type,
        time=time,
        summary=summary,
        source=source,
        container=c.name,
        reason=end.reason,
        message=kept_message(end.message, seen.limits),
        exit_code=code,
        signal=signal,
        pod_uid=seen.pod.pod_uid,
    )


def _judged_end(
    seen: _Container, end: RunEnd, code_text: str
) -> tuple[FactType, Source, str | None, str] | None:
    """Type, source, signal and summary of a container's end after the deletion request."""
    c, window, label = seen.c, seen.window, seen.label
    if window is None or c.kind == ContainerKind.INIT or end.finished_at is None:
        return None
    failed = any(f.container == c.name for f in seen.record.pre_stop_failures)
    ended = ContainerEnd(
        c.name, True, end.exit_code, end.reason, end.finished_at, c.pre_stop, failed
    )
    judged = judge_container(window, ended, slack_seconds=seen.limits.kill_slack_seconds)
    if judged is None:
        return None
    after = seconds_between(window.requested_at, end.finished_at)
    extended = extension_used(ended, judged.seconds_from_deadline)
    timing = f"T+{after:.1f}s, {window_text(window.grace_seconds, extended)}"
    if judged.verdict is Verdict.EXITED_ON_TERM:
        summary = f"{_cap(label)} exited on SIGTERM: {code_text} at {timing}"
        return FactType.EXITED_ON_TERM, Source.INFERRED, judged.signal, summary
    if judged.verdict is Verdict.KILLED_AFTER_GRACE:
        summary = (
            f"{_cap(label)} SIGKILLed when the grace period ran out (inferred): "
            f"{code_text} at {timing}"
        )
        return FactType.KILLED_AFTER_GRACE, Source.INFERRED, judged.signal, summary
    summary = f"{_cap(label)} terminated after the deletion request: {code_text} at {timing}"
    return FactType.CONTAINER_TERMINATED, Source.STATUS, judged.signal, summary


# --- Events --------------------------------------------------------------------------------

_PROBES = (
    ("liveness probe", Probe.LIVENESS),
    ("readiness probe", Probe.READINESS),
    ("startup probe", Probe.STARTUP),
)
_PULL_WORDS = ("pull", "image", "errimage")
_NODE = re.compile(r" to (\S+)\s*$")
_IMAGE = re.compile(r'image "([^"]+)"')

_Rule = tuple[FactType, Merge, tuple[object, ...], Probe | None]


def _probe_of(message: str) -> Probe | None:
    lowered = message.lower()
    for text, probe in _PROBES:
        if text in lowered:
            return probe
    return None


def _event_rule(ev: EventSeen) -> _Rule | None:
    """(type, merge, key parts after the UID, probe) for an Event; None to ignore it."""
    c = ev.container
    message = ev.message or ""
    lowered = message.lower()
    reason = ev.reason
    if reason == "Scheduled":
        return FactType.SCHEDULED, Merge.ONCE, (), None
    if reason == "FailedScheduling":
        return FactType.FAILED_SCHEDULING, Merge.ADD, (), None
    if reason == "Pulling":
        return FactType.IMAGE_PULLING, Merge.ADD, (c,), None
    if reason == "Pulled":
        return FactType.IMAGE_PULLED, Merge.ADD, (c,), None
    if reason in ("ErrImageNeverPull", "InspectFailed") or (
        reason == "Failed" and any(word in lowered for word in _PULL_WORDS)
    ):
        return FactType.IMAGE_PULL_FAILED, Merge.ADD, (c,), None
    if reason == "BackOff":
        what = "image" if "pulling image" in lowered else "restart"
        return FactType.BACK_OFF, Merge.ADD, (c, what), None
    if reason == "Killing":
        probe = _probe_of(message) if "will be restarted" in lowered else None
        if probe is not None:
            return FactType.LIVENESS_RESTART, Merge.ADD, (c, probe), probe
        return FactType.KILLING_STARTED, Merge.ONCE, (c, ev.first_time), None
    if reason == "Unhealthy":
        probe = _probe_of(message)
        if probe is not None:
            return FactType.PROBE_FAILED, Merge.ADD, (c, probe), probe
    if reason == "FailedPostStartHook":
        return FactType.POST_START_HOOK_FAILED, Merge.ADD, (c,), None
    if reason == "FailedPreStopHook":
        return FactType.PRE_STOP_HOOK_FAILED, Merge.ONCE, (c, ev.first_time), None
    if reason == "Preempted":
        return FactType.PREEMPTED, Merge.ONCE, (), None
    if reason == "Evicted":
        return FactType.EVICTED, Merge.ONCE, (), None
    if reason == "TaintManagerEviction" and lowered.startswith("marking for deletion"):
        return FactType.TAINT_MANAGER_DELETION, Merge.ONCE, (), None
    if ev.type == "Warning" or reason in ("SandboxChanged", "NodeNotReady"):
        return FactType.EVENT_REPORTED, Merge.ADD, (c, reason), None
    return None


def _event_summary(
    record: Record, ev: EventSeen, fact_type: FactType, probe: Probe | None, limits: Limits
) -> str:
    kind = ContainerKind.INIT if ev.init_container else ContainerKind.APP
    known = record.container(ev.container)
    if known is not None:
        kind = next((k for k in ContainerKind if k.value == known.kind), kind)
    label = _label(ev.container, kind) if ev.container else "pod"
    # Without messages, nothing read out of one (image, node, probe text) reaches a summary.
    quoted = ev.message if limits.keeps_messages() else None
    message = _text(quoted, limits)
    image = _IMAGE.search(quoted or "")
    image_text = f" {image.group(1)[:120]}" if image else ""
    node = _NODE.search(quoted or "")
    node_name = node.group(1)[:120] if node else (record.node_name or "?")
    probe_text = message or f"{_cap(probe or 'a')} probe failed"
    texts: dict[str, str] = {
        FactType.SCHEDULED: f"Scheduled to node {node_name}",
        FactType.FAILED_SCHEDULING: f"Scheduling failed: {message}",
        FactType.IMAGE_PULLING: f"Pulling image{image_text} for {label}",
        FactType.IMAGE_PULLED: f"Image{image_text} ready for {label}: {message}",
        FactType.IMAGE_PULL_FAILED: f"Image pull failed for {label}: {message}",
        FactType.BACK_OFF: f"Back-off for {label}: {message}",
        FactType.LIVENESS_RESTART: f"{_cap(label)} restarted by the kubelet: {message}",
        FactType.KILLING_STARTED: f"Kubelet stopping {label}: {message}",
        FactType.PROBE_FAILED: f"{_cap(label)}: {probe_text}",
        FactType.POST_START_HOOK_FAILED: f"postStart hook failed for {label}: {message}",
        FactType.PRE_STOP_HOOK_FAILED: f"preStop hook failed for {label}: {message}",
        FactType.PREEMPTED: f"Preempted: {message}",
        FactType.EVICTED: f"Evicted: {message}",
        FactType.TAINT_MANAGER_DELETION: f"Deleted by the taint manager: {message}",
    }
    text = texts.get(fact_type, f"{ev.type} event {ev.reason} for {label}: {message}")
    return text.rstrip(": ")


def _event_facts(record: Record, ev: EventSeen, limits: Limits) -> list[Fact]:
    seen = record.seen_event(ev.event_id)
    if seen is not None and ev.count <= seen.count:
        return []
    rule = _event_rule(ev)
    if rule is None:
        return []
    fact_type, merge, parts, probe = rule
    uid = uid_of(record, ev.pod_uid)
    count = ev.count - seen.count if seen is not None else ev.count
    return [
        Fact(
            key=make_key(uid, fact_type, *parts),
            type=fact_type,
            time=ev.first_time,
            summary=_event_summary(record, ev, fact_type, probe, limits),
            source=Source.EVENT,
            container=ev.container,
            reason=ev.reason,
            message=kept_message(ev.message, limits),
            probe=probe,
            count=max(1, count),
            last_time=ev.last_time,
            merge=merge,
            pod_uid=ev.pod_uid or record.pod_uid,
        )
    ]


# --- Endpoints and removal -----------------------------------------------------------------


def _flag(value: bool | None) -> str:
    return "?" if value is None else str(value).lower()


def _endpoint_facts(record: Record, ep: EndpointSeen) -> list[Fact]:
    uid = uid_of(record, ep.pod_uid)
    old = record.endpoint(ep.service, ep.address)
    if ep.removed:
        if old is None:
            return []
        return [
            Fact(
                key=make_key(uid, FactType.REMOVED_FROM_ENDPOINTS, ep.service, ep.address),
                type=FactType.REMOVED_FROM_ENDPOINTS,
                time=ep.time,
                summary=f"Removed from the endpoints of Service {ep.service} ({ep.address})",
                source=Source.OBSERVED,
                last_time=ep.time,
                merge=Merge.ADD,
                pod_uid=ep.pod_uid or record.pod_uid,
            )
        ]
    flags = (ep.ready, ep.serving, ep.terminating)
    if old is not None and (old.ready, old.serving, old.terminating) == flags:
        return []
    state = (
        f"ready={_flag(ep.ready)} serving={_flag(ep.serving)} terminating={_flag(ep.terminating)}"
    )
    verb = "Added to" if old is None else "Changed in"
    return [
        Fact(
            key=make_key(
                uid, FactType.ENDPOINT_CHANGED, ep.service, ep.address, *map(_flag, flags)
            ),
            type=FactType.ENDPOINT_CHANGED,
            time=ep.time,
            summary=f"{verb} the endpoints of Service {ep.service} ({ep.address}): {state}",
            source=Source.OBSERVED,
            last_time=ep.time,
            merge=Merge.ADD,
            pod_uid=ep.pod_uid or record.pod_uid,
        )
    ]


def _gone_facts(record: Record, gone: PodGone) -> list[Fact]:
    if record.pod_uid is None or record.removal is not None:
        return []
    uid = uid_of(record, gone.pod_uid)
    if gone.observed:
        return [
            Fact(
                key=make_key(uid, FactType.POD_DELETED),
                type=FactType.POD_DELETED,
                time=gone.time,
                summary="Pod removed from the API",
                source=Source.OBSERVED,
                pod_uid=record.pod_uid,
            )
        ]
    return [
        Fact(
            key=make_key(uid, FactType.DELETED_UNOBSERVED),
            type=FactType.DELETED_UNOBSERVED,
            time=gone.time,
            summary="Pod found missing from the API; its removal was not observed",
            source=Source.OBSERVED,
            pod_uid=record.pod_uid,
        )
    ]
