"""The core's own rules: standard library only, no clocks, stable round trips."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from podtrail import core
from podtrail.core.load import load_status
from podtrail.core.render import render_status

from . import builders as b
from .builders import at
from .scenarios import SCENARIOS, play

CORE = Path(core.__file__).parent
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "random"}


@pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_imports_only_the_standard_library(module: Path) -> None:
    tree = ast.parse(module.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top == "__future__", (module.name, name)
            assert top not in {"logging", "asyncio", "random", "time"}, (module.name, name)


@pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_reads_no_clock(module: Path) -> None:
    tree = ast.parse(module.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in FORBIDDEN_CALLS, (module.name, node.lineno)


def test_public_surface() -> None:
    for name in [
        "Limits",
        "PodSeen",
        "EventSeen",
        "EndpointSeen",
        "PodGone",
        "Observation",
        "observe_pod",
        "observe_event",
        "observe_endpoint_slice_change",
        "advance",
        "Advance",
        "Fact",
    ]:
        assert name in core.__all__ and hasattr(core, name), name
    limits = core.Limits()
    assert (
        limits.max_timeline_entries,
        limits.max_message_length,
        limits.max_previous_instances,
    ) == (200, 256, 5)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_status_round_trips_through_json(name: str) -> None:
    status, _ = play(SCENARIOS[name]())
    stored = json.loads(json.dumps(status))
    assert render_status(load_status(stored)) == status


@pytest.mark.parametrize(
    "limits",
    [
        core.Limits(max_timeline_entries=-5, max_message_length=0, max_previous_instances=-1),
        core.Limits(max_timeline_entries=10**9, max_message_length=10**9, max_seen_events=0),
    ],
)
def test_absurd_limits_are_clamped(limits: core.Limits) -> None:
    status, _ = play(SCENARIOS["probes"](), limits=limits)
    assert 2 <= len(status["timeline"]) <= 1000
    step = core.advance(status, SCENARIOS["probes"]()[-1], now=at(9999), limits=limits)
    assert step.facts == ()


@pytest.mark.parametrize("exit_code", [-(2**31), 2**31 - 1, -1, 255])
def test_any_int32_exit_code_round_trips(exit_code: int) -> None:
    running = b.pod(phase="Running", statuses=[b.running("app", started_at=10, ready=True)])
    ended = b.pod(phase="Failed", statuses=[b.terminated("app", exit_code=exit_code)])
    status, _ = play([core.observe_pod(running), core.observe_pod(ended)])
    stored = json.loads(json.dumps(status))
    assert render_status(load_status(stored)) == status
    assert exit_code in [e.get("exitCode") for e in status["timeline"]]
