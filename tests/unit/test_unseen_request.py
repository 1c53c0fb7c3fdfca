"""A deletion first seen only at the pod's removal: the request itself came while unwatched.

The kubelet's final grace-0 delete rewrites deletionTimestamp to its own time, so an operator
that was down while a pod was deleted gracefully sees only that removal, after the containers
ended. The kubelet's Killing Event ("Stopping container") still tells that a request stopped
them; without it, the pod is judged by its own end.
"""

from __future__ import annotations

from typing import Any

import pytest

from podtrail import core
from podtrail.core.load import load_status

from .builders import at, container, event, pod, running, running_conditions, terminated


def _pod_step(status: dict[str, Any], raw: dict[str, Any], now: float) -> dict[str, Any]:
    return dict(core.advance(status, core.observe_pod(raw), now=at(now)).status)


def _event_step(status: dict[str, Any], raw: dict[str, Any], now: float) -> dict[str, Any]:
    seen = core.observe_event(raw)
    assert seen is not None
    return dict(core.advance(status, seen, now=at(now)).status)


def _alive() -> dict[str, Any]:
    return pod(
        phase="Running",
        statuses=[running("app", started_at=10, ready=True)],
        conditions=running_conditions(),
    )


def _removed(exit_code: int, finished: float, removed_at: float, **fields: Any) -> dict[str, Any]:
    """The pod as the kubelet's final delete leaves it: ended, grace 0, stamped at removed_at."""
    phase = "Succeeded" if exit_code == 0 else "Failed"
    return pod(
        phase=phase,
        statuses=[terminated("app", exit_code=exit_code, started_at=10, finished_at=finished)],
        conditions=running_conditions(),
        deleted_at=removed_at,
        grace=0,
        **fields,
    )


STOPPING = event("Killing", "Stopping container app", first=100, container="app")


def _summaries(status: dict[str, Any], entry_type: str) -> list[str]:
    return [e["summary"] for e in status["timeline"] if e["type"] == entry_type]


@pytest.mark.parametrize("event_first", [True, False], ids=["event-first", "pod-first"])
@pytest.mark.parametrize(
    ("exit_code", "outcome", "note"),
    [
        (0, "GracefulShutdown", "exited on SIGTERM (inferred)"),
        (143, "GracefulShutdown", "exited on SIGTERM (inferred)"),
        (137, "KilledAfterGrace", "SIGKILL after the grace period (inferred)"),
        (1, "Failed", "exited with an error after the request"),
    ],
)
def test_the_killing_event_tells_the_unseen_request(
    exit_code: int, outcome: str, note: str, event_first: bool
) -> None:
    status = _pod_step({}, _alive(), 50)
    removal = _removed(exit_code, finished=100, removed_at=102)
    if event_first:
        status = _event_step(status, STOPPING, 101)
        status = _pod_step(status, removal, 103)
    else:
        status = _pod_step(status, removal, 103)
        # Until the Event arrives, nothing shows the pod was stopped: its own end stands.
        assert status["outcome"] == ("Succeeded" if exit_code == 0 else "Failed")
        status = _event_step(status, STOPPING, 104)
    assert status["outcome"] == outcome
    termination = status["termination"]
    assert termination["seenAtRemoval"] is True
    assert termination["gracePeriodSeconds"] == 0
    assert "T: the kubelet's Killing Event; the request was not seen" in termination["evidence"]
    assert note in termination["evidence"]
    assert not _summaries(status, "ForceDeleted")
    assert _summaries(status, "DeletionRequested") == [
        "Finished pod removed (grace 0): any deletion request before it was not seen"
    ]


@pytest.mark.parametrize("finished", [95.0, 101.6], ids=["seconds-before", "same-second"])
def test_a_removal_without_a_killing_event_keeps_the_pods_own_end(finished: float) -> None:
    status = _pod_step({}, _alive(), 50)
    status = _pod_step(status, _removed(0, finished=finished, removed_at=102), 103)
    assert status["outcome"] == "Succeeded"
    assert "seenAtRemoval" in status["termination"]
    assert not status["termination"]["containers"]  # no request to judge the exit against
    assert not _summaries(status, "ForceDeleted")
    assert not _summaries(status, "ExitedOnTerm")


def test_a_pod_seen_finished_before_its_removal_was_deleted_after_it_finished() -> None:
    status = _pod_step({}, _alive(), 50)
    ended = _removed(0, finished=60, removed_at=0)
    meta = ended["metadata"]
    del meta["deletionTimestamp"], meta["deletionGracePeriodSeconds"]
    status = _pod_step(status, ended, 61)
    status = _pod_step(status, _removed(0, finished=60, removed_at=300), 301)
    assert status["outcome"] == "Succeeded"
    assert _summaries(status, "DeletionRequested") == [
        "Deletion requested after the pod had finished: it is removed at once"
    ]


def test_the_kubelet_stopping_a_sidecar_after_the_app_is_no_request() -> None:
    """A native sidecar is stopped (Killing) once the app container has finished on its own."""
    inits = [{**container("proxy"), "restartPolicy": "Always"}]
    app_end = terminated("app", exit_code=0, started_at=10, finished_at=60)
    sidecar_end = terminated("proxy", exit_code=143, started_at=3, finished_at=61)
    status = _pod_step({}, _alive(), 50)
    status = _event_step(
        status, event("Killing", "Stopping container proxy", first=60, container="proxy"), 60.5
    )
    removed = pod(
        phase="Succeeded",
        init_containers=inits,
        init_statuses=[sidecar_end],
        statuses=[app_end],
        conditions=running_conditions(),
        deleted_at=300,
        grace=0,
    )
    status = _pod_step(status, removed, 301)
    assert status["outcome"] == "Succeeded"


def test_a_pod_past_its_active_deadline_is_no_request() -> None:
    status = _pod_step({}, _alive(), 50)
    status = _event_step(status, STOPPING, 101)
    removed = _removed(137, finished=103, removed_at=300, reason="DeadlineExceeded")
    status = _pod_step(status, removed, 301)
    assert status["outcome"] == "Failed"


def test_the_mark_survives_a_reload_and_a_repeated_sight() -> None:
    status = _pod_step({}, _alive(), 50)
    removal = _removed(0, finished=100, removed_at=102)
    status = _pod_step(status, removal, 103)
    status = _pod_step(status, removal, 104)
    status = _event_step(status, STOPPING, 105)
    record = load_status(status)
    assert record.deletion is not None and record.deletion.at_removal
    assert status["outcome"] == "GracefulShutdown"
