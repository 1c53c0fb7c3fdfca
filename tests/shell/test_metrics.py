"""The operator's metrics: what a status change counts, by namespace or not, and the registry's
standard contents (process metrics, podtrail_build_info)."""

from __future__ import annotations

import json
from datetime import timedelta
from importlib import metadata
from typing import Any

import pytest
from prometheus_client import generate_latest

from podtrail import core
from podtrail.shell import metrics as metrics_module
from podtrail.shell.metrics import Metrics, build_revision
from tests.unit import builders, scenarios
from tests.unit.scenarios import Steps

KILLED = "podtrail_containers_killed_after_grace_total"
OOM = "podtrail_containers_oom_killed_total"
OVERRUNS = "podtrail_prestop_overruns_total"
OUTCOMES = "podtrail_outcomes_total"


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def lived(metrics: Metrics, steps: Steps, namespace: str | None = "shop") -> dict[str, Any]:
    """Play a pod's life, counting every status change as the writer does; the last status."""
    status: dict[str, Any] | None = None
    clock = builders.at(0)
    for observation in steps:
        clock += timedelta(seconds=1)
        latest = scenarios._latest(observation)
        if latest is not None:
            clock = max(clock, latest + timedelta(seconds=0.5))
        after = dict(core.advance(status, observation, now=clock).status or {})
        metrics.observe_status_change(status, after, namespace)
        status = after
    assert status is not None
    return status


def termination(*containers: tuple[str, str], hooks: tuple[str, ...] = ()) -> dict[str, Any]:
    """A status whose pod ended after a deletion: (container, verdict) pairs."""
    verdicts = {verdict for _, verdict in containers}
    outcome = "KilledAfterGrace" if "KilledAfterGrace" in verdicts else "GracefulShutdown"
    if "OOMKilled" in verdicts:
        outcome = "OOMKilled"
    return {
        "outcome": outcome,
        "containers": [
            {"name": name, "state": "terminated", "preStop": name in hooks}
            for name, _ in containers
        ],
        "termination": {
            "containers": [{"name": name, "verdict": verdict} for name, verdict in containers],
            "verdict": outcome,
        },
    }


def test_a_pod_killed_after_its_grace_period_is_counted_once_in_its_namespace() -> None:
    metrics = Metrics()
    status = lived(metrics, scenarios.killed_after_grace())
    assert status["outcome"] == "KilledAfterGrace"
    assert sample(metrics, OUTCOMES, namespace="shop", outcome="KilledAfterGrace") == 1
    assert sample(metrics, KILLED, namespace="shop") == 1
    # Its container has a preStop hook (sleep 20, grace 3): an overrun too.
    assert sample(metrics, OVERRUNS, namespace="shop") == 1
    assert sample(metrics, OOM, namespace="shop") == 0

    # The same status written again (a later write, a reload) counts nothing more.
    metrics.observe_status_change(status, status, "shop")
    metrics.observe_status_change({"outcome": status["outcome"]}, status, "shop")
    assert sample(metrics, KILLED, namespace="shop") == 1
    assert sample(metrics, OUTCOMES, namespace="shop", outcome="KilledAfterGrace") == 1


def test_an_oom_kill_that_ended_a_pod_is_counted() -> None:
    metrics = Metrics()
    status = lived(metrics, scenarios.oom(), "batch")
    assert status["outcome"] == "OOMKilled"
    assert sample(metrics, OOM, namespace="batch") == 1
    assert sample(metrics, KILLED, namespace="batch") == 0


def test_a_graceful_shutdown_kills_nothing() -> None:
    metrics = Metrics()
    status = lived(metrics, scenarios.graceful())
    assert status["outcome"] == "GracefulShutdown"
    assert sample(metrics, OUTCOMES, namespace="shop", outcome="GracefulShutdown") == 1
    for name in (KILLED, OOM, OVERRUNS):
        assert metrics.registry.get_sample_value(name, {"namespace": "shop"}) == 0, name


def test_every_container_counts_and_only_hooked_kills_are_overruns() -> None:
    metrics = Metrics()
    status = termination(
        ("app", "KilledAfterGrace"),
        ("proxy", "KilledAfterGrace"),
        ("log", "ExitedOnTerm"),
        hooks=("proxy", "log"),
    )
    metrics.observe_status_change(None, status, "shop")
    assert sample(metrics, KILLED, namespace="shop") == 2
    assert sample(metrics, OVERRUNS, namespace="shop") == 1


def test_a_hook_declared_only_in_the_termination_block_counts() -> None:
    metrics = Metrics()
    status = termination(("app", "KilledAfterGrace"))
    status["termination"]["preStop"] = [{"container": "app", "configured": True, "failed": True}]
    metrics.observe_status_change({}, status, "shop")
    assert sample(metrics, OVERRUNS, namespace="shop") == 1


