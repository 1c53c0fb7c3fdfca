"""Whole pod lives as sequences of observations, reused by several tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

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
    sidecar,
    terminated,
    terminated_state,
    waiting,
)

Steps = list[core.Observation]

PULLED = (
    'Successfully pulled image "registry.example/app:1.0" in 5.2s (5.2s including waiting). '
    "Image size: 1234 bytes."
)
READINESS_FAILURE = (
    'Readiness probe failed: Get "http://10.244.1.7:8080/ready": '
    "dial tcp 10.244.1.7:8080: connect: connection refused"
)


def _pod(**fields: object) -> core.PodSeen:
    return core.observe_pod(pod(**fields))  # type: ignore[arg-type]


def _event(*args: object, **fields: object) -> core.EventSeen:
    seen = core.observe_event(event(*args, **fields))  # type: ignore[arg-type]
    assert seen is not None
    return seen


def _gone(seconds: float, observed: bool = True, uid: str | None = UID) -> core.PodGone:
    return core.PodGone(NAMESPACE, POD, uid, at(seconds), observed)


def _pending_conditions() -> list[dict[str, object]]:
    return [
        condition("PodReadyToStartContainers", "False", 1),
        condition("Initialized", "True", 2),
        condition(
            "Ready", "False", 1, "ContainersNotReady", "containers with unready status: [app]"
        ),
        condition(
            "ContainersReady",
            "False",
            1,
            "ContainersNotReady",
            "containers with unready status: [app]",
        ),
        condition("PodScheduled", "True", 1),
    ]


def graceful() -> Steps:
    """Created, scheduled, started, ready, deleted, exits on TERM, removed."""
    slice_ready = endpoint_slice(members=[(POD, UID, "10.244.1.7", True, True, False)])
    slice_term = endpoint_slice(members=[(POD, UID, "10.244.1.7", False, True, True)])
    return [
        _pod(node=None, conditions=[condition("PodScheduled", "False", 0)]),
        _event(
            "Scheduled",
            f"Successfully assigned {NAMESPACE}/{POD} to worker-1",
            first=1,
            component="default-scheduler",
        ),
        _pod(conditions=_pending_conditions(), statuses=[waiting()]),
        _event("Pulling", 'Pulling image "registry.example/app:1.0"', first=3, container="app"),
        _event(
            "Pulled",
            PULLED,
            first=9,
            container="app",
        ),
        _event("Created", "Created container: app", first=9, container="app"),
        _event("Started", "Started container app", first=10, container="app"),
        _pod(phase="Running", conditions=running_conditions(), statuses=[running(ready=False)]),
        _pod(phase="Running", conditions=running_conditions(), statuses=[running()]),
        *core.observe_endpoint_slice_change(None, slice_ready, now=at(13)),
        _pod(
            phase="Running",
            conditions=running_conditions(),
            statuses=[running()],
            deleted_at=100,
            grace=30,
        ),
        _event("Killing", "Stopping container app", first=100, container="app"),
        *core.observe_endpoint_slice_change(slice_ready, slice_term, now=at(100.4)),
        _pod(
            phase="Running",
            conditions=running_conditions(),
            statuses=[terminated(exit_code=143, finished_at=102)],
            deleted_at=100,
            grace=30,
        ),
        _pod(
            phase="Failed",
            conditions=running_conditions(),
            statuses=[terminated(exit_code=143, finished_at=102)],
            deleted_at=100,
            grace=30,
        ),
        *core.observe_endpoint_slice_change(slice_term, endpoint_slice(members=[]), now=at(103)),
        _gone(103.5),
    ]


def killed_after_grace() -> Steps:
    """preStop sleep 20 with grace 3: killed at T + G + 2 s, FailedPreStopHook."""
    spec = [container(pre_stop=["sleep", "20"])]
    return [
        _pod(
            phase="Running", containers=spec, conditions=running_conditions(), statuses=[running()]
        ),
        _pod(
            phase="Running",
            containers=spec,
            conditions=running_conditions(),
            statuses=[running()],
            deleted_at=200,
            grace=3,
        ),
        _event("Killing", "Stopping container app", first=200, container="app"),
        _event(
            "FailedPreStopHook", "PreStopHook failed", first=205, container="app", kind="Warning"
        ),
        _pod(
            phase="Failed",
            containers=spec,
            conditions=running_conditions(),
            statuses=[terminated(exit_code=137, finished_at=205)],
            deleted_at=200,
            grace=3,
        ),
        _gone(206),
    ]


def crash_loop() -> Steps:
    """A container that keeps failing: restarts, CrashLoopBackOff, BackOff Events."""
    steps: Steps = [_pod(phase="Running", conditions=running_conditions(), statuses=[running()])]
    for restart in range(1, 6):
        started = 10 if restart == 1 else 20 + (restart - 1) * 30
        finished = 20 + restart * 30
        last = terminated_state(1, started, finished)
        steps.append(
            _pod(
                phase="Running",
                conditions=running_conditions(),
                statuses=[
                    waiting(
                        reason="CrashLoopBackOff",
                        message="back-off 10s restarting failed container=app",
                        restart_count=restart,
                        last=last,
                    )
                ],
            )
        )
        steps.append(
            _event(
                "BackOff",
                "Back-off restarting failed container app in pod web-0_shop(uid)",
                first=51,
                last=finished + 1,
                count=restart,
                container="app",
                kind="Warning",
                name="web-0.backoff",
            )
        )
        steps.append(
            _pod(
                phase="Running",
                conditions=running_conditions(),
                statuses=[
                    running(started_at=finished + 10, restart_count=restart, last=last, ready=False)
                ],
            )
        )
    return steps


def probes() -> Steps:
    """Readiness failures aggregated, a liveness restart."""
    base = {
        "phase": "Running",
        "conditions": running_conditions(),
        "containers": [container(startup_probe=True, readiness_probe=True)],
    }
    return [
        _pod(**base, statuses=[running(ready=False, started=False)]),
        _event(
            "Unhealthy",
            "Startup probe failed: HTTP probe failed with statuscode: 503",
            first=11,
            last=14,
            count=3,
            container="app",
            kind="Warning",
            name="web-0.startup",
        ),
        _pod(**base, statuses=[running(ready=False, started=True)]),
        _pod(**base, statuses=[running(ready=True, started=True)]),
        _event(
            "Unhealthy",
            READINESS_FAILURE,
            first=30,
            last=40,
            count=5,
            container="app",
            kind="Warning",
            name="web-0.ready",
        ),
        _event(
            "Unhealthy",
            READINESS_FAILURE,
            first=30,
            last=90,
            count=40,
            container="app",
            kind="Warning",
            name="web-0.ready",
        ),
        _event(
            "Unhealthy",
            "Liveness probe failed: HTTP probe failed with statuscode: 500",
            first=60,
            last=62,
            count=3,
            container="app",
            kind="Warning",
            name="web-0.live",
        ),
        _event(
            "Killing",
            "Container app failed liveness probe, will be restarted",
            first=62,
            container="app",
            name="web-0.kill-live",
        ),
        _pod(
            **base,
            statuses=[
                running(
                    started_at=64,
                    restart_count=1,
                    ready=False,
                    started=False,
                    last=terminated_state(137, 10, 63),
                )
            ],
        ),
    ]


def oom() -> Steps:
    """restartPolicy Never: OOM-killed, the pod Failed."""
    return [
        _pod(
            phase="Running",
            owner=("Job", "batch-1"),
            conditions=running_conditions(),
            statuses=[running()],
        ),
        _pod(
            phase="Failed",
            owner=("Job", "batch-1"),
            conditions=running_conditions(),
            statuses=[terminated(exit_code=137, finished_at=50, reason="OOMKilled")],
        ),
    ]


def evicted() -> Steps:
    """Evicted through the Eviction API (a drain)."""
    disrupted = [
        *running_conditions(),
        condition(
            "DisruptionTarget", "True", 300, "EvictionByEvictionAPI", "Eviction API: evicting"
        ),
    ]
    return [
        _pod(phase="Running", conditions=running_conditions(), statuses=[running()]),
        _pod(phase="Running", conditions=disrupted, statuses=[running()], deleted_at=300, grace=30),
        _pod(
            phase="Failed",
            conditions=disrupted,
            statuses=[terminated(exit_code=0, finished_at=301)],
            deleted_at=300,
            grace=30,
        ),
        _gone(302),
    ]


def kubelet_evicted() -> Steps:
    """Evicted by the kubelet under node pressure: Failed, reason Evicted, no deletion."""
    disrupted = [
        *running_conditions(),
        condition(
            "DisruptionTarget",
            "True",
            400,
            "TerminationByKubelet",
            "The node was low on resource: memory.",
        ),
    ]
    return [
        _pod(phase="Running", conditions=running_conditions(), statuses=[running()]),
        _event(
            "Evicted",
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi.",
            first=400,
            kind="Warning",
        ),
        _pod(
            phase="Failed",
            reason="Evicted",
            message="The node was low on resource: memory.",
            conditions=disrupted,
            statuses=[terminated(exit_code=137, finished_at=430)],
        ),
    ]


def preempted() -> Steps:
    """Preempted by the scheduler."""
    disrupted = [
        *running_conditions(),
        condition(
            "DisruptionTarget",
            "True",
            500,
            "PreemptionByScheduler",
            "default-scheduler: preempting to accommodate a higher priority pod",
        ),
    ]
    return [
        _pod(phase="Running", conditions=running_conditions(), statuses=[running()]),
        _event(
            "Preempted",
            "Preempted by pod 1234 on node worker-1",
            first=500,
            component="default-scheduler",
        ),
        _pod(phase="Running", conditions=disrupted, statuses=[running()], deleted_at=500, grace=30),
        _pod(
            phase="Failed",
            conditions=disrupted,
            statuses=[terminated(exit_code=143, finished_at=501)],
            deleted_at=500,
            grace=30,
        ),
        _gone(502),
    ]


def force_deleted() -> Steps:
    """kubectl delete --grace-period=0 --force."""
    return [
        _pod(phase="Running", conditions=running_conditions(), statuses=[running()]),
        _pod(
            phase="Running",
            conditions=running_conditions(),
            statuses=[running()],
            deleted_at=600,
            grace=0,
        ),
        _gone(600),
    ]


def unschedulable() -> Steps:
    """Never scheduled, then deleted."""
    unsched = [
        condition(
            "PodScheduled",
            "False",
            0,
            "Unschedulable",
            "0/3 nodes are available: 3 Insufficient cpu.",
        )
    ]
    return [
        _pod(node=None, conditions=unsched),
        _event(
            "FailedScheduling",
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available.",
            first=0,
            last=20,
            count=4,
            kind="Warning",
            component="default-scheduler",
            name="web-0.fs",
        ),
        _event(
            "FailedScheduling",
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available.",
            first=0,
            last=60,
            count=9,
            kind="Warning",
            component="default-scheduler",
            name="web-0.fs",
        ),
        _pod(node=None, conditions=unsched, deleted_at=70, grace=0),
        _gone(70),
    ]


def job_succeeded() -> Steps:
    """A Job pod that completes, and is deleted later."""
    init = [container("migrate")]
    return [
        _pod(
            owner=("Job", "nightly"),
            init_containers=init,
            conditions=[condition("PodScheduled", "True", 1)],
            init_statuses=[waiting("migrate", "PodInitializing")],
            statuses=[waiting("app", "PodInitializing")],
        ),
        _pod(
            owner=("Job", "nightly"),
            init_containers=init,
            conditions=[condition("PodScheduled", "True", 1)],
            init_statuses=[running("migrate", 3, ready=False)],
            statuses=[waiting("app", "PodInitializing")],
        ),
        _pod(
            phase="Running",
            owner=("Job", "nightly"),
            init_containers=init,
            conditions=running_conditions(),
            init_statuses=[terminated("migrate", 0, 3, 8)],
            statuses=[running(started_at=10)],
        ),
        _pod(
            phase="Succeeded",
            owner=("Job", "nightly"),
            init_containers=init,
            conditions=running_conditions(),
            init_statuses=[terminated("migrate", 0, 3, 8)],
            statuses=[terminated(exit_code=0, finished_at=40)],
        ),
        _pod(
            phase="Succeeded",
            owner=("Job", "nightly"),
            init_containers=init,
            conditions=running_conditions(),
            init_statuses=[terminated("migrate", 0, 3, 8)],
            statuses=[terminated(exit_code=0, finished_at=40)],
            deleted_at=900,
            grace=30,
        ),
        _gone(901),
    ]


def sidecars() -> Steps:
    """A native sidecar and an app; the sidecar is stopped after the app."""
    inits = [sidecar("proxy")]
    return [
        _pod(
            phase="Pending",
            init_containers=inits,
            conditions=_pending_conditions(),
            init_statuses=[running("proxy", 3, ready=False)],
            statuses=[waiting("app", "PodInitializing")],
        ),
        _pod(
            phase="Running",
            init_containers=inits,
            conditions=running_conditions(),
            init_statuses=[running("proxy", 3)],
            statuses=[running(started_at=10)],
        ),
        _pod(
            phase="Running",
            init_containers=inits,
            conditions=running_conditions(),
            init_statuses=[running("proxy", 3)],
            statuses=[terminated(exit_code=0, finished_at=101)],
            deleted_at=100,
            grace=30,
        ),
        _pod(
            phase="Succeeded",
            init_containers=inits,
            conditions=running_conditions(),
            init_statuses=[terminated("proxy", 0, 3, 102)],
            statuses=[terminated(exit_code=0, finished_at=101)],
            deleted_at=100,
            grace=30,
        ),
        _gone(103),
    ]


def init_retried_within_a_second() -> Steps:
    """An init container fails and succeeds on its immediate retry, both in the same second."""
    inits = [container("first"), container("flaky")]
    first = terminated("first", 0, 2, 3, run="1" * 64)
    failed, passed = "2" * 64, "3" * 64

    def initialising(flaky: dict[str, object], phase: str = "Pending") -> core.PodSeen:
        return _pod(
            phase=phase,
            init_containers=inits,
            conditions=_pending_conditions(),
            init_statuses=[first, flaky],
            statuses=[waiting("app", "PodInitializing")],
        )

    return [
        initialising(running("flaky", 4, ready=False, run=failed)),
        initialising(terminated("flaky", 1, 4, 4, run=failed)),
        initialising(
            running(
                "flaky",
                4,
                ready=False,
                restart_count=1,
                last=terminated_state(1, 4, 4, run=failed),
                run=passed,
            )
        ),
        initialising(
            terminated(
                "flaky",
                0,
                4,
                4,
                restart_count=1,
                last=terminated_state(1, 4, 4, run=failed),
                run=passed,
            )
        ),
        _pod(
            phase="Running",
            init_containers=inits,
            conditions=running_conditions(),
            init_statuses=[
                first,
                terminated(
                    "flaky",
                    0,
                    4,
                    4,
                    restart_count=1,
                    last=terminated_state(1, 4, 4, run=failed),
                    run=passed,
                ),
            ],
            statuses=[running(started_at=10)],
        ),
    ]


def image_pull_failure() -> Steps:
    """An image that cannot be pulled."""
    return [
        _pod(
            conditions=_pending_conditions(),
            statuses=[waiting(reason="ErrImagePull", message="failed to pull and unpack image")],
        ),
        _event(
            "Failed",
            'Failed to pull image "registry.example/nope:1": not found',
            first=5,
            last=40,
            count=3,
            container="app",
            kind="Warning",
            name="web-0.pullfail",
        ),
        _event(
            "Failed",
            "Error: ErrImagePull",
            first=5,
            last=40,
            count=3,
            container="app",
            kind="Warning",
            name="web-0.errpull",
        ),
        _event(
            "BackOff",
            'Back-off pulling image "registry.example/nope:1"',
            first=6,
            last=60,
            count=7,
            container="app",
            kind="Normal",
            name="web-0.pullbackoff",
        ),
        _pod(
            conditions=_pending_conditions(),
            statuses=[
                waiting(
                    reason="ImagePullBackOff",
                    message='Back-off pulling image "registry.example/nope:1"',
                )
            ],
        ),
        _gone(80, observed=False),
    ]


def recreated() -> Steps:
    """A StatefulSet pod deleted and recreated under the same name (new UID)."""
    new_uid = "8d5e7c1a-0000-4000-8000-000000000002"
    sts = ("StatefulSet", "web")
    return [
        _pod(phase="Running", owner=sts, conditions=running_conditions(), statuses=[running()]),
        _pod(
            phase="Running",
            owner=sts,
            conditions=running_conditions(),
            statuses=[terminated(exit_code=143, finished_at=101)],
            deleted_at=100,
            grace=30,
        ),
        _gone(102),
        _event(
            "Scheduled",
            f"Successfully assigned {NAMESPACE}/{POD} to worker-2",
            first=103,
            uid=new_uid,
            component="default-scheduler",
        ),
        _pod(
            uid=new_uid,
            created=103,
            node="worker-2",
            owner=sts,
            phase="Running",
            conditions=running_conditions(104, 110),
            statuses=[running(started_at=108)],
        ),
        _event("Killing", "Stopping container app", first=100, container="app"),
        _gone(102),
    ]


SCENARIOS: dict[str, Callable[[], Steps]] = {
    "graceful": graceful,
    "killed_after_grace": killed_after_grace,
    "crash_loop": crash_loop,
    "probes": probes,
    "oom": oom,
    "evicted": evicted,
    "kubelet_evicted": kubelet_evicted,
    "preempted": preempted,
    "force_deleted": force_deleted,
    "unschedulable": unschedulable,
    "job_succeeded": job_succeeded,
    "sidecars": sidecars,
    "init_retried_within_a_second": init_retried_within_a_second,
    "image_pull_failure": image_pull_failure,
    "recreated": recreated,
}


def _latest(observation: core.Observation) -> datetime | None:
    """The latest time an observation mentions (a stand-in for the operator's clock)."""
    if isinstance(observation, core.EventSeen):
        return observation.last_time
    if isinstance(observation, core.EndpointSeen | core.PodGone):
        return observation.time
    found = [observation.created, observation.deletion_timestamp]
    found += [c.last_transition_time for c in observation.conditions]
    for c in observation.containers:
        found.append(c.started_at)
        for end in (c.ended, c.last_ended):
            if end is not None:
                found += [end.started_at, end.finished_at]
    return max((t for t in found if t is not None), default=None)


def play(
    steps: Steps,
    status: dict[str, object] | None = None,
    limits: core.Limits = core.Limits(),
) -> tuple[dict[str, object], list[core.Fact]]:
    """Feed observations one after the other; returns the final status and all new facts.

    The operator's clock advances monotonically, half a second after the latest time each
    observation mentions.
    """
    facts: list[core.Fact] = []
    current = status
    clock = at(0)
    for observation in steps:
        latest = _latest(observation)
        if latest is not None:
            clock = max(clock, latest + timedelta(seconds=0.5))
        step = core.advance(current, observation, now=clock, limits=limits)
        facts.extend(step.facts)
        current = step.status
    return dict(current or {}), facts
