"""Replay recorded watch streams through the core, the way the operator feeds it.

A trace (``traces/<name>.jsonl``, written by ``record_traces``) is a list of watch events in
arrival order. ``Replayer`` keeps one record status per pod name and routes every line as the
operator's shell does: a pod to ``observe_pod`` (a DELETED pod then also to ``PodGone``), an
Event about a pod without a record yet is held until the pod is first seen, an EndpointSlice
change is diffed against the previous version of that slice and reaches only pods that have
a record.

The operator's clock (``now``) is derived from the trace alone, so replays are deterministic:
each line's time is the newest time the object itself carries (conditions' transitions,
container starts and ends, the deletion request, an Event's timestamps), never earlier than the
line before it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from podtrail import core

TRACES = Path(__file__).resolve().parent / "traces"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

Obj = dict[str, Any]
RecordKey = tuple[str, str]


@dataclass(frozen=True)
class Line:
    """One watch event of a trace."""

    index: int
    stream: str
    type: str
    object: Obj

    @property
    def name(self) -> str:
        return str((self.object.get("metadata") or {}).get("name") or "")

    @property
    def namespace(self) -> str:
        return str((self.object.get("metadata") or {}).get("namespace") or "")

    @property
    def uid(self) -> str:
        return str((self.object.get("metadata") or {}).get("uid") or "")

    @property
    def identity(self) -> tuple[str, str]:
        """The object this line is a version of (stream, uid)."""
        return self.stream, self.uid or self.name


def trace_names() -> list[str]:
    """Every recorded trace, by name."""
    return sorted(path.stem for path in TRACES.glob("*.jsonl"))


@cache
def _load(name: str) -> tuple[Line, ...]:
    lines = []
    with (TRACES / f"{name}.jsonl").open(encoding="utf-8") as source:
        for index, text in enumerate(source):
            data = json.loads(text)
            lines.append(Line(index, data["stream"], data["type"], data["object"]))
    return tuple(lines)


def load(name: str) -> tuple[Line, ...]:
    """A trace's lines (shared, read-only: do not modify the objects)."""
    return _load(name)


# --- time from the trace itself ----------------------------------------------------------------


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _pod_times(obj: Mapping[str, Any]) -> Iterator[datetime | None]:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    yield _parse(meta.get("creationTimestamp"))
    deadline = _parse(meta.get("deletionTimestamp"))
    grace = meta.get("deletionGracePeriodSeconds")
    if deadline is not None and isinstance(grace, int):
        yield deadline - timedelta(seconds=grace)  # when the deletion was requested
    yield _parse(status.get("startTime"))
    for condition in status.get("conditions") or []:
        yield _parse(condition.get("lastTransitionTime"))
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            for state in (container.get("state") or {}, container.get("lastState") or {}):
                for detail in state.values():
                    if isinstance(detail, Mapping):
                        yield _parse(detail.get("startedAt"))
                        yield _parse(detail.get("finishedAt"))


def _event_times(obj: Mapping[str, Any]) -> Iterator[datetime | None]:
    yield _parse(obj.get("firstTimestamp"))
    yield _parse(obj.get("lastTimestamp"))
    yield _parse(obj.get("eventTime"))
    yield _parse((obj.get("series") or {}).get("lastObservedTime"))


def own_time(line: Line) -> datetime | None:
    """The newest time the line's object records about itself (None for EndpointSlices)."""
    if line.stream == "pods":
        times = _pod_times(line.object)
    elif line.stream == "events":
        times = _event_times(line.object)
    else:
        return None
    return max((t for t in times if t is not None), default=None)


def clock(lines: Iterable[Line]) -> dict[int, datetime]:
    """``now`` for each line (by index): its own newest time, never earlier than the last."""
    now = EPOCH
    times: dict[int, datetime] = {}
    for line in lines:
        own = own_time(line)
        if own is not None and own > now:
            now = own
        times[line.index] = now
    return times


def trace_clock(name: str) -> dict[int, datetime]:
    """The clock of a trace in its recorded order (the same for any reordering of it)."""
    return clock(load(name))


# --- the operator's routing ----------------------------------------------------------------------


