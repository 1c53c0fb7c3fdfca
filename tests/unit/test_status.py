"""The status as `kubectl get` and `kubectl describe` show it, and as earlier versions wrote it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from podtrail import core
from podtrail.core.history import END_EVIDENCE, LAST_MOMENTS, MOMENT_SUMMARY
from podtrail.core.render import MAX_LAST_EVENT

from .builders import (
    UID,
    at,
    condition,
    container,
    event,
    keyed,
    pod,
    running,
    running_conditions,
    sidecar,
    terminated,
    timeline_keys,
    ts,
)
from .scenarios import SCENARIOS, play

# --- what describe prints ------------------------------------------------------------------


def describe_order(fields: dict[str, Any]) -> list[str]:
    """Field names in the order `kubectl describe` prints them: sorted, byte by byte."""
    return sorted(fields)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_bookkeeping_is_apart_and_printed_last(name: str) -> None:
    status, _ = play(SCENARIOS[name]())
    assert describe_order(status)[-1] == "tracking"
    assert "seenEvents" not in status
    for item in status["timeline"]:
        assert "key" not in item
        assert item.get("count", 2) > 1, "a count of 1 goes without saying"
    assert len(timeline_keys(status)) == len(set(timeline_keys(status)))


def test_durations_say_their_unit() -> None:
    status, _ = play(SCENARIOS["graceful"]())
    assert status["durations"]
    assert all(name.endswith("Seconds") for name in status["durations"])


# --- what get prints ---------------------------------------------------------------------------


def test_an_ended_record_says_its_phase_and_readiness_are_the_last_known() -> None:
    steps = SCENARIOS["force_deleted"]()
    alive, _ = play(steps[:-1])
    assert alive["summary"]["phase"] == "Running" and alive["summary"]["ready"] == "1/1"
    gone, _ = play(steps)
    assert gone["summary"]["phase"] == "Running (last)"
    assert gone["summary"]["ready"] == "1/1 (last)"
    assert gone["phase"] == "Running", "the phase itself stays as the pod last had it"


@pytest.mark.parametrize(
    ("statuses", "init_statuses", "conditions", "expected"),
    [
        # the sidecar started: done
        ([running("app")], [running("proxy", started=True)], [], "1/1"),
        # started but its startup probe has not passed yet: not done
        ([], [running("proxy", started=False)], [], "0/1"),
        # the pod is initialized: every init container and sidecar is done, even one that
        # has since stopped (at the end of the pod's life)
        (
            [terminated("app", exit_code=0)],
            [terminated("proxy", exit_code=143)],
            [condition("Initialized", "True", 2)],
            "1/1",
        ),
    ],
)
def test_a_native_sidecar_counts_as_init_done_once_started(
    statuses: list[dict[str, Any]],
    init_statuses: list[dict[str, Any]],
    conditions: list[dict[str, Any]],
    expected: str,
) -> None:
    seen = core.observe_pod(
        pod(
            phase="Running",
            init_containers=[sidecar("proxy")],
            statuses=statuses,
            init_statuses=init_statuses,
            conditions=conditions,
        )
    )
    status, _ = play([seen])
    assert status["summary"]["init"] == expected


@pytest.mark.parametrize(
    ("owner", "expected"),
    [
        (("ReplicaSet", "web-7d9f8b6c5d"), "Deployment/web"),
        (("StatefulSet", "db"), "StatefulSet/db"),
        (("Node", "worker-1"), "Node/worker-1"),
        (None, None),
    ],
)
def test_the_owner_column(owner: tuple[str, str] | None, expected: str | None) -> None:
    status, _ = play([core.observe_pod(pod(owner=owner))])
    assert status["summary"].get("owner") == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("graceful", "Removed from the endpoints of Service web (10.244.1.7)"),
        ("job_succeeded", "Deletion requested: grace period 30s, SIGKILL deadline 2025-06-…"),
        ("unschedulable", "Deletion requested before scheduling: the pod is removed at once"),
        ("crash_loop", "Back-off for container app: Back-off restarting failed containe…"),
    ],
)
def test_last_event_is_the_newest_notable_entry_cut_short(name: str, expected: str) -> None:
    status, _ = play(SCENARIOS[name]())
    assert status["lastEvent"] == expected
    assert len(status["lastEvent"]) <= MAX_LAST_EVENT
    assert status["lastEvent"] != "Pod removed from the API"
    assert not status["lastEvent"].startswith("Condition ")


def test_last_event_of_a_pod_with_only_details_is_its_newest_entry() -> None:
    seen = core.observe_pod(pod(phase="Pending", node=None, owner=None))
    status, _ = play([seen])
    assert status["lastEvent"].startswith("Pod created")


# --- the evidence ------------------------------------------------------------------------------


def _killed(pre_stop_seconds: float, finished: float) -> dict[str, Any]:
    """A pod whose container ignores TERM, deleted at 100 with grace 3, killed at `finished`."""
    spec = [container("worker", pre_stop=["sh", "-c", f"sleep {pre_stop_seconds:g}"])]
    base = {"phase": "Running", "containers": spec, "conditions": running_conditions()}
    alive = core.observe_pod(pod(statuses=[running("worker", started_at=10)], **base))
    deleting = core.observe_pod(
        pod(statuses=[running("worker", started_at=10)], deleted_at=100, grace=3, **base)
    )
    ended = terminated("worker", exit_code=137, started_at=10, finished_at=finished)
    base["phase"] = "Failed"
    killed = core.observe_pod(pod(statuses=[ended], deleted_at=100, grace=3, **base))
    status, _ = play([alive, deleting, killed])
    return status


def test_a_short_prestop_hook_is_no_extension_in_the_evidence() -> None:
    status = _killed(1, 103)
    (kill,) = [e for e in status["timeline"] if e["type"] == "KilledAfterGrace"]
    assert "preStop" not in kill["summary"] and "preStop" not in status["termination"]["evidence"]
    assert "deadline T+3s" in kill["summary"]


def test_a_prestop_hook_still_running_at_the_deadline_is_named() -> None:
    status, _ = play(SCENARIOS["killed_after_grace"]())  # with the kubelet's FailedPreStopHook
    (kill,) = [e for e in status["timeline"] if e["type"] == "KilledAfterGrace"]
    assert "+ 2s preStop extension" in kill["summary"]
    assert "+ 2s preStop extension" in status["termination"]["evidence"]


def test_a_late_kill_alone_does_not_name_the_extension() -> None:
    """Two seconds late, as an extended kill, but no FailedPreStopHook: on a busy node a hook
    that ended in time is followed by as late a kill (seen on the local cluster under load)."""
    status = _killed(1, 105)
    (kill,) = [e for e in status["timeline"] if e["type"] == "KilledAfterGrace"]
    assert "preStop" not in kill["summary"] and "preStop" not in status["termination"]["evidence"]


# --- an earlier instance of the same name ------------------------------------------------------


def test_an_earlier_instance_keeps_a_bounded_timeline_summary_and_termination() -> None:
    status, _ = play(SCENARIOS["recreated"]())
    (earlier,) = status["previousInstances"]
    assert 0 < len(earlier["lastEntries"]) <= LAST_MOMENTS
    assert earlier["timelineEntries"] >= len(earlier["lastEntries"])
    assert all(len(m["summary"]) <= MOMENT_SUMMARY for m in earlier["lastEntries"])
    assert earlier["termination"]["verdict"] == earlier["outcome"] == "GracefulShutdown"
    assert len(earlier["termination"]["evidence"]) <= END_EVIDENCE
    assert core.render_record(core.load_record(status)) == status


def test_an_earlier_instance_without_a_deletion_has_no_termination() -> None:
    first = core.observe_pod(pod(uid="uid-1", phase="Running", statuses=[running()]))
    second = core.observe_pod(pod(uid="uid-2", created=50))
    status, _ = play([first, second])
    (earlier,) = status["previousInstances"]
    assert "termination" not in earlier and earlier["outcome"] == "DeletedUnobserved"
    assert [m["type"] for m in earlier["lastEntries"]] == ["Created", "PhaseChanged"]


# --- records written by earlier versions -------------------------------------------------------


def _as_written_before(status: dict[str, Any]) -> dict[str, Any]:
    """The same status as the version before tracking wrote it (keys in the entries, the
    ledger as objects under seenEvents, durations without their unit, every count)."""
    old = json.loads(json.dumps(status))
    tracking = old.pop("tracking")
    for item, key in zip(old["timeline"], tracking["timelineKeys"], strict=True):
        item["key"] = key
        item.setdefault("count", 1)
    old["seenEvents"] = []
    for line in tracking["events"]:
        ident, count, last = line.rsplit(" ", 2)
        old["seenEvents"].append({"id": ident, "count": int(count), "lastTime": last})
    old["durations"] = {k.removesuffix("Seconds"): v for k, v in old["durations"].items()}
    return old


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_record_written_before_reads_the_same(name: str) -> None:
    status, _ = play(SCENARIOS[name]())
    old = _as_written_before(status)
    assert core.render_record(core.load_record(old)) == status
    steps = SCENARIOS[name]()
    pods = [o for o in steps if isinstance(o, core.PodSeen)]
    relist = [o for o in steps if isinstance(o, core.EventSeen)] + pods[-1:]
    for observation in relist:  # seen again after an upgrade: nothing new
        assert core.advance(old, observation, now=at(9999)).facts == ()


def test_a_lost_key_gets_a_stable_stand_in_and_the_entry_stays() -> None:
    status, _ = play(SCENARIOS["graceful"]())
    broken = json.loads(json.dumps(status))
    broken["tracking"]["timelineKeys"].pop()  # no longer one key per entry
    again = core.render_record(core.load_record(broken))
    assert [e["type"] for e in again["timeline"]] == [e["type"] for e in status["timeline"]]
    assert again == core.render_record(core.load_record(again))


@pytest.mark.parametrize(
    "line",
    [
        "",
        "x",
        "a b",
        "a b c",
        "id 12x 2025-06-01T12:00:00Z",
        "i ² 2025-06-01T12:00:00Z",
        "é" * 500,
    ],
)
def test_a_broken_ledger_line_is_left_out(line: str) -> None:
    status = {"tracking": {"events": [line, "ok 3 2025-06-01T12:00:00Z"]}}
    record = core.load_record(status)
    assert [(s.id, s.count) for s in record.seen_events] == [("ok", 3)]


def test_the_ledger_keeps_counting_events_once() -> None:
    unhealthy = core.observe_event(
        event("Unhealthy", "Readiness probe failed: x", first=20, count=3, container="app")
    )
    assert unhealthy is not None
    status, _ = play([core.observe_pod(pod(phase="Running", statuses=[running()])), unhealthy])
    assert status["tracking"]["events"] == [f"{unhealthy.event_id} 3 {ts(20)}"]
    assert core.advance(status, unhealthy, now=at(30)).facts == ()
    entries = keyed(status)
    assert any(k.startswith(UID) and e["type"] == "ProbeFailed" for k, e in entries.items())