def test_a_changed_outcome_counts_the_outcome_but_not_the_containers_again() -> None:
    metrics = Metrics()
    killed = termination(("app", "KilledAfterGrace"))
    metrics.observe_status_change(None, killed, "shop")
    evicted = {**killed, "outcome": "Evicted"}
    metrics.observe_status_change(killed, evicted, "shop")
    assert sample(metrics, OUTCOMES, namespace="shop", outcome="Evicted") == 1
    assert sample(metrics, KILLED, namespace="shop") == 1


def test_oom_from_the_outcome_alone_counts_one() -> None:
    metrics = Metrics()
    metrics.observe_status_change(None, {"outcome": "OOMKilled", "containers": []}, "batch")
    assert sample(metrics, OOM, namespace="batch") == 1


def test_a_namespace_has_its_kill_series_at_zero_from_its_first_status() -> None:
    """So that an alert on increase() sees the first kill: the series existed before it."""
    metrics = Metrics()
    metrics.observe_status_change(None, {"phase": "Pending"}, "team-a")
    text = generate_latest(metrics.registry).decode()
    for name in (KILLED, OOM, OVERRUNS):
        assert f'{name}{{namespace="team-a"}} 0.0' in text
    assert OUTCOMES + "{" not in text  # outcomes only once there is one


def test_without_the_namespace_label() -> None:
    metrics = Metrics(namespace_label=False)
    metrics.observe_status_change(None, termination(("app", "KilledAfterGrace")), "shop")
    assert sample(metrics, KILLED) == 1
    assert sample(metrics, OUTCOMES, outcome="KilledAfterGrace") == 1
    assert "namespace=" not in generate_latest(metrics.registry).decode()


def test_a_caller_that_gives_no_namespace_counts_under_an_empty_one() -> None:
    metrics = Metrics()
    metrics.observe_status_change(None, termination(("app", "KilledAfterGrace")))
    assert sample(metrics, KILLED, namespace="") == 1


def test_durations_are_observed_once_per_stage() -> None:
    metrics = Metrics()
    first = {"durations": {"timeToSchedule": 1.5}}
    metrics.observe_status_change(None, first, "shop")
    metrics.observe_status_change(first, {"durations": {"timeToSchedule": 1.5, "init": 2}}, "shop")
    count = "podtrail_lifecycle_duration_seconds_count"
    assert sample(metrics, count, stage="timeToSchedule") == 1
    assert sample(metrics, count, stage="init") == 1


def test_malformed_statuses_count_nothing() -> None:
    metrics = Metrics()
    odd: dict[str, Any] = {
        "outcome": "Failed",
        "containers": ["x", {"state": "terminated", "reason": "OOMKilled"}],
        "termination": {"containers": "x", "preStop": [None, {"container": ""}]},
    }
    metrics.observe_status_change(None, odd, "shop")
    assert sample(metrics, OUTCOMES, namespace="shop", outcome="Failed") == 1
    assert sample(metrics, OOM, namespace="shop") == 0


def test_build_info_and_process_metrics() -> None:
    metrics = Metrics(version="1.2.3", revision="abc123")
    assert sample(metrics, "podtrail_build_info", version="1.2.3", revision="abc123") == 1
    names = {family.name for family in metrics.registry.collect()}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= names
    assert "python_gc_objects_collected" in names


def test_build_info_defaults_to_the_package_version() -> None:
    metrics = Metrics()
    (family,) = [f for f in metrics.registry.collect() if f.name == "podtrail_build_info"]
    (only,) = family.samples
    assert only.labels["version"] == metrics_module.build_version() != "unknown"


def test_the_revision_from_the_environment_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = json.dumps({"vcs_info": {"vcs": "git", "commit_id": "f00"}})
    monkeypatch.setattr(metadata, "distribution", lambda name: FakeDistribution(recorded))
    assert build_revision({"PODTRAIL_REVISION": "0123abc"}) == "0123abc"
    assert build_revision({"PODTRAIL_REVISION": ""}) == "f00"


class FakeDistribution:
    def __init__(self, text: str | None) -> None:
        self.text = text

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        return self.text


@pytest.mark.parametrize(
    ("recorded", "revision"),
    [
        (
            json.dumps({"url": "git+https://x", "vcs_info": {"vcs": "git", "commit_id": "f00"}}),
            "f00",
        ),
        (json.dumps({"url": "file:///src", "dir_info": {"editable": True}}), "unknown"),
        (None, "unknown"),
        ("not json", "unknown"),
    ],
)
def test_the_revision_pip_recorded(
    monkeypatch: pytest.MonkeyPatch, recorded: str | None, revision: str
) -> None:
    monkeypatch.setattr(metadata, "distribution", lambda name: FakeDistribution(recorded))
    assert build_revision({}) == revision
