"""The facts podtrail records: their types, sources, keys and how repeats merge."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from .clock import format_time
from .limits import Limits
from .model import Occurrence

TRUNCATION_MARKER = "…[truncated]"
MAX_KEY_LENGTH = 240
MAX_SUMMARY_LENGTH = 300
MAX_EVENT_ID = 64

# Printable ASCII that no JSON encoder escapes (Go's escapes <, > and &): what keys and ledger
# ids may hold, so each of their characters is one byte in any encoding.
_PLAIN_ID = re.compile(r"[ !#-%'-;=?-\[\]-~]*")
_NOT_PLAIN = re.compile(r"[^ !#-%'-;=?-\[\]-~]")


class FactType(StrEnum):
    """Timeline entry types: past-tense names of what happened to the pod."""

    CREATED = "Created"
    SCHEDULED = "Scheduled"
    FAILED_SCHEDULING = "FailedScheduling"
    SANDBOX_READY = "SandboxReady"
    IMAGE_PULLING = "ImagePulling"
    IMAGE_PULLED = "ImagePulled"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    BACK_OFF = "BackOff"
    CONTAINER_WAITING = "ContainerWaiting"
    CONTAINER_STARTED = "ContainerStarted"
    CONTAINER_READY = "ContainerReady"
    CONTAINER_NOT_READY = "ContainerNotReady"
    STARTUP_PROBE_PASSED = "StartupProbePassed"
    CONTAINER_TERMINATED = "ContainerTerminated"
    CONTAINER_RESTARTED = "ContainerRestarted"
    SIDECAR_STARTED = "SidecarStarted"
    SIDECAR_READY = "SidecarReady"
    PHASE_CHANGED = "PhaseChanged"
    CONDITION_CHANGED = "ConditionChanged"
    PROBE_FAILED = "ProbeFailed"
    LIVENESS_RESTART = "LivenessRestart"
    POST_START_HOOK_FAILED = "PostStartHookFailed"
    PRE_STOP_HOOK_FAILED = "PreStopHookFailed"
    DELETION_REQUESTED = "DeletionRequested"
    KILLING_STARTED = "KillingStarted"
    ENDPOINT_CHANGED = "EndpointChanged"
    REMOVED_FROM_ENDPOINTS = "RemovedFromEndpoints"
    EXITED_ON_TERM = "ExitedOnTerm"
    KILLED_AFTER_GRACE = "KilledAfterGrace"
    OOM_KILLED = "OOMKilled"
    EVICTED = "Evicted"
    PREEMPTED = "Preempted"
    TAINT_MANAGER_DELETION = "TaintManagerDeletion"
    FORCE_DELETED = "ForceDeleted"
    POD_DELETED = "PodDeleted"
    DELETED_UNOBSERVED = "DeletedUnobserved"
    EVENT_REPORTED = "EventReported"


class Source(StrEnum):
    """Where a fact's time and content come from."""

    STATUS = "status"
    EVENT = "event"
    INFERRED = "inferred"
    OBSERVED = "observed"


_SOURCES = frozenset(str(source) for source in Source)


def known_source(value: object) -> str:
    """A source as a record keeps it: a Source value, else "observed"."""
    return value if isinstance(value, str) and value in _SOURCES else Source.OBSERVED


class Probe(StrEnum):
    """Kubelet probe kinds."""

    LIVENESS = "liveness"
    READINESS = "readiness"
    STARTUP = "startup"


class ContainerKind(StrEnum):
    """Container kinds: app containers, init containers, native sidecars."""

    APP = "app"
    INIT = "init"
    SIDECAR = "sidecar"


class Merge(StrEnum):
    """What a fact does when its key is already in the timeline.

    ONCE: the first fact with a key wins, later ones are no-ops (one-off happenings
    reported by two sources, such as Scheduled from the condition and from the Event).
    ADD: a repeat: the entry's count grows by the fact's count and lastTime advances.
    """

    ONCE = "once"
    ADD = "add"


