"""Termination analysis, as tables: container judgements and the pod's outcome."""

from __future__ import annotations

import pytest

from podtrail.core.termination import (
    ContainerEnd,
    DeletionWindow,
    EndInputs,
    Outcome,
    Verdict,
    WindowSource,
    analyse,
    judge_container,
)

from .builders import at

T = 100.0


def window(grace: int = 30) -> DeletionWindow:
    return DeletionWindow(at(T), grace)


def end(
    exit_code: int | None,
    finished: float | None,
    reason: str | None = None,
    pre_stop: bool = False,
    terminated: bool = True,
    name: str = "app",
) -> ContainerEnd:
    return ContainerEnd(
        name=name,
        terminated=terminated,
        exit_code=exit_code,
        reason=reason,
        finished_at=at(finished) if finished is not None else None,
        pre_stop=pre_stop,
    )


@pytest.mark.parametrize(
    ("grace", "container", "verdict", "signal"),
    [
        # exits on TERM before the deadline
        (30, end(143, T + 2, "Error"), Verdict.EXITED_ON_TERM, "TERM"),
        (30, end(0, T + 0.5, "Completed"), Verdict.EXITED_ON_TERM, "TERM"),
        (30, end(0, T - 0.5, "Completed"), Verdict.EXITED_ON_TERM, "TERM"),
        # another exit code before the deadline
        (30, end(1, T + 3, "Error"), Verdict.EXITED_WITH_ERROR, None),
        # SIGKILL at the deadline, no preStop: D - 1 s .. D + slack
        (30, end(137, T + 30, "Error"), Verdict.KILLED_AFTER_GRACE, "KILL"),
        (30, end(137, T + 29, "Error"), Verdict.KILLED_AFTER_GRACE, "KILL"),
        (30, end(137, T + 31.5, "Error"), Verdict.KILLED_AFTER_GRACE, "KILL"),
        # the machine-facts case: preStop sleep 20, grace 3 → finishedAt = T + G + 2 s
        (3, end(137, T + 5, "Error", pre_stop=True), Verdict.KILLED_AFTER_GRACE, "KILL"),
        # a later kill still counts (noted as late in the evidence)
        (3, end(137, T + 20, "Error"), Verdict.KILLED_AFTER_GRACE, "KILL"),
        # 137 well before the deadline: not the grace-period kill
        (30, end(137, T + 5, "Error"), Verdict.KILLED_BEFORE_DEADLINE, "KILL"),
        # OOM beats everything
        (30, end(137, T + 30, "OOMKilled"), Verdict.OOM_KILLED, "KILL"),
        (30, end(137, T + 2, "OOMKilled"), Verdict.OOM_KILLED, "KILL"),
        # unknowable ends
        (30, end(None, T + 2), Verdict.UNKNOWN, None),
        (30, end(137, T + 2, "ContainerStatusUnknown"), Verdict.UNKNOWN, None),
    ],
)
def test_judge_container(
    grace: int, container: ContainerEnd, verdict: Verdict, signal: str | None
) -> None:
    judged = judge_container(window(grace), container)
    assert judged is not None
    assert judged.verdict is verdict
    assert judged.signal == signal
    assert container.name in judged.evidence


@pytest.mark.parametrize(
    "container",
    [
        end(0, T - 5, "Completed"),  # finished on its own before the request
        end(None, None, terminated=False),  # still running
    ],
)
def test_judge_container_ignores_ends_before_the_request(container: ContainerEnd) -> None:
    assert judge_container(window(), container) is None


def test_judgement_evidence_has_times_relative_to_request_and_deadline() -> None:
    judged = judge_container(window(3), end(137, T + 5, "Error", pre_stop=True))
    assert judged is not None
    assert judged.seconds_after_request == 5.0
    assert judged.seconds_from_deadline == 2.0
    assert "T+5.0s" in judged.evidence
    assert "deadline T+3s" in judged.evidence
    assert "preStop extension" not in judged.evidence  # no FailedPreStopHook: not claimed


