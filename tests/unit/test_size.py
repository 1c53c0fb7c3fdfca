"""The record-size bound: every accepted setting keeps the worst-case record under 1 MiB."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podtrail import core
from podtrail.core.limits import MAX_TIMELINE_ENTRIES
from podtrail.shell.settings import (
    RECORD_SIZE_LIMIT,
    PodtrailSettings,
    invalid_settings,
    record_limits,
)

from .worst_case import encoded_size, go_encoded_size, worst_case_record

MIB = 1024 * 1024
CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "podtrail.io_podlifecyclerecords.yaml"
VALIDATOR = jsonschema.Draft7Validator(
    yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"
    ]["status"]
)


def _most_entries(settings: PodtrailSettings) -> int:
    """The largest --timeline-entries accepted with the other settings (0 if none is)."""
    low, high = 0, MAX_TIMELINE_ENTRIES
    while low < high:
        middle = (low + high + 1) // 2
        if invalid_settings(dataclasses.replace(settings, timeline_entries=middle)):
            high = middle - 1
        else:
            low = middle
    return low


@st.composite
def accepted_settings(draw: st.DrawFn) -> PodtrailSettings:
    other = PodtrailSettings(
        message_length=draw(st.integers(min_value=32, max_value=1024)),
        previous_instances=draw(st.integers(min_value=0, max_value=20)),
        messages=draw(st.sampled_from(["first-line", "none"])),
    )
    most = _most_entries(other)
    entries = draw(st.one_of(st.just(most), st.integers(min_value=2, max_value=max(2, most))))
    chosen = dataclasses.replace(other, timeline_entries=entries)
    if invalid_settings(chosen):  # even 2 entries are too many with these settings
        chosen = PodtrailSettings()
    return chosen


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chosen=accepted_settings())
def test_the_worst_record_of_any_accepted_setting_is_under_the_bound(
    chosen: PodtrailSettings,
) -> None:
    limits = record_limits(chosen)
    bound = core.record_size_bound(limits)
    status = core.render_record(worst_case_record(limits), limits)
    size = encoded_size(status)
    assert size <= bound < RECORD_SIZE_LIMIT
    assert len(status["timeline"]) == limits.timeline_cap()
    # the API client escapes a 4-byte character in 12 bytes: still far from the 3 MiB body limit
    assert len(json.dumps(status)) < 3 * bound


def test_the_bound_is_close_for_the_defaults() -> None:
    limits = core.Limits()
    bound = core.record_size_bound(limits)
    worst = encoded_size(core.render_record(worst_case_record(limits), limits))
    assert worst <= bound < 2 * worst
    assert bound < 0.95 * MIB


def test_go_escapes_stay_under_etcds_limit() -> None:
    limits = core.Limits()
    status = core.render_record(worst_case_record(limits, base=ord("<")), limits)
    assert go_encoded_size(status) <= 1.5 * core.record_size_bound(limits) < 1.5 * MIB


@pytest.mark.parametrize("messages", ["first-line", "none"])
def test_the_worst_record_has_every_list_full_and_fits_the_schema(messages: str) -> None:
    limits = core.Limits(messages=messages)  # type: ignore[arg-type]
    status = core.render_record(worst_case_record(limits), limits)
    errors = sorted(VALIDATOR.iter_errors(status), key=str)
    assert not errors, errors[0]
    assert len(status["containers"]) == limits.containers_cap()
    assert len(status["endpoints"]) == limits.endpoints_cap()
    assert len(status["termination"]["endpointRemovals"]) == limits.endpoints_cap()
    assert len(status["previousInstances"]) == limits.previous_cap()
    assert len(status["tracking"]["events"]) == limits.seen_events_cap()
    assert len(status["tracking"]["timelineKeys"]) == len(status["timeline"])
    assert len(status["termination"]["containers"]) == limits.containers_cap()
    assert status["timelineDropped"] > 0


@pytest.mark.parametrize(
    ("limits", "most"),
    [
        (core.Limits(max_timeline_entries=1000, max_message_length=1024), 8 * MIB),
        (core.Limits(), MIB),
        (core.Limits(messages="none"), 0.75 * MIB),
    ],
)
def test_bound_figures(limits: core.Limits, most: float) -> None:
    assert core.record_size_bound(limits) < most


@pytest.mark.parametrize(
    "change",
    [{"max_timeline_entries": 201}, {"max_message_length": 257}, {"max_previous_instances": 6}],
)
def test_the_bound_grows_with_each_setting(change: dict[str, int]) -> None:
    larger = core.Limits(**change)  # type: ignore[arg-type]
    assert core.record_size_bound(larger) > core.record_size_bound(core.Limits())