class Importance(IntEnum):
    """How long an entry deserves to stay when the timeline is full (low goes first)."""

    NOISE = 0
    DETAIL = 1
    NOTABLE = 2
    ESSENTIAL = 3


IMPORTANCE: dict[str, Importance] = {
    FactType.IMAGE_PULLING: Importance.NOISE,
    FactType.IMAGE_PULLED: Importance.NOISE,
    FactType.CONTAINER_WAITING: Importance.DETAIL,
    FactType.CONTAINER_STARTED: Importance.DETAIL,
    FactType.CONTAINER_READY: Importance.DETAIL,
    FactType.CONTAINER_NOT_READY: Importance.DETAIL,
    FactType.STARTUP_PROBE_PASSED: Importance.DETAIL,
    FactType.SIDECAR_READY: Importance.DETAIL,
    FactType.CONDITION_CHANGED: Importance.DETAIL,
    FactType.ENDPOINT_CHANGED: Importance.DETAIL,
    FactType.EVENT_REPORTED: Importance.DETAIL,
    FactType.SCHEDULED: Importance.NOTABLE,
    FactType.FAILED_SCHEDULING: Importance.NOTABLE,
    FactType.SANDBOX_READY: Importance.NOTABLE,
    FactType.IMAGE_PULL_FAILED: Importance.NOTABLE,
    FactType.BACK_OFF: Importance.NOTABLE,
    FactType.CONTAINER_TERMINATED: Importance.NOTABLE,
    FactType.CONTAINER_RESTARTED: Importance.NOTABLE,
    FactType.SIDECAR_STARTED: Importance.NOTABLE,
    FactType.PHASE_CHANGED: Importance.NOTABLE,
    FactType.PROBE_FAILED: Importance.NOTABLE,
    FactType.LIVENESS_RESTART: Importance.NOTABLE,
    FactType.POST_START_HOOK_FAILED: Importance.NOTABLE,
    FactType.REMOVED_FROM_ENDPOINTS: Importance.NOTABLE,
    FactType.CREATED: Importance.ESSENTIAL,
    FactType.PRE_STOP_HOOK_FAILED: Importance.ESSENTIAL,
    FactType.DELETION_REQUESTED: Importance.ESSENTIAL,
    FactType.KILLING_STARTED: Importance.ESSENTIAL,
    FactType.EXITED_ON_TERM: Importance.ESSENTIAL,
    FactType.KILLED_AFTER_GRACE: Importance.ESSENTIAL,
    FactType.OOM_KILLED: Importance.ESSENTIAL,
    FactType.EVICTED: Importance.ESSENTIAL,
    FactType.PREEMPTED: Importance.ESSENTIAL,
    FactType.TAINT_MANAGER_DELETION: Importance.ESSENTIAL,
    FactType.FORCE_DELETED: Importance.ESSENTIAL,
    FactType.POD_DELETED: Importance.ESSENTIAL,
    FactType.DELETED_UNOBSERVED: Importance.ESSENTIAL,
}

# Facts written to the API at once rather than at the end of the coalescing window: the end of
# the pod's life. Intermediate termination steps (deletion requested, Killing, exits) follow each
# other within the grace period and are written together, one write per window.
TERMINAL_TYPES: frozenset[str] = frozenset(
    {
        FactType.FORCE_DELETED,
        FactType.POD_DELETED,
        FactType.DELETED_UNOBSERVED,
    }
)

TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})


_IMPORTANCE_BY_NAME = {str(fact_type): level for fact_type, level in IMPORTANCE.items()}


def importance(fact_type: str) -> Importance:
    """How important an entry type is when the timeline must drop entries."""
    return _IMPORTANCE_BY_NAME.get(fact_type, Importance.DETAIL)


def clip(text: str | None, limit: int) -> str | None:
    """Cut text to at most ``limit`` characters, ending with a visible marker when cut."""
    if text is None:
        return None
    if len(text) <= limit:
        return text
    keep = max(0, limit - len(TRUNCATION_MARKER))
    return text[:keep] + TRUNCATION_MARKER