@pytest.mark.parametrize(
    ("container", "extended"),
    [
        # a 1 s preStop hook that ended in time: the kill at the deadline, no extension
        (end(137, T + 3, "Error", pre_stop=True), False),
        (end(137, T + 4, "Error", pre_stop=True), False),  # D + 1: rounding, not the extension
        # 2 s late, as an extended kill, but no failure reported: a busy node's late kill after
        # a hook that ended in time looks the same, so nothing is claimed
        (end(137, T + 5, "Error", pre_stop=True), False),
        # the hook's failure was reported (it was killed): the extension, whatever the time
        (
            ContainerEnd("app", True, 137, "Error", at(T + 3), pre_stop=True, pre_stop_failed=True),
            True,
        ),
        # no hook, or no kill: nothing to extend
        (end(137, T + 5, "Error"), False),
        (end(0, T + 5, "Completed", pre_stop=True), False),
        (end(143, T + 1, "Error", pre_stop=True), False),
    ],
)
def test_the_evidence_names_the_prestop_extension_only_when_it_was_used(
    container: ContainerEnd, extended: bool
) -> None:
    judged = judge_container(window(3), container)
    assert judged is not None
    assert ("preStop extension" in judged.evidence) is extended, judged.evidence
    assert "deadline T+3s" in judged.evidence


def test_late_kill_is_noted() -> None:
    judged = judge_container(window(3), end(137, T + 20, "Error"))
    assert judged is not None and "later than the usual window" in judged.evidence


def inputs(
    *,
    phase: str | None = "Running",
    disruption: str | None = None,
    grace: int | None = 30,
    scheduled: bool = True,
    containers: tuple[ContainerEnd, ...] = (),
    last_reason: str | None = None,
    removal: bool | None = None,
) -> EndInputs:
    return EndInputs(
        phase=phase,
        disruption_reason=disruption,
        deletion=window(grace) if grace is not None else None,
        scheduled=scheduled,
        containers=containers,
        last_end_reason=last_reason,
        removal_observed=removal,
    )


TERM_EXIT = end(143, T + 1, "Error")
KILLED = end(137, T + 30, "Error")
OOM = end(137, T + 3, "OOMKilled")
RUNNING = end(None, None, terminated=False, name="other")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # still alive: no outcome
        (inputs(grace=None, containers=(RUNNING,)), None),
        (inputs(containers=(RUNNING,)), None),
        # the pod's own end
        (inputs(phase="Succeeded", grace=None), Outcome.SUCCEEDED),
        (inputs(phase="Failed", grace=None), Outcome.FAILED),
        (inputs(phase="Failed", grace=None, last_reason="OOMKilled"), Outcome.OOM_KILLED),
        # deletion while running
        (inputs(containers=(TERM_EXIT,)), Outcome.GRACEFUL_SHUTDOWN),
        (inputs(phase="Failed", containers=(TERM_EXIT,)), Outcome.GRACEFUL_SHUTDOWN),
        (inputs(phase="Failed", containers=(KILLED,)), Outcome.KILLED_AFTER_GRACE),
        (inputs(phase="Failed", containers=(TERM_EXIT, KILLED)), Outcome.KILLED_AFTER_GRACE),
        (inputs(phase="Failed", containers=(KILLED, OOM)), Outcome.OOM_KILLED),
        (inputs(phase="Failed", containers=(end(2, T + 1, "Error"),)), Outcome.FAILED),
        # disruption reasons come first
        (
            inputs(phase="Failed", disruption="EvictionByEvictionAPI", containers=(KILLED,)),
            Outcome.EVICTED,
        ),
        (inputs(phase="Failed", disruption="TerminationByKubelet", grace=None), Outcome.EVICTED),
        (inputs(phase="Failed", disruption="Evicted", grace=None), Outcome.EVICTED),
        (inputs(removal=True, disruption="PreemptionByScheduler"), Outcome.PREEMPTED),
        (inputs(removal=True, disruption="DeletionByTaintManager"), Outcome.TAINT_MANAGER_DELETION),
        # an unknown disruption reason does not decide
        (
            inputs(phase="Failed", disruption="SomethingNew", containers=(KILLED,)),
            Outcome.KILLED_AFTER_GRACE,
        ),
        # force deletion (scheduled pods only: unscheduled pods always get grace 0)
        (inputs(grace=0, removal=True), Outcome.FORCE_DELETED),
        (inputs(grace=0, removal=True, scheduled=False, phase="Pending"), Outcome.DELETED),
        # deletion after the pod had already finished: its own end stands
        (
            inputs(phase="Succeeded", containers=(end(0, T - 50, "Completed"),), removal=True),
            Outcome.SUCCEEDED,
        ),
        # the API server deletes a finished pod with grace 0: not a force deletion
        (
            inputs(
                phase="Succeeded", grace=0, containers=(end(0, T - 9, "Completed"),), removal=True
            ),
            Outcome.SUCCEEDED,
        ),
        (
            inputs(phase="Failed", grace=0, containers=(end(3, T - 9, "Error"),), removal=True),
            Outcome.FAILED,
        ),
        # removed without any end seen
        (inputs(grace=None, removal=True), Outcome.DELETED),
        (inputs(grace=None, removal=False), Outcome.DELETED_UNOBSERVED),
        (inputs(removal=False, containers=(TERM_EXIT, RUNNING)), Outcome.DELETED_UNOBSERVED),
        (inputs(phase="Succeeded", grace=None, removal=False), Outcome.SUCCEEDED),
        (inputs(removal=False, containers=(KILLED,)), Outcome.KILLED_AFTER_GRACE),
    ],
)
def test_outcome_precedence(case: EndInputs, expected: Outcome | None) -> None:
    assert analyse(case).outcome == expected


