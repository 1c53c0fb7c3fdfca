"""Records → traces: span names, parents, times and attributes from whole recorded lives."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podtrail import core
from podtrail.core.trace import PodTrace, Span, pod_trace, trace_id

from .builders import UID, at
from .scenarios import SCENARIOS, play

NOW = at(10_000)


def _trace(name: str, steps: int | None = None, now: datetime = NOW) -> PodTrace:
    status, _ = play(SCENARIOS[name]()[:steps])
    record = core.load_record(status, core.Limits())
    found = pod_trace(record, "shop", "web-0", now=now)
    assert found is not None
    return found


def _named(trace: PodTrace, name: str) -> list[Span]:
    return [s for s in trace.spans if s.name == name]


def _one(trace: PodTrace, name: str) -> Span:
    found = _named(trace, name)
    assert len(found) == 1, [s.name for s in trace.spans]
    return found[0]


def _attrs(span: Span) -> dict[str, object]:
    return dict(span.attributes)


def test_the_trace_id_is_the_pod_uid_and_ids_are_stable() -> None:
    first, again = _trace("graceful"), _trace("graceful")
    assert first.trace_id == uuid.UUID(UID).int
    assert [s.span_id for s in first.spans] == [s.span_id for s in again.spans]
    assert trace_id("not-a-uuid", "ns", "p", None) == trace_id("not-a-uuid", "ns", "p", None)
    assert trace_id(None, "ns", "p", at(0)) != trace_id(None, "ns", "p", at(1))


def test_a_sigkill_after_the_grace_period() -> None:
    trace = _trace("killed_after_grace")
    assert trace.ended
    root = trace.root
    assert root.name == "pod shop/web-0" and root.parent_id is None
    assert _attrs(root)["podtrail.outcome"] == "KilledAfterGrace"
    assert root.error == "outcome KilledAfterGrace"
    run = _one(trace, "container app")
    assert _attrs(run)["container.exit_code"] == 137 and _attrs(run)["podtrail.signal"] == "KILL"
    assert run.error is not None and run.end == at(205)
    termination = _one(trace, "termination")
    assert (termination.start, termination.end) == (at(200), at(206))
    attributes = _attrs(termination)
    assert attributes["podtrail.grace_period_seconds"] == 3
    assert attributes["podtrail.deadline"] == "2025-06-01T12:03:23Z"
    assert attributes["podtrail.verdict"] == "KilledAfterGrace"
    assert "exit 137" in str(attributes["podtrail.evidence"])
    events = [(e.name, e.time) for e in termination.events]
    assert ("kubelet stopping container", at(200)) in events
    assert ("SIGKILL", at(205)) in events
    assert termination.error == "SIGKILL after the grace period"


def test_a_graceful_shutdown_is_no_error() -> None:
    trace = _trace("graceful")
    assert all(s.error is None for s in trace.spans)
    run = _one(trace, "container app")
    assert (
        _attrs(run)["podtrail.end"] == "ExitedOnTerm" and _attrs(run)["podtrail.signal"] == "TERM"
    )
    assert [e.name for e in run.events] == ["ContainerReady"]
    termination = _one(trace, "termination")
    assert [e.name for e in termination.events] == [
        "kubelet stopping container",
        "exited on SIGTERM",
        "RemovedFromEndpoints",
    ]
    assert _one(trace, "schedule").end == at(1)
    assert (_one(trace, "sandbox").start, _one(trace, "sandbox").end) == (at(1), at(3))
    assert dict(trace.resource)["k8s.pod.uid"] == UID
    assert dict(trace.resource)["k8s.deployment.name"] == "web"
    assert dict(trace.resource)["k8s.replicaset.name"] == "web-7d9f8b6c5d"


def test_each_restart_is_a_run_of_its_own_and_a_live_pod_ends_now() -> None:
    trace = _trace("crash_loop")
    assert not trace.ended and trace.root.end == NOW
    runs = _named(trace, "container app")
    assert [_attrs(r)["podtrail.run"] for r in runs] == list(range(6))
    assert [_attrs(r).get("container.exit_code") for r in runs] == [1] * 5 + [None]
    assert [_attrs(r)["podtrail.run.ended"] for r in runs] == [True] * 5 + [False]
    assert runs[-1].end == NOW
    starts = [r.start for r in runs]
    assert starts == sorted(starts) and all(r.start <= r.end for r in runs)


def test_an_init_container_retried_in_the_same_second() -> None:
    trace = _trace("init_retried_within_a_second")
    flaky = _named(trace, "init flaky")
    assert [_attrs(r)["container.exit_code"] for r in flaky] == [1, 0]
    assert [r.error is not None for r in flaky] == [True, False]
    assert len({r.span_id for r in flaky}) == 2


def test_probe_failures_are_events_with_counts() -> None:
    trace = _trace("probes")
    first = _named(trace, "container app")[0]
    probes = {
        (e.name, dict(e.attributes).get("podtrail.probe")): dict(e.attributes).get("podtrail.count")
        for e in first.events
    }
    assert probes[("ProbeFailed", "readiness")] == 40  # one Event, counted up to 40
    assert probes[("ProbeFailed", "startup")] == 3
    assert ("LivenessRestart", "liveness") in probes


def test_scheduling_failures_are_events_of_the_schedule_span() -> None:
    trace = _trace("unschedulable")
    schedule = _one(trace, "schedule")
    assert [dict(e.attributes)["podtrail.count"] for e in schedule.events] == [9]
    assert schedule.end == trace.root.end
    assert not _named(trace, "sandbox")


def test_nothing_dates_an_empty_record() -> None:
    assert pod_trace(core.Record(), "ns", "p", now=NOW) is None


@given(name=st.sampled_from(sorted(SCENARIOS)), cut=st.integers(min_value=1, max_value=40))
def test_every_span_lies_within_the_life_under_one_root(name: str, cut: int) -> None:
    trace = _trace(name, cut, now=NOW + timedelta(seconds=cut))
    root = trace.root
    ids = [s.span_id for s in trace.spans]
    assert len(ids) == len(set(ids)) and 0 not in ids and root.span_id == ids[0]
    for span in trace.spans[1:]:
        assert span.parent_id == root.span_id
        assert root.start <= span.start <= span.end <= root.end
    assert root.start <= root.end


@pytest.mark.parametrize("name", ["evicted", "preempted", "force_deleted", "oom", "sidecars"])
def test_every_ended_life_has_its_outcome_on_the_root(name: str) -> None:
    trace = _trace(name)
    assert trace.ended
    assert "podtrail.outcome" in _attrs(trace.root)


def test_a_run_keeps_its_span_id_when_older_runs_are_dropped() -> None:
    whole = _trace("crash_loop")
    status, _ = play(SCENARIOS["crash_loop"]())
    record = core.load_record(status, core.Limits())
    starts = [e for e in record.timeline if e.type == "ContainerStarted"]
    cut = replace(record, timeline=tuple(e for e in record.timeline if e is not starts[0]))
    trimmed = pod_trace(cut, "shop", "web-0", now=NOW)
    assert trimmed is not None
    ids = {s.span_id: s.start for s in whole.spans}
    for span in _named(trimmed, "container app")[1:]:
        assert ids.get(span.span_id) == span.start
