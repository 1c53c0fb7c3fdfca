"""Real watch streams (recorded on a real cluster by ``record_traces``) replayed through the core.

The first half asserts, per trace, what the record must say; the second half checks that what
the operator may do to the same data (see a line twice, relist, get Events late, restart)
changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import pytest

from tests.unit.builders import keyed, timeline_keys

from .replay import Line, Replayer, clock, latest, load, replay, trace_clock, trace_names

Obj = dict[str, Any]


# --- what each trace must show -------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What the record of a trace's pod must hold after the whole trace.

    Attributes:
        pod: The pod's name.
        outcome: The record's outcome.
        present: Entry types, or (type, container) pairs, that must be in the timeline.
        absent: Entry types, or (type, container) pairs, that must not be.
        ends: (type, container, exitCode, signal) of entries that must be present.
        probes: (container, probe type) of the ProbeFailed entries, exactly.
        after_deadline: For a kill at the deadline: the range of (entry time − deadline), in
            seconds, of the entry of that type, as (type, low, high).
        before_deadline: Entry types whose time must be at or after the deletion request and
            before the deadline (exits on TERM).
    """

    pod: str
    outcome: str
    present: tuple[str | tuple[str, str], ...] = ()
    absent: tuple[str | tuple[str, str], ...] = ()
    ends: tuple[tuple[str, str, int, str | None], ...] = ()
    probes: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    after_deadline: tuple[str, float, float] | None = None
    before_deadline: tuple[str, ...] = ()


LIFE = ("Created", "Scheduled", "SandboxReady", "PodDeleted")
TERM_STEPS = ("DeletionRequested", "KillingStarted")

