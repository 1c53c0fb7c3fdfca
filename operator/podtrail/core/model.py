"""The record's state: what podtrail knows about one pod, as frozen dataclasses.

Everything a later step needs is here and is persisted in the record's status (written by
render.py, read back by load.py), so the operator can restart at any time and carry on from
the stored status.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime

from ._access import MAX_INT
from .clock import shift


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Something that happened to the pod, as a timeline entry shows it.

    What a fact (facts.Fact: what one observation tells) and a timeline entry (Entry: what the
    record keeps of it and of its repeats) have in common; see Fact for the field meanings.
    """

    key: str
    time: datetime
    type: str
    summary: str
    source: str
    container: str | None = None
    reason: str | None = None
    message: str | None = None
    from_phase: str | None = None
    to_phase: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    probe: str | None = None
    count: int = 1
    last_time: datetime | None = None


OCCURRENCE_FIELDS = tuple(f.name for f in fields(Occurrence))


@dataclass(frozen=True, slots=True)
class Entry(Occurrence):
    """One timeline entry: an occurrence and its repeats (``count``, ``last_time``).

    Its type and source are plain strings: a stored status may hold a type this version does
    not know, and loading keeps it.
    """

    @property
    def latest(self) -> datetime:
        """The time of the latest occurrence."""
        return self.last_time if self.last_time is not None else self.time


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """What is known of one container, latest run first."""

    name: str
    kind: str
    state: str | None = None
    reason: str | None = None
    ready: bool = False
    started: bool | None = None
    restart_count: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_exit_code: int | None = None
    last_reason: str | None = None
    pre_stop: bool = False
    started_run: str | None = None
    finished_run: str | None = None


@dataclass(frozen=True, slots=True)
class ConditionRecord:
    """A mirrored pod condition."""

    type: str
    status: str
    last_transition_time: datetime | None = None
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class OwnerRecord:
    """The pod's controller."""

    kind: str
    name: str
    deployment: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """The pod's current membership in one Service's EndpointSlice."""

    service: str
    address: str
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class EndpointRemoval:
    """When the pod left one Service's rotation (terminating) and its slice entry."""

    service: str
    terminating_at: datetime | None = None
    removed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Deletion:
    """The pod's deletion request as its metadata shows it.

    ``at_removal``: first seen only as the removal of a finished pod (grace 0, nothing running).
    The kubelet's final delete rewrites an earlier request's metadata to its own time, so a
    request that stopped the containers may have come before, unseen (see conclude.py).
    """

    timestamp: datetime
    grace_seconds: int
    at_removal: bool = False

    @property
    def requested_at(self) -> datetime:
        """When the deletion was requested: deletionTimestamp minus the grace period."""
        return shift(self.timestamp, -self.grace_seconds) or self.timestamp


@dataclass(frozen=True, slots=True)
class PreStopFailure:
    """A FailedPreStopHook Event for one container."""

    container: str
    time: datetime


@dataclass(frozen=True, slots=True)
class Removal:
    """The pod's removal from the API: seen (observed) or found later (not observed)."""

    time: datetime
    observed: bool


@dataclass(frozen=True, slots=True)
class Moment:
    """One timeline entry as an earlier instance's summary keeps it: when, what, one line."""

    time: datetime
    type: str
    summary: str


@dataclass(frozen=True, slots=True)
class EndSummary:
    """The termination block of an earlier instance, cut down to what tells how it ended."""

    requested_at: datetime | None = None
    grace_seconds: int | None = None
    forced: bool | None = None
    killing_at: datetime | None = None
    disruption_reason: str | None = None
    verdict: str | None = None
    evidence: str | None = None


@dataclass(frozen=True, slots=True)
class Instance:
    """A summary of an earlier pod (another UID) that had the same name.

    Attributes:
        entries: How many timeline entries it had (dropped ones included).
        last: Its last notable timeline entries, oldest first.
        termination: Its termination block, cut down.
    """

    uid: str
    created: datetime | None = None
    deleted: datetime | None = None
    outcome: str | None = None
    node_name: str | None = None
    restarts: int = 0
    phase: str | None = None
    entries: int = 0
    last: tuple[Moment, ...] = ()
    termination: EndSummary | None = None


@dataclass(frozen=True, slots=True)
class SeenEvent:
    """A Kubernetes Event already counted: its identity, count and latest time."""

    id: str
    count: int
    last_time: datetime


@dataclass(frozen=True, slots=True)
class ProbeFailures:
    """Probe failures per probe type, summed from Unhealthy Event counts."""

    liveness: int = 0
    readiness: int = 0
    startup: int = 0


@dataclass(frozen=True, slots=True)
class Record:
    """Everything podtrail keeps about the pod a record follows.

    ``label_marks``: marks of the labels the operator put on the record (see labels.py); None
    for a record no version of the operator that keeps them has written yet.
    """

    pod_uid: str | None = None
    node_name: str | None = None
    phase: str | None = None
    pod_reason: str | None = None
    owner: OwnerRecord | None = None
    created: datetime | None = None
    scheduled: datetime | None = None
    initialized: datetime | None = None
    ready: datetime | None = None
    deletion: Deletion | None = None
    killing_at: datetime | None = None
    disruption_reason: str | None = None
    disruption_message: str | None = None
    pre_stop_failures: tuple[PreStopFailure, ...] = ()
    removal: Removal | None = None
    containers: tuple[ContainerRecord, ...] = ()
    conditions: tuple[ConditionRecord, ...] = ()
    endpoints: tuple[EndpointRecord, ...] = ()
    endpoint_removals: tuple[EndpointRemoval, ...] = ()
    probe_failures: ProbeFailures = field(default_factory=ProbeFailures)
    timeline: tuple[Entry, ...] = ()
    timeline_dropped: int = 0
    previous: tuple[Instance, ...] = ()
    seen_events: tuple[SeenEvent, ...] = ()
    label_marks: tuple[str, ...] | None = None

    def container(self, name: str | None) -> ContainerRecord | None:
        """The container with that name, if known."""
        return next((c for c in self.containers if c.name == name), None)

    def condition(self, ctype: str) -> ConditionRecord | None:
        """The condition of that type, if known."""
        return next((c for c in self.conditions if c.type == ctype), None)

    def seen_event(self, event_id: str) -> SeenEvent | None:
        """The ledger item of an Event, if it was counted before."""
        return next((e for e in self.seen_events if e.id == event_id), None)

    def endpoint(self, service: str, address: str) -> EndpointRecord | None:
        """The endpoint membership for a Service and address, if known."""
        return next(
            (e for e in self.endpoints if e.service == service and e.address == address), None
        )

    def restarts(self) -> int:
        """Restarts summed over all containers (as kubectl's RESTARTS column)."""
        return min(sum(c.restart_count for c in self.containers), MAX_INT)
