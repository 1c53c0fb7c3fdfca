"""One step: a record + an observation → the next record and the facts that are new.

Two forms of the same step. ``step`` works on a loaded record: the operator keeps records in
memory, loads a status once (``load_record``) and renders it once per write
(``render_record``). ``advance`` is the stateless form, stored status in and status out: it
is ``step`` between a load and a render, for callers that hold only statuses (the replay of
recorded watch streams, tests that build stored statuses).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .deletion import next_deletion
from .derive import derive
from .facts import Fact
from .limits import DEFAULT_LIMITS, Limits
from .load import load_status
from .model import Record
from .observe import Observation, PodGone, PodSeen
from .reduce import close_previous_instance, reduce, route
from .render import render_status


@dataclass(frozen=True, slots=True)
class Step:
    """One step on a loaded record (see `step`).

    Attributes:
        record: The new record; the very same object when nothing changed.
        facts: The facts new in this step.
        terminal: True when a new fact should be written at once (the end of the pod's life).
    """

    record: Record
    facts: tuple[Fact, ...]
    terminal: bool


def load_record(status: Mapping[str, Any] | None, limits: Limits = DEFAULT_LIMITS) -> Record:
    """A record's stored ``.status`` (None or {} for a new record), read into the core's model."""
    return load_status(status, limits)


def render_record(record: Record, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The record as a bounded status, valid against the CRD schema."""
    return render_status(record, limits)


def step(
    record: Record,
    observation: Observation,
    *,
    now: datetime,
    limits: Limits = DEFAULT_LIMITS,
) -> Step:
    """Fold one observation into a loaded record. Pure and idempotent.

    For a caller that keeps records in memory between steps (the operator): reading and
    rendering a status costs more than the step itself, so it is done once per write instead.
    """
    if isinstance(observation, PodGone):
        closed = close_previous_instance(record, observation)
        if closed is not None:  # a summary changes, the timeline does not
            return Step(closed, (), True)
    routed = route(record, observation, limits)
    if routed is not None:
        deletion = routed.deletion
        if isinstance(observation, PodSeen):
            deletion = next_deletion(deletion, observation)
        candidates = derive(routed, observation, deletion=deletion, now=now, limits=limits)
        updated, facts = reduce(routed, observation, candidates, limits, deletion=deletion)
        if facts:
            return Step(updated, tuple(facts), any(fact.terminal for fact in facts))
    return Step(record, (), False)


@dataclass(frozen=True, slots=True)
class Advance:
    """The result of one step on a stored status.

    Attributes:
        status: The complete new status (JSON-serialisable, valid against the CRD schema).
        facts: The facts new in this step; when empty, ``status`` is the input normalised
            (or, for the late removal of an earlier pod of the same name, the input with that
            instance's summary completed).
        terminal: True when a new fact should be written at once (the end of the pod's life).
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
    done = step(load_record(status, limits), observation, now=now, limits=limits)
    return Advance(render_record(done.record, limits), done.facts, done.terminal)
