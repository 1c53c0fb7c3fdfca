"""Termination analysis: how each container ended, and how the pod's life ended.

Pure functions over plain values, tested with tables.

Kubernetes 1.34 behaviour this relies on: ``kubectl delete`` at T with grace G sets
deletionTimestamp = T + G at once; the kubelet sends SIGTERM at T (after preStop, if any) and
SIGKILL at the deadline D = T + G, granting a one-time 2 s extension when a preStop hook is
still running at D. No Event reports the SIGKILL: it is inferred from exit code 137 at about D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from .clock import seconds_between, shift

PRE_STOP_EXTENSION_SECONDS = 2.0
EARLY_TOLERANCE_SECONDS = 1.0


class Verdict(StrEnum):
    """How one container ended after the deletion request."""

    EXITED_ON_TERM = "ExitedOnTerm"
    EXITED_WITH_ERROR = "ExitedWithError"
    KILLED_AFTER_GRACE = "KilledAfterGrace"
    KILLED_BEFORE_DEADLINE = "KilledBeforeDeadline"
    OOM_KILLED = "OOMKilled"
    UNKNOWN = "Unknown"


class Outcome(StrEnum):
    """How the pod's life ended (the record's ``outcome``)."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    GRACEFUL_SHUTDOWN = "GracefulShutdown"
    KILLED_AFTER_GRACE = "KilledAfterGrace"
    OOM_KILLED = "OOMKilled"
    EVICTED = "Evicted"
    PREEMPTED = "Preempted"
    TAINT_MANAGER_DELETION = "TaintManagerDeletion"
    FORCE_DELETED = "ForceDeleted"
    DELETED = "Deleted"
    DELETED_UNOBSERVED = "DeletedUnobserved"


DISRUPTION_OUTCOMES: dict[str, Outcome] = {
    "EvictionByEvictionAPI": Outcome.EVICTED,
    "TerminationByKubelet": Outcome.EVICTED,
    "Evicted": Outcome.EVICTED,
    "PreemptionByScheduler": Outcome.PREEMPTED,
    "Preempted": Outcome.PREEMPTED,
    "DeletionByTaintManager": Outcome.TAINT_MANAGER_DELETION,
    "TaintManagerEviction": Outcome.TAINT_MANAGER_DELETION,
}


class WindowSource(StrEnum):
    """Where a deletion window's T comes from."""

    REQUEST = "request"  # the pod's deletion metadata: T = deletionTimestamp - grace
    # Only the API server's final grace-0 removal of a finished pod was seen (it rewrites the
    # deletion metadata to its own time): there is no request to judge the containers against.
    REMOVAL = "removal"
    # As REMOVAL, but the kubelet's Killing Event shows the containers were stopped for a request
    # the operator did not see: T is that Event, the grace period is not known.
    KILLING = "killing"


@dataclass(frozen=True, slots=True)
class DeletionWindow:
    """A deletion request: requested at T with grace G, deadline D = T + G."""

    requested_at: datetime
    grace_seconds: int
    source: WindowSource = WindowSource.REQUEST

    @property
    def deadline(self) -> datetime:
        """D = T + G."""
        return shift(self.requested_at, self.grace_seconds) or self.requested_at


@dataclass(frozen=True, slots=True)
class ContainerEnd:
    """The latest known state of an app container or sidecar."""

    name: str
    terminated: bool
    exit_code: int | None
    reason: str | None
    finished_at: datetime | None
    pre_stop: bool = False
    pre_stop_failed: bool = False


def extension_used(end: ContainerEnd, seconds_from_deadline: float | None) -> bool:
    """Whether the kubelet's one-time preStop extension shows in a container's kill.

    It is granted only to a preStop hook still running at the deadline, which only the hook's
    failure shows (FailedPreStopHook: the hook was killed). The time of the kill does not: on a
    busy node a kill after a hook that ended in time lands a second or two late too, as late
    as an extended one (times have one-second precision). Without that Event the evidence does
    not mention the extension.
    """
    del seconds_from_deadline  # kept for the callers: not proof either way (see above)
    return end.pre_stop and end.exit_code == 137 and end.pre_stop_failed


def window_text(grace_seconds: int, extended: bool) -> str:
    """The deadline as the evidence states it, with the preStop extension when it was used."""
    text = f"deadline T+{grace_seconds}s"
    if extended:
        extension = f"{PRE_STOP_EXTENSION_SECONDS:.0f}s"
        text += f" + {extension} preStop extension (the hook was still running)"
    return text


