"""Raw Kubernetes JSON (as the API returns it) → typed observations.

Everything here tolerates hostile input: missing keys, wrong types, absurd numbers and huge
strings give a smaller observation (or None), never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._access import (
    MAX_ADDRESS,
    MAX_CONDITION_TYPE,
    MAX_CONDITIONS,
    MAX_CONTAINERS,
    MAX_FLAG,
    MAX_GRACE,
    MAX_KIND,
    MAX_LABEL,
    MAX_PHASE,
    MAX_REASON,
    MAX_UID,
    RUN_ID_LENGTH,
    as_bool,
    as_int,
    as_list,
    as_map,
    as_str,
    clean_text,
)
from .clock import later, parse_time
from .facts import MAX_EVENT_ID, ContainerKind, plain_id

MAX_TEXT = 4096
MAX_COUNT = 1_000_000_000


# --- Observations ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunEnd:
    """A container run that ended (state.terminated or lastState.terminated)."""

    exit_code: int | None
    reason: str | None
    message: str | None
    started_at: datetime | None
    finished_at: datetime | None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerSeen:
    """One container as the pod's spec and status show it."""

    name: str
    kind: ContainerKind
    state: str
    reason: str | None
    message: str | None
    ready: bool
    started: bool | None
    restart_count: int
    started_at: datetime | None
    ended: RunEnd | None
    last_ended: RunEnd | None
    pre_stop: bool
    startup_probe: bool
    has_status: bool
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConditionSeen:
    """One pod condition."""

    type: str
    status: str
    last_transition_time: datetime | None
    reason: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class OwnerSeen:
    """The pod's controller, and the Deployment inferred from a ReplicaSet's name."""

    kind: str
    name: str
    deployment: str | None


@dataclass(frozen=True, slots=True)
class PodSeen:
    """A pod object as the API showed it (a watch event, a list item)."""

    namespace: str
    pod_name: str
    pod_uid: str | None
    created: datetime | None
    node_name: str | None
    phase: str | None
    reason: str | None
    message: str | None
    owner: OwnerSeen | None
    conditions: tuple[ConditionSeen, ...]
    containers: tuple[ContainerSeen, ...]
    deletion_timestamp: datetime | None
    deletion_grace_seconds: int | None


@dataclass(frozen=True, slots=True)
class EventSeen:
    """A core/v1 Event about a pod."""

    namespace: str
    pod_name: str
    pod_uid: str | None
    event_id: str
    reason: str
    type: str
    message: str | None
    container: str | None
    init_container: bool
    first_time: datetime
    last_time: datetime
    count: int
    source: str | None


@dataclass(frozen=True, slots=True)
class EndpointSeen:
    """A change of one pod's membership in one EndpointSlice (of the pod's own namespace)."""

    namespace: str
    pod_name: str
    pod_uid: str
    service: str
    address: str
    ready: bool | None
    serving: bool | None
    terminating: bool | None
    removed: bool
    time: datetime


@dataclass(frozen=True, slots=True)
class PodGone:
    """The pod was removed from the API.

    Attributes:
        namespace: The pod's namespace.
        pod_name: The pod's name (and the record's).
        pod_uid: The removed pod's UID, if known.
        time: When the removal was seen (observed) or found (not observed).
        observed: True when the watch's DELETED event was seen; False when the pod was found
            missing (e.g. after an operator restart).
    """

    namespace: str
    pod_name: str
    pod_uid: str | None
    time: datetime
    observed: bool


Observation = PodSeen | EventSeen | EndpointSeen | PodGone


# --- Pods ------------------------------------------------------------------------------


def _run_end(raw: object) -> RunEnd | None:
    data = as_map(raw)
    if not data:
        return None
    return RunEnd(
        exit_code=as_int(data.get("exitCode")),
        reason=as_str(data.get("reason"), MAX_REASON),
        message=as_str(data.get("message"), MAX_TEXT),
        started_at=parse_time(data.get("startedAt")),
        finished_at=parse_time(data.get("finishedAt")),
        run_id=run_id_of(data.get("containerID")),
    )


