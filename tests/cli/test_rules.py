"""The reading rules on made-up records: workload membership, replacements, old and new fields."""

from __future__ import annotations

from typing import Any

from podtrail.cli import record as rec
from podtrail.cli.life import gaps
from podtrail.cli.style import Style
from podtrail.cli.workload import Workload, belongs, pods_of, replacements

T0 = "2026-01-01T00:00:"


def _record(
    name: str, *, owner: dict | None = None, labels: dict | None = None, **status: Any
) -> dict:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns", "labels": dict(labels or {})},
        "spec": {"podName": name},
        "status": dict(status),
    }
    if owner:
        body["status"]["owner"] = owner
    return body


def _times(**moments: str) -> dict:
    return {key: f"{T0}{value}Z" for key, value in moments.items()}


def test_a_deployment_s_pods_by_owner_field_hash_label_or_podtrail_labels() -> None:
    web = Workload("Deployment", "web")
    by_field = _record("a", owner={"kind": "ReplicaSet", "name": "web-5d9f", "deployment": "web"})
    by_hash = _record(
        "b", owner={"kind": "ReplicaSet", "name": "web-5d9f"}, labels={"pod-template-hash": "5d9f"}
    )
    other = _record(
        "c",
        owner={"kind": "ReplicaSet", "name": "web-x-5d9f"},
        labels={"pod-template-hash": "5d9f"},
    )
    no_hash = _record("d", owner={"kind": "ReplicaSet", "name": "web-5d9f"})
    by_labels = _record(
        "e",
        labels={
            "podtrail.io/owner-kind": "ReplicaSet",
            "podtrail.io/owner-name": "web-77aa",
            "pod-template-hash": "77aa",
        },
    )
    deployment_label = _record(
        "f", labels={"podtrail.io/owner-kind": "Deployment", "podtrail.io/owner-name": "web"}
    )
    loner = _record("g")
    candidates = (by_field, by_hash, other, no_hash, by_labels, deployment_label, loner)
    found = [r["metadata"]["name"] for r in candidates if belongs(r, web)]
    assert found == ["a", "b", "e", "f"]
    assert belongs(no_hash, Workload("ReplicaSet", "web-5d9f"))
    assert not belongs(by_field, Workload("StatefulSet", "web-5d9f"))


def test_a_failed_job_pod_is_replaced_and_a_late_scale_up_replaces_nothing() -> None:
    job = {"kind": "Job", "name": "batch"}
    first = _record(
        "batch-1", owner=job, outcome="Failed", times=_times(created="00", finished="05")
    )
    second = _record(
        "batch-2", owner=job, outcome="Succeeded", times=_times(created="15", finished="20")
    )
    found = replacements(pods_of([second, first]))
    assert [(r.old.name, r.new.name) for r in found] == [("batch-1", "batch-2")]
    rs = {"kind": "ReplicaSet", "name": "web-1"}
    gone = _record("web-1-a", owner=rs, times=_times(created="00", deletionRequested="01"))
    late = _record("web-1-b", owner=rs, times={"created": "2026-01-01T01:00:00Z"})
    assert replacements(pods_of([gone, late])) == []
    assert replacements(pods_of([gone, late]), window=7200)[0].new.name == "web-1-b"


def test_the_newest_deletion_before_a_pod_s_creation_is_the_one_it_replaced() -> None:
    rs = {"kind": "ReplicaSet", "name": "web-1"}
    old = _record("a", owner=rs, times=_times(created="00", deletionRequested="10"))
    newer = _record("b", owner=rs, times=_times(created="00", deletionRequested="30"))
    new = _record("c", owner=rs, times=_times(created="30"))
    found = replacements(pods_of([old, newer, new]))
    assert [(r.old.name, r.new.name) for r in found] == [("b", "c")]


def test_durations_in_old_and_new_names() -> None:
    def durations(**values: float) -> dict[str, float]:
        return rec.durations(_record("x", durations=values))

    assert durations(timeToSchedule=1, init=2, timeToReady=3, termination=4) == {
        "schedule": 1, "init": 2, "ready": 3, "termination": 4,
    }  # fmt: skip
    assert durations(
        timeToScheduleSeconds=1, initSeconds=2, timeToReadySeconds=3, terminationSeconds=4
    ) == {"schedule": 1, "init": 2, "ready": 3, "termination": 4}
    assert durations(initMilliseconds=2500) == {"init": 2.5}


