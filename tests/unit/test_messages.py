"""The message policy: the first line of every message, or no message text at all."""

from __future__ import annotations

import json
from typing import Any

import pytest

from podtrail import core

from .builders import (
    at,
    condition,
    event,
    pod,
    running,
    running_conditions,
    terminated,
    waiting,
)
from .scenarios import SCENARIOS

FIRST_LINE = core.Limits()
NO_MESSAGES = core.Limits(messages="none")
LOG_TAIL = "panic: cannot open /data\n  password=hunter2\n  at main.go:42"


def _play(observations: list[core.Observation], limits: core.Limits) -> dict[str, Any]:
    record = core.Record()
    for index, observation in enumerate(observations):
        record = core.step(record, observation, now=at(500 + index), limits=limits).record
    return core.render_record(record, limits)


def _crashed_pod() -> list[core.Observation]:
    ended = terminated("app", 2, 10, 20)
    ended["state"]["terminated"]["message"] = LOG_TAIL
    conditions = [
        *running_conditions(1, 12),
        condition("DisruptionTarget", "True", 15, "TerminationByKubelet", LOG_TAIL),
    ]
    return [
        core.observe_pod(pod(phase="Running", statuses=[running("app", 10)])),
        core.observe_pod(pod(phase="Failed", statuses=[ended], conditions=conditions)),
    ]


def _events() -> list[core.Observation]:
    raw = [
        event("Unhealthy", "Readiness probe failed: " + LOG_TAIL, container="app", kind="Warning"),
        event("FailedMount", LOG_TAIL, first=7, kind="Warning"),
        event("Pulling", 'Pulling image "registry.example/app:1.0"', first=3, container="app"),
        event("Scheduled", "Successfully assigned shop/web-0 to worker-1", first=1),
    ]
    observations: list[core.Observation] = [core.observe_pod(pod(phase="Pending"))]
    return observations + [o for o in map(core.observe_event, raw) if o is not None]


def _strings(node: object, path: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in _strings(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value, path)]
    return [(path, node)] if isinstance(node, str) else []


def test_first_line_keeps_only_the_first_line() -> None:
    status = _play(_crashed_pod() + _events(), FIRST_LINE)
    text = json.dumps(status)
    assert "hunter2" not in text and "main.go" not in text
    messages = [v for p, v in _strings(status) if p.endswith(("message", "Message"))]
    assert "panic: cannot open /data" in messages
    assert all("\n" not in value for _, value in _strings(status))
    probe = next(e for e in status["timeline"] if e["type"] == "ProbeFailed")
    assert probe["summary"] == "Container app: Readiness probe failed: panic: cannot open /data"


def test_none_keeps_no_message_text() -> None:
    status = _play(_crashed_pod() + _events(), NO_MESSAGES)
    paths = {p for p, _ in _strings(status)}
    assert not any(p.endswith(("message", "Message")) for p in paths), paths
    text = json.dumps(status)
    for fragment in ("panic", "hunter2", "cannot open", "registry.example"):
        assert fragment not in text, fragment
    summaries = {e["type"]: e["summary"] for e in status["timeline"]}
    assert summaries["ProbeFailed"] == "Container app: Readiness probe failed"
    assert summaries["EventReported"] == "Warning event FailedMount for pod"
    assert summaries["ImagePulling"] == "Pulling image for container app"
    assert summaries["Scheduled"] == "Scheduled to node worker-1"  # from the pod, not the text


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_scenario_leaks_message_text_with_none(name: str) -> None:
    observations = SCENARIOS[name]()
    status = _play(observations, NO_MESSAGES)
    rendered = json.dumps(status, ensure_ascii=False)
    for observation in observations:
        for text in _messages_of(observation):
            first = core.Limits().message_cap()
            line = " ".join(text.split())[:first]
            if len(line) >= 24:  # long enough to be free text, not a reason or a name
                assert line not in rendered, (name, line)
    assert not any(p.endswith(("message", "Message")) for p, _ in _strings(status))


def _messages_of(observation: core.Observation) -> list[str]:
    if isinstance(observation, core.EventSeen):
        return [observation.message or ""]
    if isinstance(observation, core.PodSeen):
        texts = [observation.message or ""]
        texts += [c.message or "" for c in observation.conditions]
        for c in observation.containers:
            texts += [c.message or ""]
            texts += [end.message or "" for end in (c.ended, c.last_ended) if end is not None]
        return texts
    return []


def test_a_stored_message_is_dropped_when_messages_are_turned_off() -> None:
    status = _play(_crashed_pod(), FIRST_LINE)
    assert any(p.endswith("message") for p, _ in _strings(status))
    again = core.render_record(core.load_record(status, NO_MESSAGES), NO_MESSAGES)
    assert not any(p.endswith(("message", "Message")) for p, _ in _strings(again))


def test_waiting_message_first_line() -> None:
    raw = pod(statuses=[waiting("app", "CreateContainerConfigError", "secret x\nnot found")])
    status = _play([core.observe_pod(raw)], FIRST_LINE)
    entry = next(e for e in status["timeline"] if e["type"] == "ContainerWaiting")
    assert entry["message"] == "secret x"
    assert entry["summary"].endswith("CreateContainerConfigError: secret x")