def test_verdict_and_evidence_only_with_a_termination() -> None:
    ended = analyse(inputs(phase="Failed", containers=(KILLED,)))
    assert ended.verdict == "KilledAfterGrace"
    assert ended.evidence is not None and "exit 137" in ended.evidence
    own_end = analyse(inputs(phase="Succeeded", grace=None))
    assert own_end.verdict is None
    forced = analyse(inputs(grace=0, removal=True))
    assert forced.evidence is not None and "grace" in forced.evidence


UNSEEN = DeletionWindow(at(T), 0, WindowSource.KILLING)


@pytest.mark.parametrize(
    ("container", "verdict", "signal"),
    [
        (end(0, T, "Completed"), Verdict.EXITED_ON_TERM, "TERM"),
        (end(143, T + 4, "Error"), Verdict.EXITED_ON_TERM, "TERM"),
        # the grace period is not known: any kill after the Killing Event is at the deadline
        (end(137, T + 0.5, "Error"), Verdict.KILLED_AFTER_GRACE, "KILL"),
        (end(137, T + 300, "Error"), Verdict.KILLED_AFTER_GRACE, "KILL"),
        (end(137, T + 3, "OOMKilled"), Verdict.OOM_KILLED, "KILL"),
        (end(2, T + 1, "Error"), Verdict.EXITED_WITH_ERROR, None),
        (end(None, T + 1, "ContainerStatusUnknown"), Verdict.UNKNOWN, None),
    ],
)
def test_judged_from_the_killing_event_when_the_request_was_not_seen(
    container: ContainerEnd, verdict: Verdict, signal: str | None
) -> None:
    judged = judge_container(UNSEEN, container)
    assert judged is not None
    assert (judged.verdict, judged.signal) == (verdict, signal)
    assert judged.seconds_from_deadline is None
    assert "T: the kubelet's Killing Event; the request was not seen" in judged.evidence
    assert "deadline" not in judged.evidence


def test_an_end_before_the_killing_event_is_not_judged() -> None:
    assert judge_container(UNSEEN, end(0, T - 2, "Completed")) is None


@pytest.mark.parametrize("finished", [T - 5, T - 0.5, T])
def test_a_removal_alone_is_no_request_to_judge_by(finished: float) -> None:
    removal = DeletionWindow(at(T), 0, WindowSource.REMOVAL)
    container = end(0, finished, "Completed")
    assert judge_container(removal, container) is None
    seen_at_removal = EndInputs(
        phase="Succeeded",
        disruption_reason=None,
        deletion=removal,
        scheduled=True,
        containers=(container,),
        last_end_reason="Completed",
        removal_observed=None,
    )
    # Not a force deletion: the API server removes a finished pod with grace 0 itself.
    assert analyse(seen_at_removal).outcome is Outcome.SUCCEEDED
