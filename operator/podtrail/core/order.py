"""The timeline's order: by time, and among equal times in the order a pod's life goes.

Most times Kubernetes records have whole seconds, so many entries share one: a pod's creation,
scheduling, sandbox, container start and readiness often fall in the same second, and so do the
steps of its end. Among equal times entries are ordered by their stage (a rank per entry type,
see ``Stage``); within one stage by the container's place in the pod (init containers and
sidecars first, in their order) and the step of that container (image, run, ready); and entries
still equal keep the order they were added in, which is the order they were seen (the sort is
stable). A container's runs within one second thus read start, end, restart, start again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import IntEnum
from functools import lru_cache

from .facts import ContainerKind, FactType
from .model import ContainerRecord, Entry


class Stage(IntEnum):
    """Where an entry type falls in a pod's life, when times are equal (lowest first).

    The beginning reads creation, scheduling, sandbox, then each container in the pod's order
    (init containers and sidecars, the Initialized condition, app containers: image, start,
    sidecar readiness), startup and readiness, conditions, phase. The end reads disruption,
    deletion request, Killing, preStop, probe failures, each container's exit, readiness lost,
    conditions, endpoints, phase, removal.
    """

    CREATION = 0
    SCHEDULING = 1
    SCHEDULED = 2
    WARNING = 3
    SANDBOX = 4
    DISRUPTION = 5
    DELETION = 6
    KILLING = 7
    PRE_STOP = 8
    PROBE = 9
    CONTAINERS = 10
    STARTUP = 11
    READY = 12
    CONDITION = 13
    ENDPOINT = 14
    ENDPOINT_REMOVED = 15
    PHASE = 16
    REMOVAL = 17


STAGES: dict[str, Stage] = {
    FactType.CREATED: Stage.CREATION,
    FactType.FAILED_SCHEDULING: Stage.SCHEDULING,
    FactType.SCHEDULED: Stage.SCHEDULED,
    FactType.EVENT_REPORTED: Stage.WARNING,
    FactType.SANDBOX_READY: Stage.SANDBOX,
    FactType.EVICTED: Stage.DISRUPTION,
    FactType.PREEMPTED: Stage.DISRUPTION,
    FactType.TAINT_MANAGER_DELETION: Stage.DISRUPTION,
    FactType.DELETION_REQUESTED: Stage.DELETION,
    FactType.FORCE_DELETED: Stage.DELETION,
    FactType.KILLING_STARTED: Stage.KILLING,
    FactType.PRE_STOP_HOOK_FAILED: Stage.PRE_STOP,
    FactType.PROBE_FAILED: Stage.PROBE,
    FactType.LIVENESS_RESTART: Stage.PROBE,
    FactType.IMAGE_PULLING: Stage.CONTAINERS,
    FactType.IMAGE_PULLED: Stage.CONTAINERS,
    FactType.IMAGE_PULL_FAILED: Stage.CONTAINERS,
    FactType.CONTAINER_WAITING: Stage.CONTAINERS,
    FactType.CONTAINER_STARTED: Stage.CONTAINERS,
    FactType.SIDECAR_STARTED: Stage.CONTAINERS,
    FactType.POST_START_HOOK_FAILED: Stage.CONTAINERS,
    FactType.CONTAINER_TERMINATED: Stage.CONTAINERS,
    FactType.EXITED_ON_TERM: Stage.CONTAINERS,
    FactType.KILLED_AFTER_GRACE: Stage.CONTAINERS,
    FactType.OOM_KILLED: Stage.CONTAINERS,
    FactType.CONTAINER_RESTARTED: Stage.CONTAINERS,
    FactType.BACK_OFF: Stage.CONTAINERS,
    FactType.SIDECAR_READY: Stage.CONTAINERS,
    FactType.STARTUP_PROBE_PASSED: Stage.STARTUP,
    FactType.CONTAINER_READY: Stage.READY,
    FactType.CONTAINER_NOT_READY: Stage.READY,
    FactType.CONDITION_CHANGED: Stage.CONDITION,
    FactType.ENDPOINT_CHANGED: Stage.ENDPOINT,
    FactType.REMOVED_FROM_ENDPOINTS: Stage.ENDPOINT_REMOVED,
    FactType.PHASE_CHANGED: Stage.PHASE,
    FactType.POD_DELETED: Stage.REMOVAL,
    FactType.DELETED_UNOBSERVED: Stage.REMOVAL,
}

# The step of one container, within the CONTAINERS stage: its image, then its runs (start, end,
# restart, waiting, in the order seen), then Kubernetes' back-off, then a sidecar's readiness.
STEPS: dict[str, int] = {
    FactType.IMAGE_PULLING: 0,
    FactType.IMAGE_PULLED: 1,
    FactType.IMAGE_PULL_FAILED: 2,
    FactType.BACK_OFF: 4,
    FactType.SIDECAR_READY: 5,
    FactType.STARTUP_PROBE_PASSED: 5,
}
RUN_STEP = 3
ENDS = frozenset(
    {
        FactType.CONTAINER_TERMINATED,
        FactType.EXITED_ON_TERM,
        FactType.KILLED_AFTER_GRACE,
        FactType.OOM_KILLED,
    }
)
# Conditions in the order a pod reaches them; any other condition comes after these.
CONDITIONS = {"ContainersReady": 0, "Ready": 1}
_CONDITION = re.compile(r"^Condition (\S+) is ")

Rank = tuple[int, int, int]


@lru_cache(maxsize=1024)
def _condition_rank(summary: str) -> tuple[Stage, int]:
    """Stage and step of a ConditionChanged entry, from its summary ("Condition X is Y")."""
    match = _CONDITION.match(summary)
    ctype = match.group(1) if match else ""
    if ctype == "PodScheduled":
        return Stage.SCHEDULING, 0
    if ctype == "DisruptionTarget":
        return Stage.DISRUPTION, 0
    if ctype == "Initialized":
        return Stage.CONTAINERS, -1  # between the init containers and the app containers
    return Stage.CONDITION, CONDITIONS.get(ctype, len(CONDITIONS))


class Places:
    """Each container's place in the pod: init containers and sidecars first, then apps.

    A sidecar's end comes after every app container's (the kubelet stops sidecars last, in
    reverse order). An entry about a container the record does not know comes after all.
    """

    def __init__(self, containers: Sequence[ContainerRecord]) -> None:
        self.count = len(containers)
        self.index = {c.name: i for i, c in enumerate(containers)}
        self.sidecars = {c.name for c in containers if c.kind == ContainerKind.SIDECAR}
        self.early = {c.name for c in containers if c.kind != ContainerKind.APP}
        self.first_app = len(self.early)

    def of(self, entry: Entry) -> int:
        """The place of the entry's container."""
        name = entry.container
        at = self.index.get(name) if name is not None else None
        if at is None:
            return 2 * self.count
        if name in self.sidecars and entry.type in ENDS:
            return 2 * self.count - at
        return at