EXPECTED: dict[str, Expect] = {
    "graceful": Expect(
        pod="graceful",
        outcome="GracefulShutdown",
        present=(*LIFE, *TERM_STEPS, ("ContainerStarted", "app"), ("ContainerReady", "app")),
        absent=("KilledAfterGrace", "OOMKilled", "Evicted", "ContainerRestarted"),
        ends=(("ExitedOnTerm", "app", 0, "TERM"),),
        before_deadline=("ExitedOnTerm",),
    ),
    "killed-after-grace": Expect(
        pod="stubborn",
        outcome="KilledAfterGrace",
        present=(*LIFE, *TERM_STEPS, ("ContainerStarted", "app")),
        absent=("ExitedOnTerm", "OOMKilled", "PreStopHookFailed"),
        ends=(("KilledAfterGrace", "app", 137, "KILL"),),
        after_deadline=("KilledAfterGrace", -1.5, 1.5),
    ),
    "prestop-extension": Expect(
        pod="slow-stop",
        outcome="KilledAfterGrace",
        present=(*LIFE, *TERM_STEPS, ("PreStopHookFailed", "app")),
        absent=("ExitedOnTerm", "OOMKilled"),
        ends=(("KilledAfterGrace", "app", 137, "KILL"),),
        after_deadline=("KilledAfterGrace", 1.0, 3.5),
    ),
    "oom": Expect(
        pod="hog",
        outcome="OOMKilled",
        present=(*LIFE, ("ContainerStarted", "hog")),
        absent=("KilledAfterGrace", "ExitedOnTerm", "ContainerRestarted", "KillingStarted"),
        ends=(("OOMKilled", "hog", 137, "KILL"),),
    ),
    "succeeded": Expect(
        pod="once",
        outcome="Succeeded",
        present=(*LIFE, ("ContainerStarted", "job")),
        absent=("ExitedOnTerm", "KilledAfterGrace", "ContainerRestarted", "OOMKilled"),
        ends=(("ContainerTerminated", "job", 0, None),),
    ),
    "failed": Expect(
        pod="broken",
        outcome="Failed",
        present=(*LIFE, ("ContainerStarted", "job")),
        absent=("ExitedOnTerm", "KilledAfterGrace", "ContainerRestarted", "OOMKilled"),
        ends=(("ContainerTerminated", "job", 3, None),),
    ),
    "init-retry": Expect(
        pod="initialised",
        outcome="GracefulShutdown",
        present=(
            *LIFE,
            *TERM_STEPS,
            ("ContainerStarted", "prepare"),
            ("ContainerRestarted", "prepare"),
            ("ContainerStarted", "app"),
        ),
        absent=(("ContainerRestarted", "app"), "KilledAfterGrace"),
        ends=(
            ("ContainerTerminated", "prepare", 1, None),
            ("ContainerTerminated", "prepare", 0, None),
            ("ExitedOnTerm", "app", 0, "TERM"),
        ),
        before_deadline=("ExitedOnTerm",),
    ),
    "sidecar": Expect(
        pod="with-sidecar",
        outcome="GracefulShutdown",
        present=(
            *LIFE,
            *TERM_STEPS,
            ("SidecarStarted", "proxy"),
            ("SidecarReady", "proxy"),
            ("ContainerStarted", "app"),
            ("ContainerReady", "app"),
            ("KillingStarted", "proxy"),
        ),
        absent=(("ContainerStarted", "proxy"), ("ContainerReady", "proxy"), "KilledAfterGrace"),
        ends=(("ExitedOnTerm", "app", 0, "TERM"), ("ExitedOnTerm", "proxy", 0, "TERM")),
        # the kubelet probed the sidecar once more after its server had stopped on TERM
        probes=frozenset({("proxy", "readiness")}),
        before_deadline=("ExitedOnTerm",),
    ),
    "probes": Expect(
        pod="probed",
        outcome="GracefulShutdown",
        present=(
            *LIFE,
            *TERM_STEPS,
            ("StartupProbePassed", "app"),
            ("LivenessRestart", "app"),
            ("ContainerRestarted", "app"),
        ),
        absent=(("ContainerReady", "app"), "KilledAfterGrace"),
        ends=(("ExitedOnTerm", "app", 0, "TERM"),),
        probes=frozenset({("app", "readiness"), ("app", "liveness")}),
        before_deadline=("ExitedOnTerm",),
    ),
    "image-pull-failure": Expect(
        pod="unpullable",
        outcome="Failed",
        present=(
            "Created",
            "Scheduled",
            "PodDeleted",
            "DeletionRequested",
            ("ImagePulling", "app"),
            ("ImagePullFailed", "app"),
            ("BackOff", "app"),
            ("ContainerWaiting", "app"),
        ),
        absent=("ContainerStarted", "ExitedOnTerm", "KilledAfterGrace", "ImagePulled"),
    ),
    "unschedulable": Expect(
        pod="nowhere",
        outcome="Deleted",
        present=("Created", "FailedScheduling", "ConditionChanged", "PodDeleted"),
        absent=("Scheduled", "SandboxReady", "ContainerStarted", "ForceDeleted", "KillingStarted"),
    ),
    "force-deleted": Expect(
        pod="forced",
        outcome="ForceDeleted",
        present=(*LIFE, "ForceDeleted", ("ContainerStarted", "app")),
        absent=("DeletionRequested", "ExitedOnTerm", "KilledAfterGrace"),
    ),
    "evicted": Expect(
        pod="evictee",
        outcome="Evicted",
        present=(*LIFE, *TERM_STEPS, "Evicted"),
        absent=("KilledAfterGrace", "Preempted"),
        ends=(("ExitedOnTerm", "app", 0, "TERM"),),
        before_deadline=("ExitedOnTerm",),
    ),
    "service-endpoints": Expect(
        pod="web",
        outcome="GracefulShutdown",
        present=(*LIFE, *TERM_STEPS, "EndpointChanged", "RemovedFromEndpoints"),
        absent=("KilledAfterGrace",),
        ends=(("ExitedOnTerm", "web", 0, "TERM"),),
        before_deadline=("ExitedOnTerm",),
    ),
}

# --- helpers -----------------------------------------------------------------------------------


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@cache
def final(name: str) -> Mapping[str, Any]:
    """The record status after the whole trace, in arrival order (shared: do not modify)."""
    statuses = replay(load(name), trace_clock(name)).statuses
    pods = {pod_name: status for (_, pod_name), status in statuses.items()}
    assert set(pods) == {EXPECTED[name].pod}, f"{name}: records for {sorted(pods)}"
    return pods[EXPECTED[name].pod]