@dataclass(frozen=True, slots=True)
class Judgement:
    """How one container ended relative to the deletion request, with the evidence."""

    name: str
    verdict: Verdict
    signal: str | None
    exit_code: int | None
    reason: str | None
    finished_at: datetime | None
    seconds_after_request: float | None
    seconds_from_deadline: float | None
    evidence: str


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:+.1f}s"


def judge_container(
    window: DeletionWindow, end: ContainerEnd, *, slack_seconds: float = 2.0
) -> Judgement | None:
    """Classify one container's end against a deletion request.

    Args:
        window: The deletion request.
        end: The container's latest state.
        slack_seconds: Tolerance after the deadline (and after the preStop extension).

    Returns:
        The judgement, or None when the container has not ended or ended before the request
        (more than a second before T: it finished on its own, the deletion did not end it),
        or when there is no request to judge against (WindowSource.REMOVAL).
    """
    if not end.terminated or window.source is WindowSource.REMOVAL:
        return None
    after = seconds_between(window.requested_at, end.finished_at)
    if after is not None and after < -EARLY_TOLERANCE_SECONDS:
        return None
    # With the request unseen (KILLING) the deadline is not known: the kubelet sends SIGKILL only
    # at the deadline, so an exit 137 after it began stopping the container is that kill.
    known_deadline = window.source is WindowSource.REQUEST
    from_deadline = seconds_between(window.deadline, end.finished_at) if known_deadline else None
    extension = PRE_STOP_EXTENSION_SECONDS if end.pre_stop else 0.0
    code = end.exit_code
    facts = _end_text(window, end, after, from_deadline)

    def judged(verdict: Verdict, signal: str | None, note: str) -> Judgement:
        return Judgement(
            name=end.name,
            verdict=verdict,
            signal=signal,
            exit_code=code,
            reason=end.reason,
            finished_at=end.finished_at,
            seconds_after_request=after,
            seconds_from_deadline=from_deadline,
            evidence=f"{end.name}: {facts}: {note}",
        )

    if end.reason == "OOMKilled":
        return judged(Verdict.OOM_KILLED, "KILL", "killed by the kernel's OOM killer")
    unknown_time = known_deadline and from_deadline is None
    if code is None or unknown_time or end.reason == "ContainerStatusUnknown":
        return judged(Verdict.UNKNOWN, None, "the end is not known")
    if code == 137:
        if from_deadline is not None and from_deadline < -EARLY_TOLERANCE_SECONDS:
            return judged(
                Verdict.KILLED_BEFORE_DEADLINE, "KILL", "SIGKILL (inferred) before the deadline"
            )
        if from_deadline is not None and from_deadline > extension + slack_seconds:
            note = "SIGKILL after the grace period (inferred; later than the usual window)"
        else:
            note = "SIGKILL after the grace period (inferred)"
        return judged(Verdict.KILLED_AFTER_GRACE, "KILL", note)
    if code in (0, 143):
        return judged(Verdict.EXITED_ON_TERM, "TERM", "exited on SIGTERM (inferred)")
    return judged(Verdict.EXITED_WITH_ERROR, None, "exited with an error after the request")


def _end_text(
    window: DeletionWindow, end: ContainerEnd, after: float | None, from_deadline: float | None
) -> str:
    """The exit, its reason and its time against the request, as the evidence states them."""
    code = end.exit_code
    text = f"exit {code if code is not None else '?'}"
    if end.reason:
        text += f" ({end.reason})"
    if window.source is WindowSource.KILLING:
        unseen = "(T: the kubelet's Killing Event; the request was not seen)"
        return text + f" at T{_fmt(after)} {unseen}"
    deadline = window_text(window.grace_seconds, extension_used(end, from_deadline))
    return text + f" at T{_fmt(after)}, {deadline}"


@dataclass(frozen=True, slots=True)
class EndInputs:
    """What the outcome depends on."""

    phase: str | None
    disruption_reason: str | None
    deletion: DeletionWindow | None
    scheduled: bool
    containers: tuple[ContainerEnd, ...]
    last_end_reason: str | None
    removal_observed: bool | None


@dataclass(frozen=True, slots=True)
class Analysis:
    """The outcome, the termination verdict and its evidence, per-container judgements."""

    outcome: Outcome | None
    verdict: str | None
    evidence: str | None
    judgements: tuple[Judgement, ...]


