"""Properties: idempotence, order independence, restart, bounds, hostile input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    timeline_keys,
    waiting,
)
from .scenarios import SCENARIOS, Steps, play

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "podtrail.io_podlifecyclerecords.yaml"
STATUS_SCHEMA = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]["schema"][
    "openAPIV3Schema"
]["properties"]["status"]
VALIDATOR = jsonschema.Draft7Validator(STATUS_SCHEMA)


def keys(status: dict[str, Any]) -> set[str]:
    return set(timeline_keys(status)) if status.get("timeline") else set()


# --- generated pods ----------------------------------------------------------------------

times = st.integers(min_value=0, max_value=600)


@st.composite
def container_statuses(draw: st.DrawFn, name: str) -> dict[str, Any]:
    restarts = draw(st.integers(min_value=0, max_value=5))
    last = None
    if restarts:
        start = draw(times)
        last = terminated_state(draw(st.sampled_from([0, 1, 137, 143])), start, start + draw(times))
    shape = draw(st.sampled_from(["waiting", "running", "terminated"]))
    if shape == "waiting":
        reason = draw(st.sampled_from(["ContainerCreating", "CrashLoopBackOff", "ErrImagePull"]))
        return waiting(name, reason, restart_count=restarts, last=last)
    if shape == "running":
        return running(
            name, draw(times), restart_count=restarts, last=last, ready=draw(st.booleans())
        )
    start = draw(times)
    return terminated(
        name,
        draw(st.sampled_from([0, 1, 137, 143])),
        start,
        start + draw(times),
        draw(st.sampled_from([None, "OOMKilled", "Error"])),
        restart_count=restarts,
        last=last,
    )


@st.composite
def pods(draw: st.DrawFn) -> core.PodSeen:
    deleted = draw(st.one_of(st.none(), times))
    conditions = (
        running_conditions() if draw(st.booleans()) else [condition("PodScheduled", "True", 1)]
    )
    if draw(st.booleans()):
        conditions.append(
            condition(
                "DisruptionTarget",
                "True",
                300,
                draw(
                    st.sampled_from(["EvictionByEvictionAPI", "PreemptionByScheduler", "Whatever"])
                ),
            )
        )
    return core.observe_pod(
        pod(
            phase=draw(st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Unknown"])),
            containers=[container("app", pre_stop=["sleep", "1"]), container("log")],
            statuses=[draw(container_statuses("app")), draw(container_statuses("log"))],
            conditions=conditions,
            deleted_at=deleted,
            grace=draw(st.sampled_from([0, 3, 30])) if deleted is not None else None,
        )
    )


@st.composite
def events(draw: st.DrawFn) -> core.EventSeen:
    reason, message = draw(
        st.sampled_from(
            [
                ("Unhealthy", "Readiness probe failed: 503"),
                ("Unhealthy", "Liveness probe failed: 500"),
                ("BackOff", "Back-off restarting failed container app"),
                ("Killing", "Stopping container app"),
                ("Pulled", "Container image already present on machine"),
                ("FailedPreStopHook", "PreStopHook failed"),
                ("Scheduled", "Successfully assigned shop/web-0 to worker-1"),
                ("FailedMount", "MountVolume.SetUp failed"),
            ]
        )
    )
    first = draw(times)
    seen = core.observe_event(
        event(
            reason,
            message,
            first=first,
            last=first + draw(times),
            count=draw(st.integers(min_value=1, max_value=50)),
            container="app",
            kind="Warning",
            name=f"web-0.{draw(st.integers(min_value=0, max_value=3))}",
        )
    )
    assert seen is not None
    return seen


def scenario_prefixes() -> st.SearchStrategy[Steps]:
    return st.sampled_from(sorted(SCENARIOS)).flatmap(
        lambda name: st.integers(min_value=0, max_value=len(SCENARIOS[name]())).map(
            lambda n: SCENARIOS[name]()[:n]
        )
    )


observations = st.one_of(pods(), events())


# --- idempotence -------------------------------------------------------------------------


@SETTINGS
@given(before=scenario_prefixes(), observation=observations)
def test_seeing_anything_twice_adds_nothing(before: Steps, observation: core.Observation) -> None:
    status, _ = play(before)
    once = core.advance(status, observation, now=at(7000))
    twice = core.advance(once.status, observation, now=at(8000))
    assert twice.facts == ()
    assert twice.status == once.status
    assert not twice.terminal


@SETTINGS
@given(before=scenario_prefixes())
def test_no_facts_means_the_status_is_the_input_normalised(before: Steps) -> None:
    status, _ = play(before)
    again = core.advance(
        status, core.PodGone(NAMESPACE, POD, "someone-else", at(1), True), now=at(9)
    )
    assert again.facts == ()
    if before:  # an empty input normalises to the empty skeleton
        assert again.status == status
    assert core.advance(again.status, core.observe_pod({}), now=at(9)).facts == ()


def test_every_scenario_step_is_idempotent() -> None:
    for name, steps in SCENARIOS.items():
        status: dict[str, Any] | None = None
        for index, observation in enumerate(steps()):
            first = core.advance(status, observation, now=at(2000 + index))
            second = core.advance(first.status, observation, now=at(3000 + index))
            assert second.facts == (), (name, index, second.facts)
            assert second.status == first.status, (name, index)
            status = first.status


# --- order -------------------------------------------------------------------------------

ORDERED = sorted(set(SCENARIOS) - {"recreated"})  # see docs/facts.md: rollover needs the pod


@SETTINGS
@given(name=st.sampled_from(ORDERED), data=st.data())
def test_events_before_or_after_the_pod_give_the_same_keys(name: str, data: st.DataObject) -> None:
    steps = SCENARIOS[name]()
    pods_stream = [o for o in steps if isinstance(o, core.PodSeen | core.PodGone)]
    other = [o for o in steps if not isinstance(o, core.PodSeen | core.PodGone)]
    slots = data.draw(
        st.lists(
            st.integers(min_value=0, max_value=len(pods_stream)),
            min_size=len(other),
            max_size=len(other),
        )
    )
    # an EndpointSlice stream is a sequence of diffs: it keeps its own order; and an endpoint
    # counts only once the record knows the pod's UID (a pod has an address after it is seen)
    endpoint_at = [i for i, o in enumerate(other) if isinstance(o, core.EndpointSeen)]
    for i, slot in zip(endpoint_at, sorted(slots[i] for i in endpoint_at), strict=True):
        slots[i] = max(1, slot)
    mixed: Steps = []
    queue = sorted(zip(slots, range(len(other)), other, strict=True), key=lambda t: (t[0], t[1]))
    for index in range(len(pods_stream) + 1):
        mixed += [o for slot, _, o in queue if slot == index]
        if index < len(pods_stream):
            mixed.append(pods_stream[index])
    reference, _ = play(steps)
    shuffled, _ = play(mixed)
    assert keys(shuffled) == keys(reference)
    assert shuffled.get("outcome") == reference.get("outcome")
    assert shuffled["probeFailures"] == reference["probeFailures"]


# --- restart -----------------------------------------------------------------------------


@SETTINGS
@given(name=st.sampled_from(sorted(SCENARIOS)), data=st.data())
def test_fresh_advance_of_the_current_pod_after_a_restart_adds_nothing(
    name: str, data: st.DataObject
) -> None:
    steps = SCENARIOS[name]()
    cut = data.draw(st.integers(min_value=1, max_value=len(steps)))
    status, _ = play(steps[:cut])
    stored = json.loads(json.dumps(status))  # as it comes back from the API
    seen_pods = [o for o in steps[:cut] if isinstance(o, core.PodSeen)]
    relist: Steps = [o for o in steps[:cut] if isinstance(o, core.EventSeen)]
    if seen_pods:
        relist.append(seen_pods[-1])
    for observation in relist:
        step = core.advance(stored, observation, now=at(99999))
        assert step.facts == (), step.facts


def test_pod_gone_unobserved_keeps_a_terminal_outcome() -> None:
    done = [o for o in SCENARIOS["job_succeeded"]()[:4]]
    status, _ = play(done)
    assert status["outcome"] == "Succeeded"
    gone = core.advance(status, core.PodGone(NAMESPACE, POD, None, at(5000), False), now=at(5000))
    assert gone.status["outcome"] == "Succeeded"
    assert [f.type for f in gone.facts] == ["DeletedUnobserved"]


# --- bounds ------------------------------------------------------------------------------


def test_thousands_of_repeats_and_huge_messages_stay_small() -> None:
    huge = "x" * 100_000
    steps: Steps = [
        core.observe_pod(
            pod(phase="Running", conditions=running_conditions(), statuses=[running()])
        )
    ]
    for restart in range(1, 301):
        start = 10 + restart * 20
        last = terminated_state(1, start - 15, start - 1)
        last["message"] = huge
        steps.append(
            core.observe_pod(
                pod(
                    phase="Running",
                    conditions=running_conditions(),
                    statuses=[
                        running(started_at=start, restart_count=restart, last=last, ready=False)
                    ],
                )
            )
        )
    for index in range(2000):
        seen = core.observe_event(
            event(
                "Unhealthy",
                f"Readiness probe failed: {huge}",
                first=index,
                last=index + 5,
                count=3,
                container="app",
                kind="Warning",
                name=f"web-0.probe{index}",
            )
        )
        assert seen is not None
        steps.append(seen)
    status, facts = play(steps)
    size = len(json.dumps(status))
    assert size < 256 * 1024, size
    assert len(status["timeline"]) <= core.Limits().max_timeline_entries
    assert status["timelineDropped"] > 0
    assert status["timeline"][0]["type"] == "Created"
    assert status["probeFailures"]["readiness"] == 6000
    assert status["summary"]["restarts"] == 300
    probe_entries = [e for e in status["timeline"] if e["type"] == "ProbeFailed"]
    assert len(probe_entries) == 1 and probe_entries[0]["count"] == 6000
    assert all(
        len(e.get("message", "")) <= core.Limits().max_message_length for e in status["timeline"]
    )
    assert any(e.get("message", "").endswith("…[truncated]") for e in status["timeline"])
    assert not list(VALIDATOR.iter_errors(status))
    # dropped status-derived facts are not re-added by a relist
    again = core.advance(status, steps[-2001], now=at(99999))
    assert again.facts == ()


def test_small_timeline_limit_keeps_created_and_the_latest() -> None:
    limits = core.Limits(max_timeline_entries=10)
    status, _ = play(SCENARIOS["graceful"](), limits=limits)
    types = [e["type"] for e in status["timeline"]]
    assert len(types) == 10 and types[0] == "Created"
    assert "PodDeleted" in types and "ExitedOnTerm" in types
    assert status["timelineDropped"] > 0


# --- hostile input -----------------------------------------------------------------------

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2025-06-01T12:00:00Z",
            "Pod",
            "True",
            "app",
        ]
    ),
)
garbage = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "metadata",
                    "spec",
                    "status",
                    "containers",
                    "containerStatuses",
                    "state",
                    "running",
                    "terminated",
                    "waiting",
                    "name",
                    "uid",
                    "kind",
                    "involvedObject",
                    "count",
                    "series",
                    "endpoints",
                    "conditions",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "restartCount",
                    "exitCode",
                    "finishedAt",
                    "startedAt",
                    "lastState",
                    "reason",
                    "message",
                    "firstTimestamp",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        ),
    ),
    max_leaves=25,
)


def _mutate(value: Any, path: list[str], replacement: Any) -> Any:
    if not path or not isinstance(value, dict):
        return replacement
    copy = dict(value)
    key = path[0] if path[0] in copy else next(iter(copy), path[0])
    copy[key] = _mutate(copy.get(key), path[1:], replacement)
    return copy


BASE_POD = pod(
    phase="Running",
    conditions=running_conditions(),
    statuses=[running(restart_count=2, last=terminated_state(137, 1, 5))],
    deleted_at=100,
)
BASE_EVENT = event("Unhealthy", "Readiness probe failed: x", container="app", kind="Warning")


@SETTINGS
@given(
    raw=garbage,
    path=st.lists(
        st.sampled_from(
            [
                "metadata",
                "spec",
                "status",
                "containerStatuses",
                "conditions",
                "deletionGracePeriodSeconds",
                "involvedObject",
                "count",
            ]
        ),
        max_size=3,
    ),
    replacement=garbage,
    stored=garbage,
)
def test_hostile_input_never_raises(
    raw: Any, path: list[str], replacement: Any, stored: Any
) -> None:
    candidates: list[core.Observation] = []
    for raw_pod in (raw, _mutate(BASE_POD, path, replacement)):
        candidates.append(core.observe_pod(raw_pod if isinstance(raw_pod, dict) else {}))
    for raw_event in (raw, _mutate(BASE_EVENT, path, replacement)):
        seen = core.observe_event(raw_event if isinstance(raw_event, dict) else {})
        if seen is not None:
            candidates.append(seen)
    slices = [
        raw if isinstance(raw, dict) else None,
        _mutate(
            endpoint_slice(members=[(POD, UID, "10.0.0.1", True, True, False)]), path, replacement
        ),
    ]
    candidates += core.observe_endpoint_slice_change(
        slices[0], slices[1] if isinstance(slices[1], dict) else None, now=at(1)
    )
    candidates.append(core.PodGone(NAMESPACE, POD, None, at(1), False))
    status: Any = stored if isinstance(stored, dict) else None
    for observation in candidates:
        step = core.advance(status, observation, now=at(10))
        json.dumps(step.status, allow_nan=False)
        errors = list(VALIDATOR.iter_errors(step.status))
        assert not errors, errors[0]
        status = step.status


def _inflate(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: _inflate(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_inflate(item) for item in value] * 3
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return 2**40
    if isinstance(value, str) and not value.startswith("20"):
        return "é" * 5000
    return value


def test_a_stored_status_with_absurd_values_renders_within_the_schema() -> None:
    for steps in SCENARIOS.values():
        status, _ = play(steps())
        rendered = core.advance(
            _inflate(status), core.PodGone(NAMESPACE, POD, "x", at(1), True), now=at(1)
        )
        errors = list(VALIDATOR.iter_errors(rendered.status))
        assert not errors, errors[0]


@pytest.mark.parametrize("extreme", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_extreme_timestamps_do_not_overflow(extreme: str) -> None:
    raw = pod(
        phase="Failed",
        containers=[container(pre_stop=["sleep", "1"])],
        conditions=running_conditions(),
        statuses=[terminated(exit_code=137, finished_at=40)],
        deleted_at=10,
        grace=2**31 - 1,
    )
    raw["metadata"]["creationTimestamp"] = extreme
    raw["metadata"]["deletionTimestamp"] = extreme
    raw["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = extreme
    raw["status"]["conditions"][0]["lastTransitionTime"] = extreme
    status, _ = play([core.observe_pod(raw), core.PodGone(NAMESPACE, POD, UID, at(50), True)])
    assert not list(VALIDATOR.iter_errors(status))