@dataclass
class Replayer:
    """Per-record statuses, fed like the operator's handlers and streams feed them."""

    limits: core.Limits = field(default_factory=core.Limits)
    statuses: dict[RecordKey, Obj] = field(default_factory=dict)
    held: dict[RecordKey, list[core.EventSeen]] = field(default_factory=dict)
    slices: dict[str, Obj] = field(default_factory=dict)
    facts: list[core.Fact] = field(default_factory=list)

    def copy(self) -> Replayer:
        """An independent replayer in the same state (statuses are never modified in place)."""
        return Replayer(
            self.limits,
            statuses=dict(self.statuses),
            held={key: list(items) for key, items in self.held.items()},
            slices=dict(self.slices),
            facts=list(self.facts),
        )

    def submit(self, observation: core.Observation, now: datetime) -> None:
        key = (observation.namespace, observation.pod_name)
        step = core.advance(self.statuses.get(key), observation, now=now, limits=self.limits)
        self.statuses[key] = step.status
        self.facts.extend(step.facts)

    def pod(self, raw: Obj, now: datetime, *, deleted: bool = False) -> None:
        meta = raw.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        self.submit(core.observe_pod(raw), now)
        for held in self.held.pop((namespace, name), []):
            self.submit(held, now)
        if deleted:
            uid = meta.get("uid")
            gone = core.PodGone(namespace, name, uid if isinstance(uid, str) else None, now, True)
            self.submit(gone, now)

    def event(self, raw: Obj, now: datetime) -> None:
        observation = core.observe_event(raw)
        if observation is None:
            return
        key = (observation.namespace, observation.pod_name)
        if key in self.statuses:
            self.submit(observation, now)
        else:
            self.held.setdefault(key, []).append(observation)

    def slice_change(self, old: Obj | None, new: Obj | None, now: datetime) -> None:
        for observation in core.observe_endpoint_slice_change(old, new, now=now):
            if (observation.namespace, observation.pod_name) in self.statuses:
                self.submit(observation, now)

    def endpoint_slice(self, raw: Obj, now: datetime, *, deleted: bool = False) -> None:
        uid = str((raw.get("metadata") or {}).get("uid"))
        if deleted:
            self.slice_change(self.slices.pop(uid, None), None, now)
        else:
            self.slice_change(self.slices.get(uid), raw, now)
            self.slices[uid] = raw

    def feed(self, line: Line, now: datetime) -> None:
        """One watch event."""
        if line.stream == "pods":
            self.pod(line.object, now, deleted=line.type == "DELETED")
        elif line.stream == "events":
            if line.type != "DELETED":  # a deleted Event removes nothing
                self.event(line.object, now)
        elif line.stream == "endpointslices":
            self.endpoint_slice(line.object, now, deleted=line.type == "DELETED")
        else:
            raise ValueError(f"unknown stream {line.stream!r}")

    def relist(self, current: Iterable[Line], now: datetime) -> None:
        """A relist (after 410 Gone): every object that still exists, seen again."""
        for line in current:
            if line.type == "DELETED":
                continue
            if line.stream == "endpointslices":
                self.endpoint_slice(line.object, now)  # diffed against what is known
            else:
                self.feed(line, now)

    def restart(self, current: Iterable[Line], now: datetime) -> Replayer:
        """The operator restarted: the stored statuses (as JSON), nothing else, then a listing.

        Pods removed meanwhile are closed as found missing when the stored status has no
        removal yet (the operator's catch-up); EndpointSlices are diffed against nothing.
        """
        stored = {key: json.loads(json.dumps(status)) for key, status in self.statuses.items()}
        fresh = Replayer(self.limits, statuses=stored)
        alive: set[str] = set()
        items = [line for line in current if line.type != "DELETED"]
        for line in items:
            if line.stream == "pods":
                alive.add(line.uid)
        for (namespace, name), status in self.statuses.items():
            uid = status.get("podUID")
            if isinstance(uid, str) and uid not in alive and not _gone(status):
                fresh.submit(core.PodGone(namespace, name, uid, now, False), now)
        for line in items:
            fresh.feed(line, now)
        return fresh


def _gone(status: Mapping[str, Any]) -> bool:
    return bool((status.get("times") or {}).get("deleted"))


def latest(lines: Iterable[Line]) -> list[Line]:
    """The last version of every object among ``lines``, in the order of those last versions."""
    last: dict[tuple[str, str], Line] = {}
    for line in lines:
        last[line.identity] = line
    return sorted(last.values(), key=lambda line: line.index)


def replay(
    lines: Iterable[Line], times: Mapping[int, datetime], replayer: Replayer | None = None
) -> Replayer:
    """Feed ``lines`` in the given order, each at its own time from ``times``."""
    replayer = replayer or Replayer()
    for line in lines:
        replayer.feed(line, times[line.index])
    return replayer
