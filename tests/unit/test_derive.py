"""Derive rules as a table: a record built from earlier observations + one observation →
the new facts (type, source and the fields that matter)."""

from __future__ import annotations

from typing import Any

import pytest

from podtrail import core
from podtrail.core import derive

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
    sidecar,
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

Case = tuple[str, Steps, core.Observation, list[dict[str, Any]]]

PENDING_PROBED = [container(startup_probe=True)]
PROXY = [sidecar("proxy")]
ENDPOINT = endpoint_slice(members=[(*MEMBER, True, True, False)])

# One table per rule of derive.py (keyed by its function); "routing" holds the observations
# that never reach a rule because they are about another pod instance.
TABLES: dict[str, list[Case]] = {
    "_created_facts": [
        (
            "first sight of a pending pod",
            [],
            P(
                node=None,
                conditions=[condition("PodScheduled", "False", 0, "Unschedulable", "0/1")],
            ),
            [
                {"type": "Created", "source": "status", "time": at(0)},
                {"type": "ConditionChanged", "reason": "Unschedulable"},
            ],
        ),
        (
            "created by its controller",
            [],
            P(),
            [
                {
                    "type": "Created",
                    "summary": "Pod created by ReplicaSet web-7d9f8b6c5d; phase Pending",
                }
            ],
        ),
        (
            "a pod already recorded is not created again",
            [P()],
            P(created=30),
            [],
        ),
    ],
    "_phase_facts": [
        (
            "phase Pending → Running, time from the container start",
            [P(conditions=running_conditions(), statuses=[running(ready=False)])],
            P(phase="Running", conditions=running_conditions(), statuses=[running(ready=False)]),
            [{"type": "PhaseChanged", "source": "inferred", "time": at(10), "to_phase": "Running"}],
        ),
        (
            "first seen Running: no from-phase",
            [],
            P(phase="Running", statuses=[running(ready=False)]),
            [
                {"type": "Created"},
                {"type": "ContainerStarted"},
                {"type": "PhaseChanged", "from_phase": None, "to_phase": "Running"},
            ],
        ),
        (
            "Running → Succeeded, time of the last exit",
            [RUNNING],
            P(phase="Succeeded", conditions=running_conditions(), statuses=[terminated()]),
            [
                {"type": "ContainerTerminated", "exit_code": 0, "time": at(60)},
                {"type": "PhaseChanged", "source": "inferred", "time": at(60)},
            ],
        ),
    ],
    "_condition_facts": [
        (
            "scheduled via the condition",
            [P(node=None)],
            P(conditions=[condition("PodScheduled", "True", 1)]),
            [{"type": "Scheduled", "source": "status", "time": at(1)}],
        ),
        (
            "sandbox ready",
            [P()],
            P(conditions=[condition("PodReadyToStartContainers", "True", 3)]),
            [{"type": "SandboxReady", "time": at(3)}],
        ),
        (
            "a condition first seen False is not news (other than PodScheduled)",
            [P()],
            P(conditions=[condition("Ready", "False", 3, "ContainersNotReady")]),
            [],
        ),
        (
            "a condition that turns False",
            [RUNNING],
            P(
                phase="Running",
                conditions=[condition("Ready", "False", 40, "ContainersNotReady")],
                statuses=[running()],
            ),
            [{"type": "ConditionChanged", "time": at(40), "reason": "ContainersNotReady"}],
        ),
        (
            "DisruptionTarget from the Eviction API",
            [RUNNING],
            P(
                phase="Running",
                conditions=[
                    condition("DisruptionTarget", "True", 90, "EvictionByEvictionAPI", "drain")
                ],
                statuses=[running()],
            ),
            [
                {
                    "type": "Evicted",
                    "time": at(90),
                    "summary": "Evicted through the Eviction API: drain",
                }
            ],
        ),
        (
            "DisruptionTarget from the scheduler's preemption",
            [RUNNING],
            P(
                phase="Running",
                conditions=[condition("DisruptionTarget", "True", 90, "PreemptionByScheduler")],
                statuses=[running()],
            ),
            [{"type": "Preempted", "time": at(90), "reason": "PreemptionByScheduler"}],
        ),
    ],
    "_evicted_facts": [
        (
            "evicted by the kubelet: the pod's reason, at the operator's clock",
            [RUNNING],
            P(
                phase="Failed",
                reason="Evicted",
                message="The node was low on resource: memory.",
                statuses=[terminated(exit_code=137, finished_at=96)],
            ),
            [
                {"type": "ContainerTerminated", "exit_code": 137},
                {
                    "type": "Evicted",
                    "reason": "Evicted",
                    "source": "observed",
                    "time": at(5000),
                    "summary": "Evicted by the kubelet: The node was low on resource: memory.",
                },
                {"type": "PhaseChanged", "to_phase": "Failed", "reason": "Evicted"},
            ],
        ),
        (
            "evicted by the kubelet with a DisruptionTarget: one Evicted fact, at its time",
            [RUNNING],
            P(
                phase="Failed",
                reason="Evicted",
                conditions=[condition("DisruptionTarget", "True", 95, "TerminationByKubelet")],
                statuses=[terminated(exit_code=137, finished_at=96)],
            ),
            [
                {"type": "ContainerTerminated", "exit_code": 137},
                {"type": "Evicted", "key": f"{UID}/Evicted", "time": at(95)},
                {"type": "PhaseChanged", "to_phase": "Failed"},
            ],
        ),
        (
            "an eviction already recorded is not news",
            [
                RUNNING,
                P(phase="Failed", reason="Evicted", statuses=[terminated(finished_at=96)]),
            ],
            P(
                phase="Failed",
                reason="Evicted",
                message="later",
                statuses=[terminated(finished_at=96)],
            ),
            [],
        ),
    ],
    "_deletion_facts": [
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
            "force deletion of a scheduled pod whose containers have not run yet",
            [P(phase="Pending", statuses=[waiting()])],
            P(phase="Pending", statuses=[waiting()], deleted_at=20, grace=0),
            [
                {
                    "type": "ForceDeleted",
                    "summary": "Force deleted: grace period 0, no container running",
                }
            ],
        ),
        (
            "grace 0 for a pod that had finished: the API server's own, no force",
            [P(phase="Succeeded", statuses=[terminated(finished_at=30)])],
            P(phase="Succeeded", statuses=[terminated(finished_at=30)], deleted_at=40, grace=0),
            [
                {
                    "type": "DeletionRequested",
                    "summary": "Deletion requested after the pod had finished: "
                    "it is removed at once",
                }
            ],
        ),
        (
            "deletion before scheduling",
            [P(node=None)],
            P(node=None, deleted_at=20, grace=0),
            [
                {
                    "type": "DeletionRequested",
                    "summary": "Deletion requested before scheduling: the pod is removed at once",
                }
            ],
        ),
        (
            "the kubelet's final grace-0 delete after the containers stopped is no new request",
            [
                RUNNING,
                P(phase="Running", statuses=[running()], deleted_at=100, grace=30),
                P(phase="Succeeded", statuses=[terminated(finished_at=101)], deleted_at=100),
            ],
            P(phase="Succeeded", statuses=[terminated(finished_at=101)], deleted_at=130, grace=0),
            [],
        ),
    ],
    "_run_facts": [
        (
            "container waiting then started",
            [P(statuses=[waiting()])],
            P(statuses=[running(started_at=10, ready=False)]),
            [{"type": "ContainerStarted", "container": "app", "time": at(10), "source": "status"}],
        ),
        (
            "an init container completed",
            [P(init_containers=[container("migrate")], init_statuses=[running("migrate", 3)])],
            P(
                init_containers=[container("migrate")],
                init_statuses=[terminated("migrate", 0, 3, 8, ready=False)],
            ),
            [
                {
                    "type": "ContainerTerminated",
                    "summary": "Init container migrate completed (exit 0)",
                    "time": at(8),
                },
            ],
        ),
        (
            "a sidecar started",
            [P(init_containers=PROXY)],
            P(init_containers=PROXY, init_statuses=[running("proxy", 3, ready=False)]),
            [{"type": "SidecarStarted", "container": "proxy", "time": at(3)}],
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
            "exit 143 before the deadline",
            [RUNNING, P(phase="Running", statuses=[running()], deleted_at=100, grace=30)],
            P(
                phase="Running",
                statuses=[terminated(exit_code=143, finished_at=101)],
                deleted_at=100,
            ),
            [{"type": "ExitedOnTerm", "signal": "TERM", "source": "inferred", "exit_code": 143}],
        ),
        (
            "exit 137 at T + G + 2 s with a preStop hook",
            [
                RUNNING_PRESTOP,
                P(
                    phase="Running",
                    containers=PRESTOP,
                    statuses=[running()],
                    deleted_at=100,
                    grace=3,
                ),
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
                {
                    "type": "KilledAfterGrace",
                    "signal": "KILL",
                    "source": "inferred",
                    "time": at(105),
                },
            ],
        ),
        (
            "exit 1 after the deletion request",
            [RUNNING, P(phase="Running", statuses=[running()], deleted_at=100, grace=30)],
            P(phase="Running", statuses=[terminated(exit_code=1, finished_at=102)], deleted_at=100),
            [{"type": "ContainerTerminated", "exit_code": 1, "source": "status", "signal": None}],
        ),
    ],
    "_restart_facts": [
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
            "two restarts seen at once count two, dated by the new start",
            [RUNNING],
            P(
                phase="Running",
                conditions=running_conditions(),
                statuses=[
                    running(
                        started_at=70,
                        restart_count=2,
                        last=terminated_state(1, 50, 60, run="cd" * 32),
                        run="ef" * 32,
                    )
                ],
            ),
            [
                {"type": "ContainerRestarted", "count": 2, "time": at(70), "source": "status"},
                {"type": "ContainerStarted", "time": at(50)},
                {"type": "ContainerStarted", "time": at(70)},
                {"type": "ContainerTerminated", "exit_code": 1, "time": at(60)},
            ],
        ),
    ],
    "_waiting_facts": [
        (
            "waiting for an image: observed at the operator's clock",
            [P(statuses=[waiting()])],
            P(statuses=[waiting(reason="ImagePullBackOff", message='Back-off pulling image "x"')]),
            [
                {
                    "type": "ContainerWaiting",
                    "reason": "ImagePullBackOff",
                    "source": "observed",
                    "time": at(5000),
                    "summary": "Container app waiting: ImagePullBackOff: "
                    'Back-off pulling image "x"',
                }
            ],
        ),
        (
            "waiting again for the same reason is not news",
            [P(statuses=[waiting(reason="ImagePullBackOff")])],
            P(statuses=[waiting(reason="ImagePullBackOff", message="still")]),
            [],
        ),
    ],
    "_ready_facts": [
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
            "not ready while running, without a condition to date it",
            [RUNNING],
            P(phase="Running", statuses=[running(ready=False)]),
            [{"type": "ContainerNotReady", "time": at(5000), "source": "observed"}],
        ),
        (
            "a sidecar ready",
            [P(init_containers=PROXY, init_statuses=[running("proxy", 3, ready=False)])],
            P(init_containers=PROXY, init_statuses=[running("proxy", 3)]),
            [{"type": "SidecarReady", "container": "proxy"}],
        ),
    ],
    "_startup_facts": [
        (
            "startup probe passed: the started flag turns true",
            [P(containers=PENDING_PROBED, statuses=[running(ready=False, started=False)])],
            P(containers=PENDING_PROBED, statuses=[running(ready=False, started=True)]),
            [
                {
                    "type": "StartupProbePassed",
                    "probe": "startup",
                    "source": "observed",
                    "time": at(5000),
                }
            ],
        ),
        (
            "started without a startup probe is no probe passing",
            [P(statuses=[running(ready=False, started=False)])],
            P(statuses=[running(ready=False, started=True)]),
            [],
        ),
    ],
    "_event_facts": [
        (
            "scheduled via the Event, after the condition: nothing new",
            [P(conditions=[condition("PodScheduled", "True", 1)])],
            E("Scheduled", "Successfully assigned shop/web-0 to worker-1", first=1),
            [],
        ),
        (
            "scheduled via the Event: the node from its message",
            [P(node=None)],
            E("Scheduled", "Successfully assigned shop/web-0 to worker-2", first=1),
            [{"type": "Scheduled", "source": "event", "summary": "Scheduled to node worker-2"}],
        ),
        (
            "scheduling failed",
            [P(node=None)],
            E("FailedScheduling", "0/3 nodes are available", first=1, count=3, kind="Warning"),
            [{"type": "FailedScheduling", "count": 3}],
        ),
        (
            "image pulling and pulled",
            [P(statuses=[waiting()])],
            E(
                "Pulled",
                'Container image "registry.example/app:1.0" already present',
                first=6,
                container="app",
            ),
            [
                {
                    "type": "ImagePulled",
                    "container": "app",
                    "summary": "Image registry.example/app:1.0 ready for container app: Container "
                    'image "registry.example/app:1.0" already present',
                }
            ],
        ),
        (
            "image pull failure",
            [P(statuses=[waiting()])],
            E(
                "Failed",
                'Failed to pull image "x": not found',
                first=6,
                container="app",
                kind="Warning",
            ),
            [{"type": "ImagePullFailed", "reason": "Failed"}],
        ),
        (
            "image pull failure and back-off",
            [P(statuses=[waiting()])],
            E("BackOff", 'Back-off pulling image "x"', first=8, count=4, container="app"),
            [{"type": "BackOff", "count": 4}],
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
            "an Event seen again with the same count is not news",
            [
                RUNNING,
                E(
                    "Unhealthy",
                    "Readiness probe failed: 503",
                    first=20,
                    count=2,
                    container="app",
                    kind="Warning",
                ),
            ],
            E(
                "Unhealthy",
                "Readiness probe failed: 503",
                first=20,
                count=2,
                container="app",
                kind="Warning",
            ),
            [],
        ),
        (
            "preStop failure",
            [RUNNING_PRESTOP],
            E(
                "FailedPreStopHook",
                "PreStopHook failed",
                first=105,
                container="app",
                kind="Warning",
            ),
            [{"type": "PreStopHookFailed", "time": at(105)}],
        ),
        (
            "postStart failure",
            [RUNNING],
            E(
                "FailedPostStartHook",
                "PostStartHook failed",
                first=11,
                container="app",
                kind="Warning",
            ),
            [{"type": "PostStartHookFailed"}],
        ),
        (
            "preempted",
            [RUNNING],
            E("Preempted", "Preempted by pod 1234 on node worker-1", first=90, kind="Warning"),
            [{"type": "Preempted", "source": "event"}],
        ),
        (
            "evicted",
            [RUNNING],
            E("Evicted", "The node was low on resource: memory.", first=90, kind="Warning"),
            [{"type": "Evicted", "source": "event"}],
        ),
        (
            "taint manager eviction",
            [RUNNING],
            E("TaintManagerEviction", "Marking for deletion Pod shop/web-0", first=90),
            [{"type": "TaintManagerDeletion"}],
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
            "a Normal SandboxChanged Event is kept generically",
            [RUNNING],
            E("SandboxChanged", "Pod sandbox changed, it will be killed and re-created.", first=3),
            [{"type": "EventReported", "reason": "SandboxChanged"}],
        ),
        (
            "unknown Normal Events are ignored",
            [RUNNING],
            E("SomethingHappened", "fine", first=3),
            [],
        ),
    ],
    "_endpoint_facts": [
        (
            "added to a Service's endpoints",
            [RUNNING],
            core.EndpointSeen(
                NAMESPACE, POD, UID, "web", "10.244.1.7", True, True, False, False, at(13)
            ),
            [
                {
                    "type": "EndpointChanged",
                    "summary": "Added to the endpoints of Service web "
                    "(10.244.1.7): ready=true serving=true terminating=false",
                }
            ],
        ),
        (
            "endpoint terminating, observed time",
            [RUNNING, *core.observe_endpoint_slice_change(None, ENDPOINT, now=at(13))],
            core.EndpointSeen(
                NAMESPACE, POD, UID, "web", "10.244.1.7", False, True, True, False, at(100.5)
            ),
            [{"type": "EndpointChanged", "source": "observed", "time": at(100.5)}],
        ),
        (
            "endpoint removed",
            [RUNNING, *core.observe_endpoint_slice_change(None, ENDPOINT, now=at(13))],
            core.EndpointSeen(
                NAMESPACE, POD, UID, "web", "10.244.1.7", None, None, None, True, at(103)
            ),
            [{"type": "RemovedFromEndpoints", "source": "observed"}],
        ),
        (
            "removed from endpoints it was never seen in: nothing",
            [RUNNING],
            core.EndpointSeen(
                NAMESPACE, POD, UID, "web", "10.244.1.7", None, None, None, True, at(103)
            ),
            [],
        ),
    ],
    "_gone_facts": [
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
            "a removal already recorded is not news",
            [RUNNING, core.PodGone(NAMESPACE, POD, UID, at(200), True)],
            core.PodGone(NAMESPACE, POD, UID, at(300), False),
            [],
        ),
    ],
    "routing": [
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
    ],
}
ROWS = [(rule, *case) for rule, cases in TABLES.items() for case in cases]
DISPATCHERS = {"_pod_facts", "_container_facts"}  # they only call the rules


def test_every_derive_rule_has_a_table() -> None:
    rules = {
        name
        for name, value in vars(derive).items()
        if name.startswith("_") and name.endswith("_facts") and callable(value)
    }
    assert rules - DISPATCHERS == set(TABLES) - {"routing"}
    assert all(TABLES.values()), "every table has rows"


@pytest.mark.parametrize(
    ("rule", "name", "before", "observation", "expected"),
    ROWS,
    ids=[f"{row[0]}: {row[1]}" for row in ROWS],
)
def test_derive_rule(
    rule: str,
    name: str,
    before: Steps,
    observation: core.Observation,
    expected: list[dict[str, Any]],
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
