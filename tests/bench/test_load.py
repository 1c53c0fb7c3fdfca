"""The load's pod lifecycle against a fake API: each step's write and the fact it expects."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bench import lifecycle as lc
from bench.load import Player


class FakeKube:
    """Answers every request with a new resourceVersion; keeps (verb, path, body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self._rv = itertools.count(1)

    async def request(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        self.requests.append((method, path, options.get("body")))
        return {"metadata": {"uid": "uid-1", "resourceVersion": str(next(self._rv))}}


LIFE = [
    # step, what is written, the fact expected (type, container) or None, the next step
    ("create", "POST pods", ("Created", None), "schedule"),
    ("schedule", "PATCH status", ("Scheduled", None), "scheduled-event"),
    ("scheduled-event", "POST events", None, "init-start"),
    ("init-start", "PATCH status", ("ContainerStarted", lc.INIT), "init-done"),
    ("init-done", "PATCH status", ("ContainerTerminated", lc.INIT), "app-start"),
    ("app-start", "PATCH status", ("ContainerStarted", lc.APP), "ready"),
    ("ready", "PATCH status", ("ContainerReady", lc.APP), "steady"),
    ("readiness-failed", "POST events", ("ProbeFailed", lc.APP), "steady"),
    ("readiness-failed", "PATCH event", ("ProbeFailed", lc.APP), "steady"),
    ("unready", "PATCH status", ("ContainerNotReady", lc.APP), "ready"),
    ("ready", "PATCH status", ("ContainerReady", lc.APP), "steady"),
    ("liveness-failed", "POST events", ("ProbeFailed", lc.APP), "liveness-kill"),
    ("liveness-kill", "POST events", ("LivenessRestart", lc.APP), "restart"),
    ("restart", "PATCH status", ("ContainerRestarted", lc.APP), "ready"),
    ("ready", "PATCH status", ("ContainerReady", lc.APP), "steady"),
    ("touch", "PATCH pod", None, "steady"),
    ("delete", "DELETE pod", ("DeletionRequested", None), "killing"),
    ("killing", "POST events", ("KillingStarted", lc.APP), "terminate"),
    ("terminate", "PATCH status", ("ExitedOnTerm", lc.APP), "terminate"),
]


def written(request: tuple[str, str, Any]) -> str:
    method, path, _ = request
    if path.endswith("/status"):
        return f"{method} status"
    if "/events" in path:
        return "POST events" if method == "POST" else "PATCH event"
    return "POST pods" if method == "POST" else f"{method} pod"


async def test_a_pod_through_every_step() -> None:
    kube = FakeKube()
    player = Player(kube, run_id="t1", namespaces=["ns"], nodes=["node"])  # type: ignore[arg-type]
    player.recording = True
    pod = player.new_pod()
    pod.exit_code, pod.grace = 143, 30
    for step, write, fact, next_step in LIFE:
        before = (len(kube.requests), len(player.expects))
        await player._step(pod, step)
        assert [written(r) for r in kube.requests[before[0] :]] == [write], step
        facts = [(e.type, e.container) for e in player.expects[before[1] :]]
        assert facts == ([fact] if fact else []) + (
            [("PodDeleted", None)] if step == "terminate" else []
        ), step
        assert pod.next_step == next_step, step
    status = kube.requests[-1][2]["status"]
    app = status["containerStatuses"][0]
    assert (status["phase"], pod.restarts, pod.gone) == ("Failed", 1, True)
    assert app["state"]["terminated"]["exitCode"] == 143
    assert app["lastState"]["terminated"]["exitCode"] == 137
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "False"
    assert len(player.pods) == 2  # its replacement, due at once


async def test_a_pod_made_running_with_its_past_events() -> None:
    kube = FakeKube()
    player = Player(kube, run_id="t2", namespaces=["a", "b"], nodes=["node"])  # type: ignore[arg-type]
    await player.populate(3, events_per_pod=2)
    assert [written(r) for r in kube.requests].count("PATCH status") == 3
    assert [written(r) for r in kube.requests].count("POST events") == 6
    for pod in player.pods.values():
        assert (pod.phase, pod.ready, pod.next_step) == ("Running", True, "steady")
        assert pod.status()["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert player.expects == []  # not recorded: populating is not timed


async def test_an_unknown_step_is_refused() -> None:
    player = Player(FakeKube(), run_id="t3", namespaces=["ns"], nodes=["node"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown step"):
        await player._step(player.new_pod(), "nap")
