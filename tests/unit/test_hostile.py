"""Hostile inputs through the pure core: the record stays valid, bounded and honest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from podtrail import core

from .builders import (
    at,
    condition,
    container,
    event,
    pod,
    running,
    running_conditions,
    terminated,
    ts,
)

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "podtrail.io_podlifecyclerecords.yaml"
STATUS_SCHEMA = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]["schema"][
    "openAPIV3Schema"
]["properties"]["status"]
VALIDATOR = jsonschema.Draft7Validator(STATUS_SCHEMA)
LIMITS = core.Limits()
KIB = 1024


def _utf8_size(status: dict[str, Any]) -> int:
    return len(json.dumps(status, ensure_ascii=False).encode())


def _check(status: dict[str, Any], limits: core.Limits = LIMITS) -> int:
    """The status validates, encodes as UTF-8 and stays under the bound; returns its size."""
    errors = sorted(VALIDATOR.iter_errors(status), key=str)
    assert not errors, errors[0]
    size = _utf8_size(status)
    assert size <= core.record_size_bound(limits)
    assert len(status.get("timeline", [])) <= limits.timeline_cap()
    return size


def test_a_pod_with_100_containers_keeps_the_cap() -> None:
    names = [f"c{i:03d}" for i in range(100)]
    raw = pod(
        phase="Running",
        containers=[container(n) for n in names],
        statuses=[running(n, 10) for n in names],
        conditions=running_conditions(1, 12),
    )
    done = core.step(core.Record(), core.observe_pod(raw), now=at(20))
    status = core.render_record(done.record)
    assert [c["name"] for c in status["containers"]] == names[: LIMITS.containers_cap()]
    assert status["summary"]["totalContainers"] == LIMITS.containers_cap()
    _check(status)


def test_ten_thousand_distinct_events_about_one_pod() -> None:
    record = core.step(core.Record(), core.observe_pod(pod(phase="Running")), now=at(1)).record
    entries_made = len(record.timeline)
    for index in range(10_000):
        raw = event(
            f"Reason{index}", f"message {index} " + "x" * 300, first=10 + index, kind="Warning"
        )
        observation = core.observe_event(raw)
        assert observation is not None
        record = core.step(record, observation, now=at(20_000)).record
        entries_made += 1
    status = core.render_record(record)
    assert len(status["timeline"]) == LIMITS.timeline_cap()
    assert len(status["tracking"]["events"]) == LIMITS.seen_events_cap()
    assert status["timelineDropped"] == entries_made - LIMITS.timeline_cap()
    assert status["timeline"][0]["type"] == "Created"  # always kept
    assert all(len(e.get("message", "")) <= LIMITS.message_cap() for e in status["timeline"])
    assert status["timeline"][-1]["reason"] == "Reason9999"  # the newest are kept
    assert _check(status) < 256 * KIB


HOSTILE_TEXTS = [
    "\U0001f600" * 5000,
    "half a pair \ud83d then \ude00 alone",
    "nul \x00 bell \x07 escape \x1b[31m red",
    "surrogate-escaped bytes \udcff\udcfe",
    "\u2028line separator\u2029paragraph",
    "\n\n\n",
    "",
]


def test_wide_and_broken_characters_give_valid_bounded_json() -> None:
    record = core.Record()
    limits = core.Limits(max_message_length=64)
    for index, text in enumerate(HOSTILE_TEXTS):
        ended = terminated("app" + text[:3], 1, 10, 20)
        ended["state"]["terminated"]["message"] = text
        raw = pod(
            phase="Failed",
            containers=[container("app" + text[:3])],
            statuses=[ended],
            conditions=[condition("Ready", "False", 20 + index, text[:64], text)],
            reason=text[:64],
            message=text,
            uid=f"uid-{index}",
            created=index * 100,
        )
        for observation in (
            core.observe_pod(raw),
            core.observe_event(
                event(text[:64] or "X", text, first=index * 100 + 5, uid=f"uid-{index}")
            ),
            core.observe_event(
                event(
                    "Unhealthy",
                    "Readiness probe failed: " + text,
                    kind="Warning",
                    first=index * 100 + 6,
                    uid=f"uid-{index}",
                )
            ),
        ):
            if observation is not None:
                record = core.step(
                    record, observation, now=at(index * 100 + 50), limits=limits
                ).record
        status = core.render_record(record, limits)
        _check(status, limits)
        for entry in status["timeline"]:
            assert len(entry.get("message", "")) <= limits.message_cap()
            assert "\x00" not in json.dumps(entry, ensure_ascii=False)
    again = core.render_record(core.load_record(status, limits), limits)
    assert again == status


def test_readiness_flipping_every_second_for_an_hour() -> None:
    record = core.Record()
    for second in range(3600):
        ready = second % 2 == 0
        flag = "True" if ready else "False"
        conditions = [
            condition("PodScheduled", "True", 1),
            condition("Initialized", "True", 2),
            condition("ContainersReady", flag, 10 + second),
            condition("Ready", flag, 10 + second),
        ]
        raw = pod(
            phase="Running",
            containers=[container("app", readiness_probe=True)],
            statuses=[running("app", 5, ready=ready)],
            conditions=conditions,
        )
        record = core.step(record, core.observe_pod(raw), now=at(10 + second)).record
    status = core.render_record(record)
    timeline = status["timeline"]
    assert len(timeline) == LIMITS.timeline_cap()
    ready_entries = [e for e in timeline if e["type"] == "ContainerReady"]
    assert len(ready_entries) == 1 and ready_entries[0]["count"] == 1800
    flips = sum(1 for e in timeline if e["type"] == "ConditionChanged")
    assert status["timelineDropped"] > 0
    # every flip of the two conditions made an entry: kept plus dropped says how many
    changed = 2 * 3600
    kept_others = len(timeline) - flips
    assert status["timelineDropped"] + len(timeline) - kept_others >= changed
    assert _check(status) < 256 * KIB
    assert timeline[-1]["time"] == ts(10 + 3599)