def one_line(text: str | None, limit: int) -> str | None:
    """The first non-blank line of a text, whitespace collapsed, clipped to ``limit``.

    Returns None when the text has no visible character.
    """
    if text is None:
        return None
    for line in text.splitlines():
        words = line.split()
        if words:
            return clip(" ".join(words), limit)
    return None


def kept_message(text: str | None, limits: Limits) -> str | None:
    """A message as the record keeps it: its first line, clipped, or nothing at all.

    Termination messages can hold the tail of a container's log, hence the `none` policy.
    """
    if limits.messages == "none":
        return None
    return one_line(text, limits.message_cap())


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def plain_id(text: str, limit: int) -> str:
    """An identity kept as is when it is short plain ASCII, else a stable digest of it.

    Keys and Event ids need only be deterministic, so anything else is hashed: each of their
    characters is then one byte in any JSON encoding.
    """
    if len(text) <= limit and _PLAIN_ID.fullmatch(text):
        return text
    plain = _NOT_PLAIN.sub("_", text[: limit - 25])
    return plain + "#" + _digest(text, 24)


def make_key(*parts: object) -> str:
    """A deterministic fact key from its parts, hashed down when too long or not plain ASCII."""
    rendered = [
        format_time(p) if isinstance(p, datetime) else "" if p is None else str(p) for p in parts
    ]
    key = "/".join(part if part else "-" for part in rendered)
    return plain_id(key, MAX_KEY_LENGTH)


def signal_of(exit_code: int | None) -> str | None:
    """The signal a container's exit code implies (128 + n), for the two that matter."""
    if exit_code == 143:
        return "TERM"
    if exit_code == 137:
        return "KILL"
    return None


@dataclass(frozen=True, slots=True)
class Fact(Occurrence):
    """One thing that happened to a pod, ready to become (or extend) a timeline entry.

    Attributes:
        key: Deterministic identity (pod UID + what happened + Kubernetes' own counters
            and timestamps); a fact whose key is already recorded is a repeat, not news.
        time: When it happened (from Kubernetes where recorded; see ``source``).
        type: What happened.
        summary: One human-readable line.
        source: Where its time and content come from: status, event, inferred or observed.
        container: The container concerned, if any.
        reason: Kubernetes' reason (Event reason, waiting/terminated reason, condition reason).
        message: Kubernetes' message, truncated.
        from_phase: Phase before a phase change.
        to_phase: Phase after a phase change.
        exit_code: A container's exit code.
        signal: The signal inferred from the exit code and timing (TERM or KILL).
        probe: liveness, readiness or startup.
        count: How many occurrences this fact adds (Event counts for aggregated Events).
        last_time: The latest occurrence, for repeats.
        merge: ONCE or ADD, see Merge (how it joins an entry with the same key).
        pod_uid: The pod's UID.
    """

    type: FactType
    source: Source
    merge: Merge = Merge.ONCE
    pod_uid: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether this fact should reach the API at once (an end or a termination step)."""
        if self.type in TERMINAL_TYPES:
            return True
        return self.type == FactType.PHASE_CHANGED and self.to_phase in TERMINAL_PHASES

    def as_log(self) -> dict[str, Any]:
        """Flat, JSON-friendly fields for one structured log line."""
        fields: dict[str, Any] = {
            "fact": str(self.type),
            "key": self.key,
            "time": format_time(self.time),
            "summary": self.summary,
            "source": str(self.source),
            "pod_uid": self.pod_uid,
            "container": self.container,
            "reason": self.reason,
            "message": self.message,
            "from_phase": self.from_phase,
            "to_phase": self.to_phase,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "probe": self.probe,
            "count": self.count,
            "last_time": format_time(self.last_time) if self.last_time else None,
        }
        return {name: value for name, value in fields.items() if value is not None}
