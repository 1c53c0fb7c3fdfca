"""Whole lives through ``advance``: outcomes, the termination block, instances, summaries."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from podtrail import core
from podtrail.core.facts import Merge

from .builders import (
    NAMESPACE,
    POD,
    UID,
    at,
    pod,
    running,
    running_conditions,
    terminated,
    timeline_keys,
    ts,
)
from .scenarios import SCENARIOS, play


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("graceful", "GracefulShutdown"),
        ("killed_after_grace", "KilledAfterGrace"),
        ("crash_loop", None),
        ("probes", None),
        ("oom", "OOMKilled"),
        ("evicted", "Evicted"),
        ("kubelet_evicted", "Evicted"),
        ("preempted", "Preempted"),
        ("force_deleted", "ForceDeleted"),
        ("unschedulable", "Deleted"),
        ("job_succeeded", "Succeeded"),
        ("sidecars", "GracefulShutdown"),
        ("init_retried_within_a_second", None),
        ("image_pull_failure", "DeletedUnobserved"),
        ("recreated", None),
    ],
)
def test_scenario_outcomes(name: str, outcome: str | None) -> None:
    status, facts = play(SCENARIOS[name]())
    assert status.get("outcome") == outcome
    once = [f.key for f in facts if f.merge is Merge.ONCE]
    assert len(once) == len(set(once))
    assert status["lastEvent"]


def test_killed_after_grace_termination_block() -> None:
    status, facts = play(SCENARIOS["killed_after_grace"]())
    block: dict[str, Any] = status["termination"]
    assert block["requestedAt"] == ts(200)
    assert block["gracePeriodSeconds"] == 3 and block["deadline"] == ts(203)
    assert block["forced"] is False
    assert block["killingAt"] == ts(200)
    assert block["preStop"] == [
        {"container": "app", "configured": True, "failed": True, "failedAt": ts(205)}
    ]
    assert block["containers"] == [
        {
            "name": "app",
            "verdict": "KilledAfterGrace",
            "exitCode": 137,
            "reason": "Error",
            "signal": "KILL",
            "finishedAt": ts(205),
            "secondsAfterRequest": 5.0,
            "secondsFromDeadline": 2.0,
        }
    ]
    assert block["verdict"] == "KilledAfterGrace"
    assert "exit 137" in block["evidence"] and "preStop extension" in block["evidence"]
    assert status["durations"]["terminationSeconds"] == 6.0
    killed = [f for f in facts if f.type == "KilledAfterGrace"]
    assert len(killed) == 1 and killed[0].source == "inferred" and killed[0].signal == "KILL"


def test_graceful_summary_times_and_endpoints() -> None:
    status, _ = play(SCENARIOS["graceful"]())
    assert status["times"]["created"] == ts(0)
    assert status["times"]["scheduled"] == ts(1)
    assert status["times"]["ready"] == ts(12)
    assert status["times"]["deletionRequested"] == ts(100)
    assert status["times"]["finished"] == ts(102)
    assert status["durations"] == {
        "timeToScheduleSeconds": 1.0,
        "initSeconds": 1.0,
        "timeToReadySeconds": 12.0,
        "terminationSeconds": 3.5,
    }
    assert status["termination"]["endpointRemovals"] == [
        {"service": "web", "terminatingAt": "2025-06-01T12:01:40.400000Z", "removedAt": ts(103)}
    ]
    assert status["endpoints"] == []
    assert status["owner"] == {"kind": "ReplicaSet", "name": "web-7d9f8b6c5d", "deployment": "web"}
    assert status["removal"] == {"time": "2025-06-01T12:01:43.500000Z", "observed": True}
    # the removal itself is the ENDED column; the last notable entry before it is shown
    assert status["lastEvent"] == "Removed from the endpoints of Service web (10.244.1.7)"
    assert status["summary"]["phase"] == "Failed (last)"
    assert status["summary"]["ready"] == "0/1 (last)"
    assert status["summary"]["owner"] == "Deployment/web"


def test_summary_counters_for_printer_columns() -> None:
    status, _ = play(SCENARIOS["sidecars"]()[:2])
    assert status["summary"] == {
        "initDone": 1,
        "initTotal": 1,
        "readyContainers": 2,
        "totalContainers": 2,
        "restarts": 0,
        "init": "1/1",
        "ready": "2/2",
        "phase": "Running",
        "owner": "Deployment/web",
    }
    crash, _ = play(SCENARIOS["crash_loop"]())
    assert crash["summary"]["restarts"] == 5
    restarted = [e for e in crash["timeline"] if e["type"] == "ContainerRestarted"]
    assert len(restarted) == 1 and restarted[0]["count"] == 5


@pytest.mark.parametrize("seen", ["every step", "first and last only"])
def test_two_runs_in_one_second_are_two_runs(seen: str) -> None:
    steps = SCENARIOS["init_retried_within_a_second"]()
    status, _ = play(steps if seen == "every step" else [steps[0], steps[-1]])
    flaky = [e for e in status["timeline"] if e.get("container") == "flaky"]
    assert [e["type"] for e in flaky if e["type"] == "ContainerStarted"] == ["ContainerStarted"] * 2
    ends = [e["exitCode"] for e in flaky if e["type"] == "ContainerTerminated"]
    assert sorted(ends) == [0, 1]
    assert status["summary"]["init"] == "2/2"
    tiny = core.Limits(max_timeline_entries=1)
    capped, _ = play(steps, limits=tiny)
    assert core.advance(capped, steps[-1], now=at(9999), limits=tiny).facts == ()


def test_probe_counters_sum_event_counts_once() -> None:
    status, _ = play(SCENARIOS["probes"]())
    assert status["probeFailures"] == {"liveness": 3, "readiness": 40, "startup": 3}
    assert [e["count"] for e in status["timeline"] if e.get("probe") == "readiness"] == [40]


def test_recreated_pod_keeps_the_old_instance() -> None:
    status, _ = play(SCENARIOS["recreated"]())
    assert status["podUID"].endswith("0002")
    assert status["nodeName"] == "worker-2"
    assert status["previousInstances"] == [
        {
            "uid": UID,
            "created": ts(0),
            "deleted": ts(102),
            "outcome": "GracefulShutdown",
            "nodeName": "worker-1",
            "restarts": 0,
            "phase": "Running",
            "timelineEntries": 12,
            "lastEntries": [
                {
                    "time": ts(10),
                    "type": "PhaseChanged",
                    "summary": "Phase Running (first observed)",
                },
                {
                    "time": ts(100),
                    "type": "DeletionRequested",
                    "summary": f"Deletion requested: grace period 30s, SIGKILL deadline {ts(130)}",
                },
                {
                    "time": ts(101),
                    "type": "ExitedOnTerm",
                    "summary": "Container app exited on SIGTERM: exit 143 (Error) at T+1.0s, "
                    "deadline T+30s",
                },
            ],
            "termination": {
                "requestedAt": ts(100),
                "gracePeriodSeconds": 30,
                "forced": False,
                "verdict": "GracefulShutdown",
                "evidence": "app: exit 143 (Error) at T+1.0s, deadline T+30s: "
                "exited on SIGTERM (inferred)",
            },
        }
    ]
    assert all(k.startswith(status["podUID"]) for k in timeline_keys(status))
    assert "termination" not in status and "removal" not in status


def test_previous_instances_are_bounded_newest_first() -> None:
    status: dict[str, Any] | None = None
    for n in range(8):
        raw = pod(
            uid=f"uid-{n}",
            created=n * 100,
            phase="Running",
            statuses=[running(started_at=n * 100 + 5)],
        )
        status = core.advance(status, core.observe_pod(raw), now=at(n * 100 + 50)).status
    assert status is not None
    previous = status["previousInstances"]
    assert [p["uid"] for p in previous] == ["uid-6", "uid-5", "uid-4", "uid-3", "uid-2"]
    assert all(p["outcome"] == "DeletedUnobserved" for p in previous)
    # an old pod object arriving late does not roll the record back
    late = core.advance(status, core.observe_pod(pod(uid="uid-3", created=300)), now=at(9999))
    assert late.facts == ()


def test_records_can_start_from_events_before_the_pod() -> None:
    event_first = SCENARIOS["graceful"]()
    events = [o for o in event_first if isinstance(o, core.EventSeen)]
    others = [o for o in event_first if not isinstance(o, core.EventSeen)]
    early, _ = play(events + others)
    late, _ = play(event_first)
    assert set(timeline_keys(early)) == set(timeline_keys(late))


def test_pod_gone_without_a_record_does_nothing() -> None:
    step = core.advance(None, core.PodGone(NAMESPACE, POD, UID, at(1), True), now=at(1))
    assert step.facts == () and not step.terminal


def test_terminal_steps_are_flagged() -> None:
    status, _ = play(
        [
            core.observe_pod(
                pod(phase="Running", conditions=running_conditions(), statuses=[running()])
            )
        ]
    )
    gone = core.advance(status, core.PodGone(NAMESPACE, POD, UID, at(50), True), now=at(50))
    assert gone.terminal and [f.type for f in gone.facts] == ["PodDeleted"]
    assert gone.status["times"]["deleted"] == ts(50)


def _steps(*raws: dict[str, Any]) -> core.Advance:
    status: dict[str, Any] = {}
    step = None
    for raw in raws:
        step = core.advance(status, core.observe_pod(raw), now=at(500))
        status = step.status
    assert step is not None
    return step


@pytest.mark.parametrize(
    ("exit_code", "finished", "grace", "outcome"),
    [(0, 101, 20, "GracefulShutdown"), (137, 103, 3, "KilledAfterGrace")],
)
def test_the_kubelets_final_delete_is_not_a_new_request(
    exit_code: int, finished: float, grace: int, outcome: str
) -> None:
    alive = pod(
        phase="Running",
        statuses=[running("app", started_at=10, ready=True)],
        conditions=running_conditions(),
    )
    deleting = pod(
        phase="Running",
        statuses=[running("app", started_at=10, ready=True)],
        conditions=running_conditions(),
        deleted_at=100,
        grace=grace,
    )
    ended = terminated("app", exit_code=exit_code, started_at=10, finished_at=finished)
    phase = "Succeeded" if exit_code == 0 else "Failed"
    stopped = pod(
        phase=phase, statuses=[ended], conditions=running_conditions(), deleted_at=100, grace=grace
    )
    # Every container has stopped: the kubelet removes the pod with a grace-0 delete.
    removed = pod(
        phase=phase,
        statuses=[ended],
        conditions=running_conditions(),
        deleted_at=finished + 2,
        grace=0,
    )
    step = _steps(alive, deleting, stopped, removed)
    status = step.status
    assert status["outcome"] == outcome
    assert status["termination"]["requestedAt"] == ts(100)
    assert status["termination"]["gracePeriodSeconds"] == grace
    assert not [e for e in status["timeline"] if e["type"] == "ForceDeleted"]
    assert step.facts == ()


def test_a_force_delete_while_containers_run_replaces_the_request() -> None:
    alive = pod(
        phase="Running",
        statuses=[running("app", started_at=10, ready=True)],
        conditions=running_conditions(),
        deleted_at=100,
        grace=30,
    )
    forced = pod(
        phase="Running",
        statuses=[running("app", started_at=10, ready=True)],
        conditions=running_conditions(),
        deleted_at=105,
        grace=0,
    )
    status = _steps(alive, forced).status
    assert status["termination"]["gracePeriodSeconds"] == 0
    assert [e for e in status["timeline"] if e["type"] == "ForceDeleted"]


def test_the_removal_of_an_earlier_instance_may_arrive_after_its_successor() -> None:
    first = pod(
        uid="uid-1",
        phase="Running",
        statuses=[running("app", started_at=10)],
        created=0,
        conditions=running_conditions(),
    )
    second = pod(uid="uid-2", phase="Pending", created=50)
    status = _steps(first, second).status
    assert status["previousInstances"][0]["uid"] == "uid-1"
    assert "deleted" not in status["previousInstances"][0]
    gone = core.PodGone(NAMESPACE, POD, "uid-1", at(49), True)
    step = core.advance(status, gone, now=at(60))
    assert step.status["previousInstances"][0]["deleted"] == ts(49)
    assert step.status["podUID"] == "uid-2"
    assert step.status["timeline"] == status["timeline"]
    again = core.advance(step.status, gone, now=at(61))
    assert again.status == step.status and again.facts == ()


def test_one_pod_observation_works_out_its_deletion_request_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    advance = importlib.import_module("podtrail.core.advance")  # core.advance is the function
    deletion = importlib.import_module("podtrail.core.deletion")
    calls: list[object] = []

    def counted(*args: Any) -> Any:
        calls.append(args)
        return deletion.next_deletion(*args)

    monkeypatch.setattr(advance, "next_deletion", counted)
    steps = SCENARIOS["killed_after_grace"]()
    status, facts = play(steps)
    pods = [s for s in steps if isinstance(s, core.PodSeen)]
    assert len(calls) == len(pods), "once per pod observation, none for the others"
    assert status["outcome"] == "KilledAfterGrace" and facts


def test_the_labels_and_the_status_of_one_write_share_one_analysis() -> None:
    from dataclasses import replace

    from podtrail.core.conclude import analyse_record

    status, _ = play(SCENARIOS["killed_after_grace"]())
    record = core.load_record(status)
    marked = replace(record, label_marks=("0" * 12,))  # what a write does between the two
    assert analyse_record(marked, core.Limits()) is analyse_record(record, core.Limits())