def run_id_of(container_id: object) -> str | None:
    """A short id of one container run (`containerd://3f2a…` → `3f2a…`, 12 characters).

    Two runs of one container can start and end within the same second, which is all the
    precision Kubernetes keeps; the runtime's container ID tells them apart.
    """
    text = as_str(container_id, MAX_TEXT)
    if text is None:
        return None
    return text.rpartition("://")[2][:RUN_ID_LENGTH] or None


def _container(
    spec: Mapping[str, Any], status: Mapping[str, Any], kind: ContainerKind
) -> ContainerSeen | None:
    name = as_str(spec.get("name"), MAX_LABEL) or as_str(status.get("name"), MAX_LABEL)
    if name is None:
        return None
    state = as_map(status.get("state"))
    state_name, reason, message, started_at = "unknown", None, None, None
    ended = None
    if "terminated" in state and isinstance(state.get("terminated"), Mapping):
        state_name = "terminated"
        ended = _run_end(state["terminated"])
        if ended is not None:
            reason, message, started_at = ended.reason, ended.message, ended.started_at
    elif isinstance(state.get("running"), Mapping):
        state_name = "running"
        started_at = parse_time(state["running"].get("startedAt"))
    elif isinstance(state.get("waiting"), Mapping):
        state_name = "waiting"
        reason = as_str(state["waiting"].get("reason"), MAX_REASON)
        message = as_str(state["waiting"].get("message"), MAX_TEXT)
    lifecycle = as_map(spec.get("lifecycle"))
    return ContainerSeen(
        name=name,
        kind=kind,
        state=state_name,
        reason=reason,
        message=message,
        ready=as_bool(status.get("ready")) is True,
        started=as_bool(status.get("started")),
        restart_count=as_int(status.get("restartCount"), 0, MAX_COUNT) or 0,
        started_at=started_at,
        ended=ended,
        last_ended=_run_end(as_map(status.get("lastState")).get("terminated")),
        pre_stop=bool(as_map(lifecycle.get("preStop"))),
        startup_probe=bool(as_map(spec.get("startupProbe"))),
        has_status=bool(status),
        run_id=run_id_of(status.get("containerID")),
    )


def _containers(spec: Mapping[str, Any], status: Mapping[str, Any]) -> tuple[ContainerSeen, ...]:
    found: list[ContainerSeen] = []
    names: set[str] = set()
    for spec_key, status_key, default_kind in (
        ("initContainers", "initContainerStatuses", ContainerKind.INIT),
        ("containers", "containerStatuses", ContainerKind.APP),
    ):
        statuses: dict[str, Mapping[str, Any]] = {}
        for item in as_list(status.get(status_key), MAX_CONTAINERS):
            item_map = as_map(item)
            item_name = as_str(item_map.get("name"), MAX_LABEL)
            if item_name is not None:
                statuses.setdefault(item_name, item_map)
        specs = [as_map(item) for item in as_list(spec.get(spec_key), MAX_CONTAINERS)]
        spec_names = {as_str(item.get("name"), MAX_LABEL) for item in specs}
        specs += [{"name": n} for n in statuses if n not in spec_names]
        for item in specs:
            kind = default_kind
            if default_kind is ContainerKind.INIT and item.get("restartPolicy") == "Always":
                kind = ContainerKind.SIDECAR
            name = as_str(item.get("name"), MAX_LABEL) or ""
            seen = _container(item, statuses.get(name, {}), kind)
            if seen is not None and seen.name not in names and len(found) < MAX_CONTAINERS:
                names.add(seen.name)
                found.append(seen)
    return tuple(found)


def _conditions(status: Mapping[str, Any]) -> tuple[ConditionSeen, ...]:
    found: dict[str, ConditionSeen] = {}
    for item in as_list(status.get("conditions"), MAX_CONDITIONS):
        data = as_map(item)
        ctype = as_str(data.get("type"), MAX_CONDITION_TYPE)
        cstatus = as_str(data.get("status"), MAX_FLAG)
        if ctype is None or cstatus is None or ctype in found:
            continue
        found[ctype] = ConditionSeen(
            type=ctype,
            status=cstatus,
            last_transition_time=parse_time(data.get("lastTransitionTime")),
            reason=as_str(data.get("reason"), MAX_REASON),
            message=as_str(data.get("message"), MAX_TEXT),
        )
    return tuple(found.values())


