"""Small builders for Kubernetes 1.34-shaped pods, Events and EndpointSlices (plain JSON)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
NAMESPACE = "shop"
POD = "web-0"
UID = "8d5e7c1a-0000-4000-8000-000000000001"
NODE = "worker-1"

Json = dict[str, Any]


def at(seconds: float) -> datetime:
    """T0 + seconds."""
    return T0 + timedelta(seconds=seconds)


def ts(seconds: float) -> str:
    """RFC 3339 text for T0 + seconds (whole seconds, as the API writes most times)."""
    return at(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_ts(seconds: float) -> str:
    """RFC 3339 text with microseconds (MicroTime fields such as eventTime)."""
    return at(seconds).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- spec --------------------------------------------------------------------------------


def container(
    name: str = "app",
    *,
    image: str = "registry.example/app:1.0",
    pre_stop: list[str] | None = None,
    startup_probe: bool = False,
    readiness_probe: bool = False,
    restart_policy: str | None = None,
) -> Json:
    """A spec.containers[] / spec.initContainers[] item."""
    spec: Json = {"name": name, "image": image}
    if pre_stop is not None:
        spec["lifecycle"] = {"preStop": {"exec": {"command": pre_stop}}}
    if startup_probe:
        spec["startupProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}
    if readiness_probe:
        spec["readinessProbe"] = {"httpGet": {"path": "/ready", "port": 8080}}
    if restart_policy is not None:
        spec["restartPolicy"] = restart_policy
    return spec


def sidecar(name: str = "proxy") -> Json:
    """A native sidecar: an init container with restartPolicy Always."""
    return container(name, image="registry.example/proxy:1.0", restart_policy="Always")


# --- container statuses ------------------------------------------------------------------


def terminated_state(
    exit_code: int,
    started: float,
    finished: float,
    reason: str | None = None,
    run: str = "ab" * 32,
) -> Json:
    """A state.terminated / lastState.terminated value; `run` is the container ID's hex."""
    reason = reason or ("Completed" if exit_code == 0 else "Error")
    return {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": ts(started),
        "finishedAt": ts(finished),
        "containerID": "containerd://" + run,
    }


def _status(name: str, state: Json, **fields: Any) -> Json:
    last = fields.pop("last", None)
    status: Json = {
        "name": name,
        "state": state,
        "lastState": {"terminated": last} if last else {},
        "ready": fields.pop("ready", False),
        "restartCount": fields.pop("restart_count", 0),
        "image": "registry.example/app:1.0",
        "imageID": "registry.example/app@sha256:" + "0" * 64,
    }
    started = fields.pop("started", None)
    if started is not None:
        status["started"] = started
    run = fields.pop("run", None)
    if run is not None:
        status["containerID"] = "containerd://" + run
    assert not fields, fields
    return status


def waiting(
    name: str = "app",
    reason: str = "ContainerCreating",
    message: str | None = None,
    **fields: Any,
) -> Json:
    """A container status in state waiting."""
    state: Json = {"reason": reason}
    if message is not None:
        state["message"] = message
    fields.setdefault("started", False)
    return _status(name, {"waiting": state}, **fields)


def running(name: str = "app", started_at: float = 10, **fields: Any) -> Json:
    """A container status in state running."""
    fields.setdefault("ready", True)
    fields.setdefault("started", True)
    return _status(name, {"running": {"startedAt": ts(started_at)}}, **fields)


def terminated(
    name: str = "app",
    exit_code: int = 0,
    started_at: float = 10,
    finished_at: float = 60,
    reason: str | None = None,
    **fields: Any,
) -> Json:
    """A container status in state terminated."""
    fields.setdefault("started", False)
    run = fields.get("run", "ab" * 32)
    state = terminated_state(exit_code, started_at, finished_at, reason, run=run)
    return _status(name, {"terminated": state}, **fields)


# --- pods --------------------------------------------------------------------------------


def condition(
    ctype: str,
    status: str,
    at_seconds: float,
    reason: str | None = None,
    message: str | None = None,
) -> Json:
    """A pod condition."""
    cond: Json = {
        "type": ctype,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": ts(at_seconds),
    }
    if reason is not None:
        cond["reason"] = reason
    if message is not None:
        cond["message"] = message
    return cond


