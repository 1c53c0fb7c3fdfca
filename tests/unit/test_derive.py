"""Derive rules as a table: a record built from earlier observations + one observation →
the new facts (type, source and the fields that matter)."""

from __future__ import annotations

from typing import Any

import pytest

from podtrail import core

from .builders import (
    NAMESPACE,
    POD,
    UID,
    at,
    condition,
    container,
    endpoint_slice,
    event,
    pod,
    running,
    running_conditions,
    terminated,
    terminated_state,
    waiting,
)
from .scenarios import Steps, play


def P(**fields: Any) -> core.PodSeen:
    return core.observe_pod(pod(**fields))


def E(*args: Any, **fields: Any) -> core.EventSeen:
    seen = core.observe_event(event(*args, **fields))
    assert seen is not None
    return seen


RUNNING = P(phase="Running", conditions=running_conditions(), statuses=[running()])
PRESTOP = [container(pre_stop=["sleep", "20"])]
RUNNING_PRESTOP = P(
    phase="Running", containers=PRESTOP, conditions=running_conditions(), statuses=[running()]
)
MEMBER = (POD, UID, "10.244.1.7")

CASES: list[tuple[str, Steps, core.Observation, list[dict[str, Any]]]] = [
    (
        "first sight of a pending pod",
        [],
        P(node=None, conditions=[condition("PodScheduled", "False", 0, "Unschedulable", "0/1")]),
        [
            {"type": "Created", "source": "status", "time": at(0)},
            {"type": "ConditionChanged", "reason": "Unschedulable"},
        ],
    ),
    (
        "scheduled via the condition",
        [P(node=None)],
        P(conditions=[condition("PodScheduled", "True", 1)]),
        [{"type": "Scheduled", "source": "status", "time": at(1)}],
    ),
    (
        "scheduled via the Event, after the condition: nothing new",
        [P(conditions=[condition("PodScheduled", "True", 1)])],
        E("Scheduled", "Successfully assigned shop/web-0 to worker-1", first=1),
        [],
    ),
    (
        "sandbox ready",
        [P()],
        P(conditions=[condition("PodReadyToStartContainers", "True", 3)]),
        [{"type": "SandboxReady", "time": at(3)}],
    ),
    (
        "phase Pending → Running, time from the container start",
        [P(conditions=running_conditions(), statuses=[running(ready=False)])],
        P(phase="Running", conditions=running_conditions(), statuses=[running(ready=False)]),
        [{"type": "PhaseChanged", "source": "inferred", "time": at(10), "to_phase": "Running"}],
    ),
    (
        "container waiting then started",
        [P(statuses=[waiting()])],
        P(statuses=[running(started_at=10, ready=False)]),
        [{"type": "ContainerStarted", "container": "app", "time": at(10), "source": "status"}],
    ),
    (
        "ready via ContainersReady",
        [P(phase="Running", statuses=[running(ready=False)])],
        P(phase="Running", conditions=running_conditions(ready=12), statuses=[running()]),
        [
            {"type": "ConditionChanged", "reason": None},
            {"type": "ConditionChanged", "reason": None},
            {"type": "ConditionChanged", "reason": None},
            {"type": "SandboxReady"},
            {"type": "Scheduled"},
            {"type": "ContainerReady", "time": at(12), "source": "inferred"},
        ],
    ),
    (
        "crash: terminated, restarted, waiting in back-off",
        [RUNNING],
        P(
            phase="Running",
            conditions=running_conditions(),
            statuses=[
                waiting(
                    reason="CrashLoopBackOff",
                    restart_count=1,
                    last=terminated_state(2, 10, 40),
                )
            ],
        ),
        [
            {"type": "ContainerTerminated", "exit_code": 2, "time": at(40)},
            {"type": "ContainerRestarted", "count": 1, "exit_code": 2},
            {"type": "ContainerWaiting", "reason": "CrashLoopBackOff", "source": "inferred"},
        ],
    ),
    (
        "OOM kill outside any deletion",
        [RUNNING],
        P(
            phase="Running",
            statuses=[terminated(exit_code=137, reason="OOMKilled", finished_at=50)],
        ),
        [{"type": "OOMKilled", "signal": "KILL", "time": at(50)}],
    ),
    (
        "deletion requested: time is deletionTimestamp minus the grace",
        [RUNNING],
        P(phase="Running", statuses=[running()], deleted_at=100, grace=30),
        [{"type": "DeletionRequested", "time": at(100), "source": "status"}],
    ),
    (
        "force deletion",
        [RUNNING],
        P(phase="Running", statuses=[running()], deleted_at=100, grace=0),
        [{"type": "ForceDeleted", "time": at(100)}],
    ),
    (
        "exit 143 before the deadline",
        [RUNNING, P(phase="Running", statuses=[running()], deleted_at=100, grace=30)],
        P(phase="Running", statuses=[terminated(exit_code=143, finished_at=101)], deleted_at=100),
        [{"type": "ExitedOnTerm", "signal": "TERM", "source": "inferred", "exit_code": 143}],
    ),
    (
        "exit 137 at T + G + 2 s with a preStop hook",
        [
            RUNNING_PRESTOP,
            P(phase="Running", containers=PRESTOP, statuses=[running()], deleted_at=100, grace=3),
        ],
        P(
            phase="Failed",
            containers=PRESTOP,
            statuses=[terminated(exit_code=137, finished_at=105)],
            deleted_at=100,
            grace=3,
        ),
        [
            {"type": "PhaseChanged", "to_phase": "Failed", "time": at(105)},
            {"type": "KilledAfterGrace", "signal": "KILL", "source": "inferred", "time": at(105)},
        ],
    ),
    (
        "Killing Event at the request",
        [RUNNING],
        E("Killing", "Stopping container app", first=100, container="app"),
        [{"type": "KillingStarted", "source": "event", "container": "app", "time": at(100)}],
    ),
    (
        "liveness restart",
        [RUNNING],
        E(
            "Killing",
            "Container app failed liveness probe, will be restarted",
            first=70,
            container="app",
        ),
        [{"type": "LivenessRestart", "probe": "liveness"}],
    ),
    (
        "readiness failures aggregated by Event count",
        [RUNNING],
        E(
            "Unhealthy",
            "Readiness probe failed: 503",
            first=20,
            last=80,
            count=13,
            container="app",
            kind="Warning",
        ),
        [{"type": "ProbeFailed", "probe": "readiness", "count": 13, "last_time": at(80)}],
    ),
    (
        "preStop failure",
        [RUNNING_PRESTOP],
        E("FailedPreStopHook", "PreStopHook failed", first=105, container="app", kind="Warning"),
        [{"type": "PreStopHookFailed", "time": at(105)}],
    ),
    (
        "postStart failure",
        [RUNNING],
        E("FailedPostStartHook", "PostStartHook failed", first=11, container="app", kind="Warning"),
        [{"type": "PostStartHookFailed"}],
    ),
    (
        "image pull failure and back-off",
        [P(statuses=[waiting()])],
        E("BackOff", 'Back-off pulling image "x"', first=8, count=4, container="app"),
        [{"type": "BackOff", "count": 4}],
    ),
    (
        "Created and Started Events add nothing (the status has exact times)",
        [RUNNING],
        E("Started", "Started container app", first=10, container="app"),
        [],
    ),
    (
        "unknown Warning Events are kept generically",
        [RUNNING],
        E("FailedMount", "MountVolume.SetUp failed", first=3, kind="Warning"),
        [{"type": "EventReported", "reason": "FailedMount"}],
    ),
    (
        "unknown Normal Events are ignored",
        [RUNNING],
        E("SomethingHappened", "fine", first=3),
        [],
    ),
    (
        "endpoint terminating, observed time",
        [
            RUNNING,
            *core.observe_endpoint_slice_change(
                None, endpoint_slice(members=[(*MEMBER, True, True, False)]), now=at(13)
            ),
        ],
        core.EndpointSeen(
            NAMESPACE, POD, UID, "web", "10.244.1.7", False, True, True, False, at(100.5)
        ),
        [{"type": "EndpointChanged", "source": "observed", "time": at(100.5)}],
    ),
    (
        "endpoint removed",
        [
            RUNNING,
            *core.observe_endpoint_slice_change(
                None, endpoint_slice(members=[(*MEMBER, True, True, False)]), now=at(13)
            ),
        ],
        core.EndpointSeen(
            NAMESPACE, POD, UID, "web", "10.244.1.7", None, None, None, True, at(103)
        ),
        [{"type": "RemovedFromEndpoints", "source": "observed"}],
    ),
    (
        "removal seen",
        [RUNNING],
        core.PodGone(NAMESPACE, POD, UID, at(200), True),
        [{"type": "PodDeleted", "time": at(200), "source": "observed"}],
    ),
    (
        "removal found later",
        [RUNNING],
        core.PodGone(NAMESPACE, POD, None, at(200), False),
        [{"type": "DeletedUnobserved", "source": "observed"}],
    ),
    (
        "an Event about an older pod instance is ignored",
        [RUNNING],
        E("Killing", "Stopping container app", first=100, container="app", uid="older-uid"),
        [],
    ),
    (
        "a PodGone for another UID is ignored",
        [RUNNING],
        core.PodGone(NAMESPACE, POD, "older-uid", at(200), True),
        [],
    ),
]