def _owner(meta: Mapping[str, Any]) -> OwnerSeen | None:
    refs = [as_map(ref) for ref in as_list(meta.get("ownerReferences"), 16)]
    chosen = next((ref for ref in refs if ref.get("controller") is True), None)
    if chosen is None:
        return None
    kind, name = as_str(chosen.get("kind"), MAX_KIND), as_str(chosen.get("name"))
    if kind is None or name is None:
        return None
    deployment = None
    template_hash = as_str(as_map(meta.get("labels")).get("pod-template-hash"), MAX_LABEL)
    if kind == "ReplicaSet" and template_hash and name.endswith("-" + template_hash):
        deployment = name[: -len(template_hash) - 1] or None
    return OwnerSeen(kind=kind, name=name, deployment=deployment)


def observe_pod(raw_pod: Mapping[str, Any]) -> PodSeen:
    """Read a pod object as the API returns it.

    Args:
        raw_pod: The pod as JSON (camelCase keys, RFC 3339 timestamps).

    Returns:
        The observation; fields that are missing or malformed are None or empty.
    """
    pod = as_map(raw_pod)
    meta, spec, status = (
        as_map(pod.get("metadata")),
        as_map(pod.get("spec")),
        as_map(pod.get("status")),
    )
    grace = as_int(meta.get("deletionGracePeriodSeconds"), 0, MAX_GRACE)
    return PodSeen(
        namespace=as_str(meta.get("namespace")) or "",
        pod_name=as_str(meta.get("name")) or "",
        pod_uid=as_str(meta.get("uid"), MAX_UID),
        created=parse_time(meta.get("creationTimestamp")),
        node_name=as_str(spec.get("nodeName")),
        phase=as_str(status.get("phase"), MAX_PHASE),
        reason=as_str(status.get("reason"), MAX_REASON),
        message=as_str(status.get("message"), MAX_TEXT),
        owner=_owner(meta),
        conditions=_conditions(status),
        containers=_containers(spec, status),
        deletion_timestamp=parse_time(meta.get("deletionTimestamp")),
        deletion_grace_seconds=grace,
    )


# --- Events ----------------------------------------------------------------------------

_FIELD_PATH = re.compile(r"^spec\.(containers|initContainers|ephemeralContainers)\{([^}]*)\}")


def _event_times(
    event: Mapping[str, Any], series: Mapping[str, Any], meta: Mapping[str, Any]
) -> tuple[datetime, datetime] | None:
    """An Event's first and latest occurrence; None when it has no timestamp at all."""
    first = (
        parse_time(event.get("firstTimestamp"))
        or parse_time(event.get("eventTime"))
        or parse_time(meta.get("creationTimestamp"))
    )
    last = later(
        parse_time(series.get("lastObservedTime")),
        later(parse_time(event.get("lastTimestamp")), parse_time(event.get("eventTime"))),
    )
    if first is None:
        first = last
    if first is None:
        return None
    return first, later(first, last) or first


def observe_event(raw_event: Mapping[str, Any]) -> EventSeen | None:
    """Read a core/v1 Event about a pod.

    Args:
        raw_event: The Event as JSON.

    Returns:
        The observation, or None when the Event is not about a pod or lacks a name, a reason
        or any timestamp.
    """
    event = as_map(raw_event)
    involved = as_map(event.get("involvedObject"))
    if involved.get("kind") != "Pod":
        return None
    meta = as_map(event.get("metadata"))
    pod_name = as_str(involved.get("name"))
    reason = as_str(event.get("reason"), MAX_REASON)
    if pod_name is None or reason is None:
        return None
    series = as_map(event.get("series"))
    times = _event_times(event, series, meta)
    if times is None:
        return None
    first, last = times
    count = (
        as_int(series.get("count"), 1, MAX_COUNT) or as_int(event.get("count"), 1, MAX_COUNT) or 1
    )
    container, init = None, False
    match = _FIELD_PATH.match(as_str(involved.get("fieldPath"), 600) or "")
    if match:
        container = clean_text(match.group(2)[:MAX_LABEL]) or None
        init = match.group(1) == "initContainers"
    event_id = as_str(meta.get("uid"), MAX_UID) or as_str(meta.get("name"))
    if event_id is None:
        event_id = f"{reason}@{first.isoformat()}@{container or ''}"
    event_id = plain_id(event_id, MAX_EVENT_ID)  # the ledger keeps ids of bounded size
    source = as_map(event.get("source"))
    return EventSeen(
        namespace=as_str(involved.get("namespace")) or as_str(meta.get("namespace")) or "",
        pod_name=pod_name,
        pod_uid=as_str(involved.get("uid"), MAX_UID),
        event_id=event_id,
        reason=reason,
        type=as_str(event.get("type"), 32) or "Normal",
        message=as_str(event.get("message"), MAX_TEXT),
        container=container,
        init_container=init,
        first_time=first,
        last_time=last,
        count=count,
        source=as_str(source.get("component"), 128) or as_str(event.get("reportingComponent"), 128),
    )