def pod(
    *,
    name: str = POD,
    uid: str = UID,
    created: float = 0,
    node: str | None = NODE,
    phase: str = "Pending",
    containers: list[Json] | None = None,
    init_containers: list[Json] | None = None,
    statuses: list[Json] | None = None,
    init_statuses: list[Json] | None = None,
    conditions: list[Json] | None = None,
    deleted_at: float | None = None,
    grace: int | None = None,
    owner: tuple[str, str] | None = ("ReplicaSet", "web-7d9f8b6c5d"),
    template_hash: str = "7d9f8b6c5d",
    reason: str | None = None,
    message: str | None = None,
) -> Json:
    """A pod object as the API returns it."""
    meta: Json = {
        "name": name,
        "namespace": NAMESPACE,
        "uid": uid,
        "resourceVersion": "1234",
        "creationTimestamp": ts(created),
        "labels": {"app": "web", "pod-template-hash": template_hash},
    }
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": "owner-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    if deleted_at is not None:
        grace_seconds = 30 if grace is None else grace
        meta["deletionTimestamp"] = ts(deleted_at + grace_seconds)
        meta["deletionGracePeriodSeconds"] = grace_seconds
    spec: Json = {
        "containers": containers if containers is not None else [container()],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
    }
    if init_containers:
        spec["initContainers"] = init_containers
    if node is not None:
        spec["nodeName"] = node
    status: Json = {"phase": phase, "qosClass": "BestEffort"}
    if conditions is not None:
        status["conditions"] = conditions
    if statuses is not None:
        status["containerStatuses"] = statuses
    if init_statuses is not None:
        status["initContainerStatuses"] = init_statuses
    if reason is not None:
        status["reason"] = reason
    if message is not None:
        status["message"] = message
    if node is not None:
        status["hostIP"] = "10.0.0.5"
        status["podIP"] = "10.244.1.7"
        status["startTime"] = ts(created + 1)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def running_conditions(scheduled: float = 1, ready: float = 12) -> list[Json]:
    """The conditions of a running, ready pod."""
    return [
        condition("PodReadyToStartContainers", "True", scheduled + 2),
        condition("Initialized", "True", scheduled + 1),
        condition("Ready", "True", ready),
        condition("ContainersReady", "True", ready),
        condition("PodScheduled", "True", scheduled),
    ]


# --- Events ------------------------------------------------------------------------------


def event(
    reason: str,
    message: str,
    *,
    first: float = 5,
    last: float | None = None,
    count: int = 1,
    container: str | None = None,
    init: bool = False,
    kind: str = "Normal",
    pod_name: str = POD,
    uid: str | None = UID,
    name: str | None = None,
    component: str = "kubelet",
) -> Json:
    """A core/v1 Event about a pod."""
    involved: Json = {
        "kind": "Pod",
        "namespace": NAMESPACE,
        "name": pod_name,
        "apiVersion": "v1",
        "resourceVersion": "99",
    }
    if uid is not None:
        involved["uid"] = uid
    if container is not None:
        involved["fieldPath"] = f"spec.{'initContainers' if init else 'containers'}{{{container}}}"
    event_name = name or f"{pod_name}.{abs(hash((reason, message, first, container))):016x}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name,
            "namespace": NAMESPACE,
            "uid": "ev-" + event_name,
            "creationTimestamp": ts(first),
        },
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "source": {"component": component, "host": NODE},
        "firstTimestamp": ts(first),
        "lastTimestamp": ts(first if last is None else last),
        "count": count,
        "type": kind,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": NODE,
    }


# --- EndpointSlices ----------------------------------------------------------------------


def endpoint_slice(
    service: str = "web",
    members: list[tuple[str, str | None, str, bool, bool, bool]] | None = None,
) -> Json:
    """An EndpointSlice; members are (pod name, uid, address, ready, serving, terminating)."""
    endpoints = [
        {
            "addresses": [address],
            "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            "nodeName": NODE,
            "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": name, "uid": uid},
        }
        for name, uid, address, ready, serving, terminating in (members or [])
    ]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-abcde",
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def timeline_keys(status: Json) -> list[str]:
    """The keys of a rendered status's timeline entries, in their order (kept apart from them)."""
    keys: list[str] = (status.get("tracking") or {}).get("timelineKeys") or []
    assert len(keys) == len(status.get("timeline") or []), "one key per entry"
    return keys


def keyed(status: Json) -> dict[str, Json]:
    """The timeline entries by key."""
    return dict(zip(timeline_keys(status), status.get("timeline") or [], strict=True))
