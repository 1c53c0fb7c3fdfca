"""The timeline's causal order among equal times: tables, whole lives, and a property."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podtrail import core
from podtrail.core.facts import ContainerKind, FactType
from podtrail.core.model import ContainerRecord, Entry
from podtrail.core.order import Places, Stage, causal_order, rank

from .builders import (
    at,
    condition,
    container,
    event,
    pod,
    running,
    terminated_state,
    timeline_keys,
)
from .scenarios import SCENARIOS, play

T = at(100)


def entry(
    etype: str,
    summary: str | None = None,
    container_name: str | None = None,
    time: datetime = T,
    key: str | None = None,
) -> Entry:
    return Entry(
        key=key or f"{etype}/{container_name}/{summary}",
        time=time,
        type=etype,
        summary=summary or etype,
        source="status",
        container=container_name,
    )


APP = ContainerRecord("app", ContainerKind.APP)
SECOND = ContainerRecord("second", ContainerKind.APP)
INIT = ContainerRecord("migrate", ContainerKind.INIT)
PROXY = ContainerRecord("proxy", ContainerKind.SIDECAR)


def ordered(entries: list[Entry], containers: tuple[ContainerRecord, ...] = (APP,)) -> list[str]:
    shuffled = list(reversed(entries))  # the order given does not matter between ranks
    return [e.summary for e in causal_order(shuffled, containers)]


# --- what users saw out of order ---------------------------------------------------------


def test_a_pods_start_within_one_second_reads_in_lifecycle_order() -> None:
    start = [
        entry(FactType.CREATED, "created"),
        entry(FactType.SCHEDULED, "scheduled"),
        entry(FactType.SANDBOX_READY, "sandbox ready"),
        entry(FactType.IMAGE_PULLED, "image pulled", "app"),
        entry(FactType.CONTAINER_STARTED, "started", "app"),
        entry(FactType.CONTAINER_READY, "ready", "app"),
        entry(FactType.CONDITION_CHANGED, "Condition ContainersReady is True"),
        entry(FactType.CONDITION_CHANGED, "Condition Ready is True"),
        entry(FactType.PHASE_CHANGED, "Phase Pending → Running"),
    ]
    assert ordered(start) == [e.summary for e in start]


def test_a_deleted_pods_end_within_one_second_reads_in_lifecycle_order() -> None:
    end = [
        entry(FactType.DELETION_REQUESTED, "deletion requested"),
        entry(FactType.KILLING_STARTED, "Killing", "app"),
        entry(FactType.PRE_STOP_HOOK_FAILED, "preStop failed", "app"),
        entry(FactType.EXITED_ON_TERM, "exited on TERM", "app"),
        entry(FactType.CONDITION_CHANGED, "Condition ContainersReady is False (PodCompleted)"),
        entry(FactType.CONDITION_CHANGED, "Condition Ready is False (PodCompleted)"),
        entry(FactType.CONDITION_CHANGED, "Condition PodReadyToStartContainers is False"),
        entry(FactType.PHASE_CHANGED, "Phase Running → Succeeded"),
        entry(FactType.POD_DELETED, "removed"),
    ]
    assert ordered(end) == [e.summary for e in end]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # the three pairs the issue names
        (entry(FactType.CONTAINER_STARTED, "started", "app"), entry(FactType.CONTAINER_READY)),
        (
            entry(FactType.CONTAINER_STARTED, "started", "app"),
            entry(FactType.CONDITION_CHANGED, "Condition Ready is True"),
        ),
        (entry(FactType.SANDBOX_READY), entry(FactType.PHASE_CHANGED, "Phase Pending → Running")),
        (
            entry(FactType.CONTAINER_TERMINATED, "exit 0", "app"),
            entry(FactType.PHASE_CHANGED, "Phase Running → Succeeded"),
        ),
        # and more
        (entry(FactType.FAILED_SCHEDULING), entry(FactType.SCHEDULED)),
        (
            entry(FactType.CONDITION_CHANGED, "Condition PodScheduled is False (Unschedulable)"),
            entry(FactType.SCHEDULED),
        ),
        (entry(FactType.IMAGE_PULLING, "pulling", "app"), entry(FactType.IMAGE_PULLED, "", "app")),
        (entry(FactType.IMAGE_PULL_FAILED, "failed", "app"), entry(FactType.BACK_OFF, "", "app")),
        (
            entry(FactType.CONDITION_CHANGED, "Condition DisruptionTarget is True"),
            entry(FactType.DELETION_REQUESTED),
        ),
        (entry(FactType.EVICTED), entry(FactType.DELETION_REQUESTED)),
        (entry(FactType.FORCE_DELETED), entry(FactType.KILLED_AFTER_GRACE, "kill", "app")),
        (entry(FactType.PROBE_FAILED, "probe", "app"), entry(FactType.CONTAINER_NOT_READY)),
        (
            entry(FactType.LIVENESS_RESTART, "liveness", "app"),
            entry(FactType.OOM_KILLED, "", "app"),
        ),
        (
            entry(FactType.CONTAINER_STARTED, "s", "app"),
            entry(FactType.STARTUP_PROBE_PASSED, "", "app"),
        ),
        (entry(FactType.CONTAINER_READY, "r", "app"), entry(FactType.ENDPOINT_CHANGED)),
        (entry(FactType.ENDPOINT_CHANGED), entry(FactType.REMOVED_FROM_ENDPOINTS)),
        (entry(FactType.REMOVED_FROM_ENDPOINTS), entry(FactType.PHASE_CHANGED)),
        (entry(FactType.PHASE_CHANGED), entry(FactType.DELETED_UNOBSERVED)),
        (entry(FactType.EVENT_REPORTED, "FailedMount"), entry(FactType.SANDBOX_READY)),
    ],
)
def test_pairs_at_the_same_time(before: Entry, after: Entry) -> None:
    assert ordered([before, after]) == [before.summary, after.summary]


def test_time_comes_first_whatever_the_stage() -> None:
    late_creation = entry(FactType.CREATED, "created", time=at(101))
    early_removal = entry(FactType.POD_DELETED, "removed", time=at(100))
    assert ordered([late_creation, early_removal]) == ["removed", "created"]


# --- containers ---------------------------------------------------------------------------


def test_init_containers_sidecars_and_apps_follow_the_pods_order() -> None:
    containers = (PROXY, INIT, APP, SECOND)
    steps = [
        entry(FactType.IMAGE_PULLED, "proxy image", "proxy"),
        entry(FactType.SIDECAR_STARTED, "proxy started", "proxy"),
        entry(FactType.SIDECAR_READY, "proxy ready", "proxy"),
        entry(FactType.IMAGE_PULLED, "migrate image", "migrate"),
        entry(FactType.CONTAINER_STARTED, "migrate started", "migrate"),
        entry(FactType.CONTAINER_TERMINATED, "migrate completed", "migrate"),
        entry(FactType.CONDITION_CHANGED, "Condition Initialized is True"),
        entry(FactType.IMAGE_PULLING, "app pulling", "app"),
        entry(FactType.IMAGE_PULLED, "app image", "app"),
        entry(FactType.CONTAINER_STARTED, "app started", "app"),
        entry(FactType.IMAGE_PULLED, "second image", "second"),
        entry(FactType.CONTAINER_STARTED, "second started", "second"),
        entry(FactType.CONTAINER_READY, "app ready", "app"),
    ]
    # moved about, but a container's runs (migrate's start and end) in the order seen
    given = steps[6:] + steps[:4] + steps[5:6] + steps[4:5]
    given = [e for e in given if e.summary != "migrate started"]
    given.insert(given.index(steps[5]), steps[4])
    assert [e.summary for e in causal_order(given, containers)] == [e.summary for e in steps]


def test_a_sidecar_stops_after_the_app_containers() -> None:
    containers = (PROXY, APP)
    steps = [
        entry(FactType.EXITED_ON_TERM, "app exited", "app"),
        entry(FactType.EXITED_ON_TERM, "proxy exited", "proxy"),
    ]
    assert ordered(steps, containers) == ["app exited", "proxy exited"]


def test_runs_of_one_container_within_a_second_keep_the_order_they_were_seen() -> None:
    runs = [
        entry(FactType.CONTAINER_STARTED, "run 1 started", "migrate", key="a"),
        entry(FactType.CONTAINER_TERMINATED, "run 1 failed", "migrate", key="b"),
        entry(FactType.CONTAINER_RESTARTED, "restarted", "migrate", key="c"),
        entry(FactType.CONTAINER_STARTED, "run 2 started", "migrate", key="d"),
        entry(FactType.CONTAINER_TERMINATED, "run 2 completed", "migrate", key="e"),
    ]
    got = [e.summary for e in causal_order(runs, (INIT, APP))]
    assert got == [e.summary for e in runs]


def test_a_container_the_record_does_not_know_yet_comes_after_the_known_ones() -> None:
    places = Places((APP,))
    unknown = entry(FactType.IMAGE_PULLED, "", "ghost")
    known = entry(FactType.IMAGE_PULLED, "", "app")
    assert rank(known, places) < rank(unknown, places)


def test_every_fact_type_has_a_stage() -> None:
    places = Places((APP,))
    for fact_type in FactType:
        assert isinstance(rank(entry(fact_type, "x", "app"), places)[0], Stage)


# --- whole lives through the core ---------------------------------------------------------


def _ranked(status: dict[str, Any], limits: core.Limits = core.Limits()) -> list[Any]:
    record = core.load_record(status, limits)
    places = Places(record.containers)
    return [(e.time, rank(e, places)) for e in record.timeline]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_timeline_is_sorted_by_time_then_rank(name: str) -> None:
    status, _ = play(SCENARIOS[name]())
    keys = _ranked(status)
    assert keys == sorted(keys)


def test_a_pod_seen_once_started_and_ready_in_one_second() -> None:
    """One observation: created, scheduled, sandbox, image, started, ready, Running."""
    image = core.observe_event(
        event("Pulled", 'Container image "x" already present on machine', first=5, container="app")
    )
    assert image is not None
    seen = core.observe_pod(
        pod(
            phase="Running",
            created=5,
            statuses=[running("app", started_at=5, ready=True)],
            conditions=[
                condition("PodScheduled", "True", 5),
                condition("PodReadyToStartContainers", "True", 5),
                condition("Initialized", "True", 5),
                condition("ContainersReady", "True", 5),
                condition("Ready", "True", 5),
            ],
        )
    )
    status, _ = play([seen, image])
    assert [e["type"] for e in status["timeline"]] == [
        "Created",
        "Scheduled",
        "SandboxReady",
        "ConditionChanged",  # Initialized
        "ImagePulled",
        "ContainerStarted",
        "ContainerReady",
        "ConditionChanged",  # ContainersReady
        "ConditionChanged",  # Ready
        "PhaseChanged",
    ]
    conditions = [e["summary"] for e in status["timeline"] if e["type"] == "ConditionChanged"]
    assert conditions == [
        "Condition Initialized is True",
        "Condition ContainersReady is True",
        "Condition Ready is True",
    ]


def test_an_init_container_failing_and_retried_in_one_observation_reads_run_by_run() -> None:
    """lastState (run 1) and state (run 2) in one pod object: start, fail, restart, start."""
    seen = core.observe_pod(
        pod(
            phase="Pending",
            created=1,
            init_containers=[container("migrate")],
            init_statuses=[
                running(
                    "migrate",
                    started_at=3,
                    ready=False,
                    restart_count=1,
                    run="b" * 64,
                    last=terminated_state(1, 3, 3, run="a" * 64),
                )
            ],
        )
    )
    status, _ = play([seen])
    migrate = [e["summary"] for e in status["timeline"] if e.get("container") == "migrate"]
    assert migrate == [
        "Init container migrate started",
        "Init container migrate terminated: exit 1 (Error)",
        "Init container migrate restarted (restart count 1; previous run exit 1 (Error))",
        "Init container migrate started (restart 1)",
    ]


def test_a_stored_timeline_keeps_its_order_when_read_again() -> None:
    status, _ = play(SCENARIOS["sidecars"]())
    again = core.render_record(core.load_record(status))
    assert again["timeline"] == status["timeline"]
    assert timeline_keys(again) == timeline_keys(status)


# --- the property ---------------------------------------------------------------------------

TYPES = st.sampled_from(sorted(FactType))
NAMES = st.sampled_from(["app", "second", "migrate", "proxy", "ghost", None])
SUMMARIES = st.sampled_from(
    [
        "Condition Ready is True",
        "Condition ContainersReady is False",
        "Condition Initialized is True",
        "Condition PodScheduled is False",
        "Condition DisruptionTarget is True",
        "Condition example.com/gate is True",
        "something else",
    ]
)


@st.composite
def entries(draw: st.DrawFn) -> list[Entry]:
    made = draw(
        st.lists(
            st.tuples(TYPES, NAMES, SUMMARIES, st.integers(min_value=0, max_value=3)),
            max_size=40,
        )
    )
    return [
        entry(etype, summary, name, at(second), key=f"k{i}")
        for i, (etype, name, summary, second) in enumerate(made)
    ]


@settings(max_examples=200, deadline=None)
@given(items=entries(), containers=st.permutations([APP, SECOND, INIT, PROXY]))
def test_causal_order_sorts_by_time_then_rank_and_is_stable(
    items: list[Entry], containers: list[ContainerRecord]
) -> None:
    places = Places(containers)
    got = causal_order(items, containers)
    assert sorted(got, key=lambda e: e.key) == sorted(items, key=lambda e: e.key)
    keys = [(e.time, rank(e, places)) for e in got]
    assert keys == sorted(keys)
    for a, b in zip(got, got[1:], strict=False):
        if (a.time, rank(a, places)) == (b.time, rank(b, places)):
            assert items.index(a) < items.index(b), "equals keep the order they came in"
    assert causal_order(got, containers) == got


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_prefix_of_a_scenario_renders_a_sorted_timeline(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(SCENARIOS)))
    steps = SCENARIOS[name]()
    cut = data.draw(st.integers(min_value=1, max_value=len(steps)))
    status, _ = play(steps[:cut])
    keys = _ranked(status)
    assert keys == sorted(keys)


def test_the_sidecar_scenario_reads_start_to_end() -> None:
    status, _ = play(SCENARIOS["sidecars"]())
    kinds = [(e["type"], e.get("container")) for e in status["timeline"]]
    assert kinds.index(("SidecarStarted", "proxy")) < kinds.index(("ContainerStarted", "app"))
    ends = [k for k in kinds if k[0] in ("ExitedOnTerm", "ContainerTerminated")]
    assert ends == [("ExitedOnTerm", "app"), ("ExitedOnTerm", "proxy")]