def _deletion_outcome(judgements: Sequence[Judgement]) -> Outcome:
    verdicts = {j.verdict for j in judgements}
    if Verdict.OOM_KILLED in verdicts:
        return Outcome.OOM_KILLED
    if Verdict.KILLED_AFTER_GRACE in verdicts:
        return Outcome.KILLED_AFTER_GRACE
    if verdicts == {Verdict.EXITED_ON_TERM}:
        return Outcome.GRACEFUL_SHUTDOWN
    return Outcome.FAILED


def analyse(inputs: EndInputs, *, slack_seconds: float = 2.0) -> Analysis:
    """Decide the pod's outcome; precedence, first match wins, once the pod has ended.

    1. a disruption reason (DisruptionTarget condition, pod reason Evicted, Preempted Event):
       Evicted, Preempted, TaintManagerDeletion;
    2. deletion with grace 0 of a scheduled pod still running: ForceDeleted (the API server
       deletes a pod that already finished with grace 0 too: that keeps its own outcome);
    3. deletion while containers ran (some container ended at or after T − 1 s): OOMKilled if
       any was OOM-killed, else KilledAfterGrace if any was killed at the deadline, else
       GracefulShutdown if all exited on TERM (exit 0/143), else Failed; if a container was
       still running when the pod vanished unobserved: DeletedUnobserved;
    4. the pod's own end: Succeeded, or Failed (OOMKilled when the last container end was an
       OOM kill);
    5. removed from the API with nothing else known: Deleted (removal seen) or
       DeletedUnobserved (found missing).

    The pod has ended when its phase is Succeeded or Failed, it was removed from the API, or
    it is being deleted and every app container and sidecar has terminated.

    Args:
        inputs: The facts the outcome depends on.
        slack_seconds: See judge_container.

    Returns:
        The analysis; outcome None while the pod has not ended.
    """
    judgements: tuple[Judgement, ...] = ()
    if inputs.deletion is not None:
        judged = (
            judge_container(inputs.deletion, end, slack_seconds=slack_seconds)
            for end in inputs.containers
        )
        judgements = tuple(j for j in judged if j is not None)
    all_terminated = bool(inputs.containers) and all(c.terminated for c in inputs.containers)
    ended = (
        inputs.phase in ("Succeeded", "Failed")
        or inputs.removal_observed is not None
        or (inputs.deletion is not None and all_terminated)
    )
    evidence = "; ".join(j.evidence for j in judgements) or None
    if not ended:
        return Analysis(None, None, evidence, judgements)
    outcome = _decide(inputs, judgements, all_terminated)
    verdict = str(outcome) if inputs.deletion is not None or inputs.disruption_reason else None
    if outcome is Outcome.FORCE_DELETED:
        evidence = "deletionGracePeriodSeconds 0: containers killed without a grace period"
    elif outcome in (Outcome.EVICTED, Outcome.PREEMPTED, Outcome.TAINT_MANAGER_DELETION):
        reason = f"disruption reason {inputs.disruption_reason}"
        evidence = f"{reason}; {evidence}" if evidence else reason
    elif outcome is Outcome.DELETED_UNOBSERVED and evidence is None:
        evidence = "the pod was found missing; its end was not observed"
    return Analysis(outcome, verdict, evidence, judgements)


def _decide(inputs: EndInputs, judgements: tuple[Judgement, ...], all_terminated: bool) -> Outcome:
    disruption = DISRUPTION_OUTCOMES.get(inputs.disruption_reason or "")
    if disruption is not None:
        return disruption
    deletion = inputs.deletion
    ended_before_deletion = all_terminated and not judgements
    if (
        deletion is not None
        and deletion.source is WindowSource.REQUEST
        and deletion.grace_seconds == 0
        and inputs.scheduled
        and not ended_before_deletion
    ):
        # A pod that had already finished is deleted with grace 0 by the API server itself.
        return Outcome.FORCE_DELETED
    if judgements:
        if inputs.removal_observed is False and not all_terminated:
            return Outcome.DELETED_UNOBSERVED
        return _deletion_outcome(judgements)
    if inputs.phase == "Succeeded":
        return Outcome.SUCCEEDED
    if inputs.phase == "Failed":
        if inputs.last_end_reason == "OOMKilled":
            return Outcome.OOM_KILLED
        return Outcome.FAILED
    if inputs.removal_observed is False:
        return Outcome.DELETED_UNOBSERVED
    return Outcome.DELETED