# --- EndpointSlices --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Member:
    """A pod's endpoint in a slice: the pod's UID and the endpoint's conditions."""

    uid: str
    ready: bool | None
    serving: bool | None
    terminating: bool | None


def _trusted_pod_ref(ref: Mapping[str, Any], slice_namespace: str) -> tuple[str, str] | None:
    """(pod name, UID) of a targetRef that may speak for a pod, else None.

    Anyone who may write EndpointSlices in one namespace can name any pod in a targetRef: only
    a pod of the slice's own namespace, named with its UID, is trusted (the record then takes
    the observation only when the UID is its pod's).
    """
    if ref.get("kind") != "Pod" or not slice_namespace:
        return None
    namespace = as_str(ref.get("namespace"))
    name, uid = as_str(ref.get("name")), as_str(ref.get("uid"), MAX_UID)
    if name is None or uid is None or namespace not in (None, slice_namespace):
        return None
    return name, uid


def _members(raw_slice: Mapping[str, Any] | None) -> tuple[str, dict[tuple[str, str], _Member]]:
    """The slice's namespace and its trusted pod endpoints: (pod name, address) → member."""
    members: dict[tuple[str, str], _Member] = {}
    data = as_map(raw_slice)
    slice_namespace = as_str(as_map(data.get("metadata")).get("namespace")) or ""
    for item in as_list(data.get("endpoints"), 1000):
        endpoint = as_map(item)
        pod = _trusted_pod_ref(as_map(endpoint.get("targetRef")), slice_namespace)
        addresses = [a for a in as_list(endpoint.get("addresses"), 8) if isinstance(a, str) and a]
        if pod is None or not addresses:
            continue
        conditions = as_map(endpoint.get("conditions"))
        members[(pod[0], clean_text(addresses[0][:MAX_ADDRESS]))] = _Member(
            pod[1],
            as_bool(conditions.get("ready")),
            as_bool(conditions.get("serving")),
            as_bool(conditions.get("terminating")),
        )
    return slice_namespace, members


def _service(raw_slice: Mapping[str, Any] | None) -> str | None:
    labels = as_map(as_map(as_map(raw_slice).get("metadata")).get("labels"))
    return as_str(labels.get("kubernetes.io/service-name"), MAX_LABEL)


def observe_endpoint_slice_change(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, *, now: datetime
) -> list[EndpointSeen]:
    """Compare two versions of one EndpointSlice, pod by pod.

    The time of every change is ``now`` (the operator's clock, source "observed"): the
    slice's last-change-trigger-time annotation is dropped on the update that marks a pod
    terminating, so it cannot date the changes podtrail cares about.

    Args:
        old: The previous version, or None when the slice was created (or relisted).
        new: The new version, or None when the slice was deleted.
        now: When the change was received.

    Returns:
        One observation per pod whose endpoint appeared, changed or disappeared.
    """
    service = _service(new) or _service(old)
    if service is None:
        return []
    old_namespace, before = _members(old)
    new_namespace, after = _members(new)
    namespace = new_namespace or old_namespace
    changed = [(at, member, False) for at, member in after.items() if before.get(at) != member]
    gone = [
        (at, _Member(member.uid, None, None, None), True)
        for at, member in before.items()
        if at not in after
    ]
    return [
        EndpointSeen(
            namespace=namespace,
            pod_name=name,
            pod_uid=member.uid,
            service=service,
            address=address,
            ready=member.ready,
            serving=member.serving,
            terminating=member.terminating,
            removed=removed,
            time=now,
        )
        for (name, address), member, removed in changed + gone
    ]