def test_gaps_prefer_the_record_s_own_durations_and_compute_the_rest() -> None:
    item = _record(
        "x",
        durations={"initSeconds": 2.5},
        times=_times(
            created="00", scheduled="01", initialized="03", ready="04",
            deletionRequested="10", finished="13", deleted="14",
        ),
    )  # fmt: skip
    assert {label: value for label, value, _ in gaps(item)} == {
        "to schedule": 1, "init": 2.5, "to ready": 4,
        "deletion to exit": 3, "exit to removal": 1, "deletion to removal": 4,
    }  # fmt: skip
    finished_first = _record(
        "y", times=_times(created="00", finished="05", deletionRequested="30", deleted="31")
    )
    assert [label for label, _, _ in gaps(finished_first)] == [], "nothing waited on a deletion"


def test_times_with_or_without_at() -> None:
    item = _record("x", times={"createdAt": f"{T0}00Z", "deletionRequestedAt": f"{T0}05Z"})
    assert set(rec.times(item)) == {"created", "deletionrequested"}


def test_the_timeline_in_any_order_reads_oldest_first() -> None:
    entries = [
        {"time": f"{T0}0{i}Z", "type": kind, "summary": kind, "source": "status", "count": 1}
        for i, kind in enumerate(["Created", "Scheduled", "ContainerStarted"])
    ]
    entries.insert(1, {"time": f"{T0}00Z", "type": "ConditionChanged", "summary": "c"})
    for stored in (
        entries,
        list(reversed(entries)),
        [entries[3], entries[0], entries[2], entries[1]],
    ):
        kinds = [e.type for e in rec.timeline(_record("x", timeline=stored))]
        assert kinds[2:] == ["Scheduled", "ContainerStarted"]
        assert set(kinds[:2]) == {"Created", "ConditionChanged"}
    kinds = [e.type for e in rec.timeline(_record("x", timeline=list(reversed(entries))))]
    assert kinds[:2] == ["Created", "ConditionChanged"], "same-time entries keep the record's order"


def test_missing_and_odd_fields_do_not_break_reading() -> None:
    odd = {
        "metadata": {"name": "x"},
        "status": {
            "timeline": [{"type": "X"}, "junk", None],
            "times": {"created": "not a time"},
            "summary": {"restarts": "3"},
            "owner": {"kind": 1},
        },
    }
    assert rec.timeline(odd) == [] and rec.times(odd) == {}
    assert rec.owner(odd) is None and rec.restarts(odd) is None and rec.created(odd) is None
    assert rec.ended(_record("y", outcome="Deleted", times=_times(deleted="09"))) is not None


def test_earlier_pods_keep_their_last_entries_and_evidence() -> None:
    from podtrail.cli.life import earlier

    item = _record(
        "db-0",
        times=_times(created="30"),
        previousInstances=[
            {
                "uid": "0123456789abcdef",
                "created": f"{T0}00Z",
                "deleted": f"{T0}29Z",
                "phase": "Failed",
                "outcome": "KilledAfterGrace",
                "lastEntries": [
                    {
                        "time": f"{T0}25Z",
                        "type": "DeletionRequested",
                        "summary": "Deletion requested",
                    }
                ],
                "termination": {
                    "requestedAt": f"{T0}25Z",
                    "verdict": "KilledAfterGrace",
                    "evidence": "app: exit 137 (Error) at T+3.0s, deadline T+3s",
                },
            }
        ],
    )
    text = "\n".join(earlier(item, rec.created(item), Style()))
    assert "0123456789abcdef   T-30.0s   T-1.0s    Failed   KilledAfterGrace" in text
    assert "    T-5.0s   DeletionRequested   Deletion requested" in text
    assert "evidence   KilledAfterGrace: app: exit 137 (Error) at T+3.0s, deadline T+3s" in text
    pods = pods_of([item])
    assert pods[0].end_marker == rec.times({"status": {"times": _times(x="25")}})["x"]
    assert [(r.old.label, r.new.label) for r in replacements(pods)] == [
        ("db-0 (earlier, uid 01234567)", "db-0")
    ]


def test_a_request_seen_only_at_removal_reads_as_not_seen() -> None:
    from podtrail.cli.life import ending

    item = _record(
        "web-1",
        outcome="GracefulShutdown",
        times=_times(created="00"),
        termination={
            "requestedAt": f"{T0}15Z",
            "gracePeriodSeconds": 0,
            "seenAtRemoval": True,
            "killingAt": f"{T0}13Z",
            "verdict": "GracefulShutdown",
            "containers": [
                {"name": "app", "exitCode": 0, "verdict": "ExitedOnTerm", "secondsAfterRequest": 0}
            ],
        },
    )
    text = "\n".join(ending(item, rec.created(item), Style()))
    assert "not seen; the finished pod was removed at T+15.0s (grace 0)" in text
    assert "after the Killing Event" in text
    assert "grace period 0s" not in text and "SIGKILL deadline" not in text