@pytest.mark.parametrize(
    ("name", "before", "observation", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_derive_rule(
    name: str, before: Steps, observation: core.Observation, expected: list[dict[str, Any]]
) -> None:
    status, _ = play(before)
    step = core.advance(status, observation, now=at(5000))
    facts = sorted(step.facts, key=lambda f: (f.type, f.key))
    wanted = sorted(expected, key=lambda e: e["type"])
    assert [f.type for f in facts] == [e["type"] for e in wanted]
    for fact, fields in zip(facts, wanted, strict=True):
        for field, value in fields.items():
            assert getattr(fact, field) == value, (fact, field)


def test_terminal_flag_only_for_the_end_of_the_pod() -> None:
    status, _ = play([RUNNING])
    deletion = core.advance(
        status, P(phase="Running", statuses=[running()], deleted_at=100), now=at(5000)
    )
    assert deletion.facts and not deletion.terminal, "steps of a termination share a window"
    finished = core.advance(
        deletion.status,
        P(phase="Succeeded", statuses=[terminated(exit_code=0, finished_at=101)], deleted_at=100),
        now=at(5000),
    )
    assert finished.terminal
    probe = core.advance(
        status,
        E("Unhealthy", "Readiness probe failed: x", first=20, container="app", kind="Warning"),
        now=at(5000),
    )
    assert probe.facts and not probe.terminal


def test_fact_as_log_is_flat_and_json_friendly() -> None:
    step = core.advance(None, RUNNING, now=at(5000))
    for fact in step.facts:
        line = fact.as_log()
        assert line["fact"] == fact.type and line["key"] == fact.key
        assert all(isinstance(v, str | int | float | bool) for v in line.values())
