"""One step: stored status + observation → new status and the facts that are new."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .derive import derive
from .facts import Fact
from .limits import DEFAULT_LIMITS, Limits
from .observe import Observation, PodGone
from .reduce import close_previous_instance, reduce, route
from .render import load_status, render_status


@dataclass(frozen=True, slots=True)
class Advance:
    """The result of one step.

    Attributes:
        status: The complete new status (JSON-serialisable, valid against the CRD schema).
        facts: The facts new in this step; when empty, ``status`` is the input normalised
            (or, for the late removal of an earlier pod of the same name, the input with that
            instance's summary completed).
        terminal: True when a new fact should be written at once (an end, a termination step,
            the pod gone).
    """

    status: dict[str, Any]
    facts: tuple[Fact, ...]
    terminal: bool


def advance(
    status: Mapping[str, Any] | None,
    observation: Observation,
    *,
    now: datetime,
    limits: Limits = DEFAULT_LIMITS,
) -> Advance:
    """Fold one observation into a record's stored status. Pure and idempotent.

    Args:
        status: The record's ``.status`` as stored (None or {} for a new record).
        observation: A pod, Event, EndpointSlice change or removal about this record's pod.
        now: The operator's clock, used only where Kubernetes records no time (such entries
            say source "observed").
        limits: Bounds on what the record keeps.

    Returns:
        The new status, the new facts and whether they should be flushed at once.
    """
    record = load_status(status, limits)
    if isinstance(observation, PodGone):
        closed = close_previous_instance(record, observation)
        if closed is not None:  # a summary changes, the timeline does not
            return Advance(status=render_status(closed, limits), facts=(), terminal=True)
    routed = route(record, observation, limits)
    if routed is not None:
        candidates = derive(routed, observation, now=now, limits=limits)
        updated, facts = reduce(routed, observation, candidates, limits)
        if facts:
            return Advance(
                status=render_status(updated, limits),
                facts=tuple(facts),
                terminal=any(fact.terminal for fact in facts),
            )
    return Advance(status=render_status(record, limits), facts=(), terminal=False)