def timeline(status: Mapping[str, Any]) -> list[Obj]:
    return list(status.get("timeline") or [])


def of(status: Mapping[str, Any], kind: str, container: str | None = None) -> list[Obj]:
    return [
        e
        for e in timeline(status)
        if e["type"] == kind and (container is None or e.get("container") == container)
    ]


def describe(status: Mapping[str, Any]) -> str:
    return "\n".join(
        f"  {e['time']} {e['type']} [{e.get('container', '')}] {e['summary']}"
        for e in timeline(status)
    )


@dataclass(frozen=True)
class Deletion:
    """The deletion request as the API first showed it: requested at T, deadline D."""

    requested: datetime
    deadline: datetime
    grace: int


def first_deletion(name: str) -> Deletion | None:
    for line in load(name):
        meta = line.object.get("metadata") or {}
        if line.stream == "pods" and meta.get("deletionTimestamp"):
            deadline = parse(meta["deletionTimestamp"])
            grace = int(meta["deletionGracePeriodSeconds"])
            return Deletion(deadline - timedelta(seconds=grace), deadline, grace)
    return None


def pod_lines(name: str) -> list[Line]:
    return [line for line in load(name) if line.stream == "pods"]


# --- the traces themselves -----------------------------------------------------------------------


def test_every_lifecycle_has_a_trace() -> None:
    assert sorted(EXPECTED) == trace_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_trace_is_real_and_complete(name: str) -> None:
    lines = load(name)
    streams = Counter(line.stream for line in lines)
    assert streams["pods"] >= 2 and streams["events"] >= 1
    pods = pod_lines(name)
    assert pods[0].type == "ADDED" and pods[-1].type == "DELETED"
    assert {line.uid for line in pods} == {pods[0].uid}
    for line in lines:
        assert "managedFields" not in (line.object.get("metadata") or {})
        assert line.type in {"ADDED", "MODIFIED", "DELETED"}


# --- per trace: outcome, entries, values, times -------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_outcome(name: str) -> None:
    status = final(name)
    assert status.get("outcome") == EXPECTED[name].outcome, describe(status)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entries_present_and_absent(name: str) -> None:
    expect, status = EXPECTED[name], final(name)
    for item in expect.present:
        kind, container = item if isinstance(item, tuple) else (item, None)
        assert of(status, kind, container), f"{name}: no {item}\n{describe(status)}"
    for item in expect.absent:
        kind, container = item if isinstance(item, tuple) else (item, None)
        assert not of(status, kind, container), f"{name}: unexpected {item}\n{describe(status)}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exit_codes_and_signals(name: str) -> None:
    status = final(name)
    for kind, container, exit_code, signal in EXPECTED[name].ends:
        found = [(e.get("exitCode"), e.get("signal")) for e in of(status, kind, container)]
        assert (exit_code, signal) in found, f"{name}: {kind} {container}: {found}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_probe_failures(name: str) -> None:
    status = final(name)
    expected = EXPECTED[name].probes
    assert {(e.get("container"), e.get("probe")) for e in of(status, "ProbeFailed")} == expected
    counters = status["probeFailures"]
    for probe in ("liveness", "readiness", "startup"):
        assert (counters[probe] > 0) == any(kind == probe for _, kind in expected), counters


def test_probes_values() -> None:
    status = final("probes")
    counters = status["probeFailures"]
    assert counters["readiness"] >= 3 and counters["liveness"] >= 2 and counters["startup"] == 0
    (restart,) = of(status, "LivenessRestart", "app")
    assert restart["probe"] == "liveness"
    assert status["summary"]["restarts"] == 1
    assert len(of(status, "StartupProbePassed", "app")) == 2  # once per run


@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED) if EXPECTED[n].after_deadline])
def test_kill_time_against_the_deadline(name: str) -> None:
    expect, status = EXPECTED[name], final(name)
    assert expect.after_deadline is not None
    kind, low, high = expect.after_deadline
    deletion = first_deletion(name)
    assert deletion is not None and deletion.grace > 0
    (killed,) = of(status, kind)
    seconds = (parse(killed["time"]) - deletion.deadline).total_seconds()
    assert low <= seconds <= high, f"{name}: {kind} {seconds:+.1f} s from the deadline"


