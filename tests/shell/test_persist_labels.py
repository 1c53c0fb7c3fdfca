"""The writer's labels: the pod's and the operator's, a user's kept, few metadata writes."""

from __future__ import annotations

from typing import Any

from podtrail import core
from tests.shell.test_persist import NAME, NS, OWN, Harness, clock, running
from tests.unit import builders as b

POD_LABELS = {"app": "web", "pod-template-hash": "7d9f8b6c5d"}
OWNER = {k: v for k, v in OWN.items() if k != "podtrail.io/node"}


def unscheduled() -> dict[str, Any]:
    return b.pod(phase="Pending", node=None)


def scheduled() -> dict[str, Any]:
    return b.pod(phase="Pending", conditions=[b.condition("PodScheduled", "True", 1)])


def alive() -> dict[str, Any]:
    return b.pod(
        phase="Running",
        statuses=[b.running("app", started_at=10, ready=True)],
        conditions=b.running_conditions(),
    )


def deleting() -> dict[str, Any]:
    return b.pod(
        phase="Running",
        statuses=[b.running("app", started_at=10, ready=True)],
        conditions=b.running_conditions(),
        deleted_at=100,
        grace=30,
    )


def exited() -> dict[str, Any]:
    return b.pod(
        phase="Succeeded",
        statuses=[b.terminated("app", exit_code=0, started_at=10, finished_at=101)],
        conditions=b.running_conditions(),
        deleted_at=100,
        grace=30,
    )


def see(h: Harness, raw: dict[str, Any], labels: dict[str, str] | None = None) -> None:
    h.writer.submit(core.observe_pod(raw), labels=POD_LABELS if labels is None else labels)


async def test_a_pods_life_writes_labels_at_creation_then_node_once_and_outcome_once() -> None:
    async with running() as h:
        see(h, unscheduled())
        await h.settle()
        assert h.store.labels() == POD_LABELS | OWNER, "created with them: no write of its own"
        assert h.store.calls.count("labels") == 0
        for raw in (scheduled(), alive(), deleting(), exited()):
            see(h, raw)
            await h.settle()
        h.writer.submit(core.PodGone(NS, NAME, b.UID, clock(), True))
        await h.settle()
        assert h.store.labels() == POD_LABELS | OWN | {"podtrail.io/outcome": "GracefulShutdown"}
        assert h.store.calls.count("labels") == 2, "the node once, the outcome once"
        assert h.store.calls.count("create") == 1
        marks = h.store.status(marks=True)["tracking"]["labels"]
        assert len(marks) == len(h.store.labels()), "every label written is marked"


async def test_a_pod_seen_scheduled_from_the_start_needs_no_label_write() -> None:
    async with running() as h:
        see(h, alive())
        await h.settle()
        assert h.store.labels() == POD_LABELS | OWN
        assert h.store.calls.count("labels") == 0


async def test_a_users_labels_on_the_record_are_kept() -> None:
    async with running() as h:
        see(h, unscheduled())
        await h.settle()
        record = h.store.records[(NS, NAME)]
        # a user labels the record and changes one of the operator's labels
        record["metadata"]["labels"] |= {"team": "payments", "podtrail.io/owner-name": "shop"}
        h.writer.adopt(h.store._bump(record))  # the record watch brings the change
        see(h, alive())
        await h.settle()
        h.writer.submit(core.PodGone(NS, NAME, b.UID, clock(), True))
        await h.settle()
        labels = h.store.labels()
        assert labels["team"] == "payments"
        assert labels["podtrail.io/owner-name"] == "shop", "a changed label is the user's now"
        assert labels["podtrail.io/node"] == "worker-1"
        assert labels["podtrail.io/outcome"] == "Deleted"


async def test_a_users_label_the_writer_has_not_seen_yet_is_not_dropped() -> None:
    async with running() as h:
        see(h, unscheduled())
        await h.settle()
        record = h.store.records[(NS, NAME)]
        # A user labels the record; its watch event has not reached the writer yet.
        record["metadata"]["labels"] = dict(record["metadata"]["labels"]) | {"team": "payments"}
        h.store._bump(record)
        see(h, alive())  # the node is known: a label write follows
        await h.settle()
        labels = h.store.labels()
        assert labels["team"] == "payments"
        assert labels["podtrail.io/node"] == "worker-1"


async def test_a_users_value_for_the_operators_key_is_kept_though_echoes_lag() -> None:
    async with running() as h:
        see(h, unscheduled())
        await h.settle()
        stale = h.store._bump(h.store.records[(NS, NAME)])  # an echo the watch brings late
        see(h, alive())
        await h.settle()
        record = h.store.records[(NS, NAME)]
        # A user sets the outcome label the operator would set; the writer's next write fails
        # on it and reads the record again...
        record["metadata"]["labels"] = dict(record["metadata"]["labels"]) | {
            "podtrail.io/outcome": "mine"
        }
        h.store._bump(record)
        see(h, deleting())
        await h.settle()
        # ...then the record watch, behind, brings a version older than the one it read.
        h.writer.adopt(stale)
        see(h, exited())
        h.writer.submit(core.PodGone(NS, NAME, b.UID, clock(), True))
        await h.settle()
        labels = h.store.labels()
        assert labels["podtrail.io/outcome"] == "mine", "the user's value, not the outcome"
        assert labels["podtrail.io/node"] == "worker-1"
        assert h.store.status()["outcome"] == "GracefulShutdown"


async def test_a_pod_label_change_alone_is_written() -> None:
    async with running() as h:
        see(h, alive())
        await h.settle()
        calls = len(h.store.calls)
        assert h.writer.submit(core.observe_pod(alive()), labels=POD_LABELS | {"v": "2"}) == ()
        await h.settle()
        assert h.store.labels() == POD_LABELS | OWN | {"v": "2"}
        assert h.store.calls[calls:] == ["status", "labels"], "its mark first, then the label"


async def test_a_record_written_before_marks_keeps_its_users_labels() -> None:
    async with running() as h:
        status = core.advance(None, core.observe_pod(alive()), now=clock()).status
        assert "labels" not in status["tracking"]  # as an earlier version wrote it: no marks
        record = {
            "metadata": {
                "namespace": NS,
                "name": NAME,
                "uid": "uid-old",
                "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": POD_LABELS | {"team": "payments", "podtrail.io/node": "mine"},
            },
            "spec": {"podName": NAME},
            "status": status,
        }
        h.store.records[(NS, NAME)] = record
        h.writer.adopt(h.store._bump(record))
        see(h, deleting())
        await h.settle()
        labels = h.store.labels()
        assert labels["team"] == "payments" and labels["podtrail.io/node"] == "mine"
        assert labels["podtrail.io/owner-kind"] == "Deployment"


async def test_lifecycle_metrics_keep_their_stage_names() -> None:
    async with running() as h:
        see(h, alive())
        await h.settle()
        seconds = h.metric("podtrail_lifecycle_duration_seconds_count", stage="timeToSchedule")
        assert seconds == 1
        assert h.metric("podtrail_lifecycle_duration_seconds_count", stage="timeToReady") == 1