def rank(entry: Entry, places: Places) -> Rank:
    """Stage, container place and step of an entry: the tie-break among equal times."""
    if entry.type == FactType.CONDITION_CHANGED:
        stage, step = _condition_rank(entry.summary)
        if stage is Stage.CONTAINERS:
            return stage, places.first_app, step
        return stage, 0, step
    stage = STAGES.get(entry.type, Stage.WARNING)
    if stage is Stage.STARTUP and entry.container in places.early:
        stage = Stage.CONTAINERS  # a sidecar's startup gates the next init container
    if stage is not Stage.CONTAINERS:
        return stage, 0, 0
    return stage, places.of(entry), STEPS.get(entry.type, RUN_STEP)


def causal_order(
    entries: Iterable[Entry], containers: Sequence[ContainerRecord]
) -> tuple[Entry, ...]:
    """The entries sorted by time, then by rank; entries equal in both keep their order.

    A rank depends only on an entry's type, container and (for a condition) summary: it is
    worked out once per sort for each of those (a full timeline has few of them).
    """
    places = Places(containers)
    ranks: dict[tuple[str, str | None, str | None], Rank] = {}

    def key(entry: Entry) -> tuple[datetime, Rank]:
        summary = entry.summary if entry.type == FactType.CONDITION_CHANGED else None
        signature = (entry.type, entry.container, summary)
        found = ranks.get(signature)
        if found is None:
            found = ranks[signature] = rank(entry, places)
        return entry.time, found

    return tuple(sorted(entries, key=key))