@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED) if EXPECTED[n].before_deadline])
def test_exit_on_term_before_the_deadline(name: str) -> None:
    status, deletion = final(name), first_deletion(name)
    assert deletion is not None and deletion.grace > 0
    for kind in EXPECTED[name].before_deadline:
        for found in of(status, kind):
            at = parse(found["time"])
            assert deletion.requested - timedelta(seconds=1) <= at < deletion.deadline


GRACEFUL_DELETES = [
    name
    for name, expect in sorted(EXPECTED.items())
    if "DeletionRequested" in expect.present and name != "image-pull-failure"
]


@pytest.mark.parametrize("name", GRACEFUL_DELETES)
def test_deletion_request_time_and_grace(name: str) -> None:
    status, deletion = final(name), first_deletion(name)
    assert deletion is not None
    (requested,) = of(status, "DeletionRequested")
    assert parse(requested["time"]) == deletion.requested
    assert f"grace period {deletion.grace}s" in requested["summary"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_timeline_in_time_order_with_unique_keys(name: str) -> None:
    status = final(name)
    entries = timeline(status)
    times = [parse(e["time"]) for e in entries]
    assert times == sorted(times)
    keys = timeline_keys(status)
    assert len(keys) == len(set(keys))
    uid = pod_lines(name)[0].uid
    assert all(key.startswith(uid + "/") for key in keys)
    assert status["podUID"] == uid


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_status_times_come_from_the_pod(name: str) -> None:
    status = final(name)
    created = pod_lines(name)[0].object["metadata"]["creationTimestamp"]
    (entry,) = of(status, "Created")
    assert parse(entry["time"]) == parse(created) == parse(status["times"]["created"])
    assert status["removal"]["observed"] is True


def test_service_endpoints_termination_block() -> None:
    status = final("service-endpoints")
    changes = of(status, "EndpointChanged")
    assert len(changes) >= 2  # added (ready), then terminating (serving, not ready)
    assert any("terminating=true" in e["summary"] for e in changes)
    (removal,) = status["termination"]["endpointRemovals"]
    assert removal["service"] == "web"
    deletion = first_deletion("service-endpoints")
    assert deletion is not None
    assert deletion.requested <= parse(removal["terminatingAt"]) <= parse(removal["removedAt"])


def test_prestop_extension_termination_block() -> None:
    status = final("prestop-extension")
    (pre_stop,) = status["termination"]["preStop"]
    assert pre_stop["container"] == "app" and pre_stop["configured"] and pre_stop["failed"]


def test_evicted_disruption_reason() -> None:
    termination = final("evicted")["termination"]
    assert termination["disruptionReason"] == "EvictionByEvictionAPI"


NORMAL_DELETES = sorted(n for n, e in EXPECTED.items() if "DeletionRequested" in e.present)


@pytest.mark.parametrize("name", NORMAL_DELETES)
def test_termination_block_keeps_the_requested_deletion(name: str) -> None:
    """The kubelet's own final delete (grace 0, once every container stopped) is no request."""
    status, deletion = final(name), first_deletion(name)
    assert deletion is not None and deletion.grace > 0
    last = pod_lines(name)[-1].object["metadata"]
    assert last["deletionGracePeriodSeconds"] == 0  # what the kubelet's removal leaves
    block = status["termination"]
    assert parse(block["requestedAt"]) == deletion.requested
    assert parse(block["deadline"]) == deletion.deadline
    assert block["gracePeriodSeconds"] == deletion.grace and block["forced"] is False
    assert not of(status, "ForceDeleted"), describe(status)


# --- behaviour first seen on real data ----------------------------------------------------------

FINISHED_THEN_DELETED = ["failed", "oom", "succeeded"]


@pytest.mark.parametrize("name", FINISHED_THEN_DELETED)
def test_finished_pod_deleted_normally_is_not_force_deleted(name: str) -> None:
    status = final(name)
    assert not of(status, "ForceDeleted"), describe(status)
    assert (status.get("termination") or {}).get("forced") is not True


# --- the same data, fed as the operator may see it -----------------------------------------------


def keys(statuses: Mapping[tuple[str, str], Obj]) -> dict[tuple[str, str], list[str]]:
    return {pod: timeline_keys(s) for pod, s in statuses.items()}


def counts(statuses: Mapping[tuple[str, str], Obj]) -> dict[str, int]:
    return {k: e.get("count", 1) for s in statuses.values() for k, e in keyed(s).items()}


def outcomes(statuses: Mapping[tuple[str, str], Obj]) -> dict[tuple[str, str], Any]:
    return {pod: s.get("outcome") for pod, s in statuses.items()}


@cache
def baseline(name: str) -> Replayer:
    return replay(load(name), trace_clock(name))


def assert_same(name: str, variant: Replayer, *, same_counts: bool = True) -> None:
    base = baseline(name)
    got, want = keys(variant.statuses), keys(base.statuses)
    for pod, found in got.items():
        assert len(found) == len(set(found)), f"{name}: duplicate keys for {pod}"
    assert {p: set(k) for p, k in got.items()} == {p: set(k) for p, k in want.items()}
    assert outcomes(variant.statuses) == outcomes(base.statuses)
    if same_counts:
        assert counts(variant.statuses) == counts(base.statuses)


def cuts(lines: Sequence[Line]) -> list[int]:
    """A few places inside a trace: its quarters, right after the deletion request is first
    seen, and right before the pod's removal."""
    places = {len(lines) // 4, len(lines) // 2, 3 * len(lines) // 4}
    for i, line in enumerate(lines):
        if line.stream == "pods" and (line.object.get("metadata") or {}).get("deletionTimestamp"):
            places.add(i + 1)
            break
    places.update(
        i for i, line in enumerate(lines) if line.stream == "pods" and line.type == "DELETED"
    )
    return sorted(p for p in places if 0 < p < len(lines))


ALL = sorted(EXPECTED)


@pytest.mark.parametrize("name", ALL)
def test_every_line_twice(name: str) -> None:
    lines = load(name)
    doubled = [line for line in lines for _ in range(2)]
    assert_same(name, replay(doubled, trace_clock(name)))


@pytest.mark.parametrize("name", ALL)
def test_relists_midway_and_at_the_end(name: str) -> None:
    lines, times = load(name), trace_clock(name)
    prefix, done = Replayer(), 0
    for cut in cuts(lines):
        prefix = replay(lines[done:cut], times, prefix)
        done = cut
        replayer = prefix.copy()
        replayer.relist(latest(lines[:cut]), times[lines[cut - 1].index])
        replay(lines[cut:], times, replayer)
        replayer.relist(latest(lines), times[lines[-1].index])
        assert_same(name, replayer)


def reordered(lines: Sequence[Line], first: Callable[[Line], bool]) -> list[Line]:
    return [line for line in lines if first(line)] + [line for line in lines if not first(line)]


@pytest.mark.parametrize("name", ALL)
def test_events_after_the_pods(name: str) -> None:
    order = reordered(load(name), lambda line: line.stream != "events")
    assert_same(name, replay(order, clock(order)))


@pytest.mark.parametrize("name", ALL)
def test_events_before_the_pods(name: str) -> None:
    order = reordered(load(name), lambda line: line.stream == "events")
    assert_same(name, replay(order, clock(order)))


@pytest.mark.parametrize("name", ALL)
def test_restart_at_the_end(name: str) -> None:
    lines, times = load(name), trace_clock(name)
    replayer = replay(lines, times)
    restarted = replayer.restart(latest(lines), times[lines[-1].index])
    assert restarted.facts == []
    assert restarted.statuses == replayer.statuses
    assert_same(name, restarted)


@pytest.mark.parametrize("name", ALL)
def test_restarts_midway(name: str) -> None:
    lines, times = load(name), trace_clock(name)
    before, done = Replayer(), 0
    for cut in cuts(lines):
        before = replay(lines[done:cut], times, before)
        done = cut
        restarted = before.restart(latest(lines[:cut]), times[lines[cut - 1].index])
        replay(lines[cut:], times, restarted)
        assert_same(name, restarted)
