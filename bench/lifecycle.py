"""Simulated pods: their manifests, and each lifecycle step as the writes a kubelet would make.

A pod here is bound at creation to a simulated (kwok) node. Each step below is one transition:
one write to the API (a pods/status patch, an Event created or bumped, a delete) and the
timeline entry podtrail should add for it (the expectation the harness times).

    create -> schedule -> scheduled-event -> init-start -> init-done -> app-start -> ready
    ready -> readiness-failed | unready (-> ready) | liveness-failed -> liveness-kill -> restart
          | touch (annotation only: no fact) | delete -> killing -> terminate (exit 0/143/137)
    terminated -> removed by kwok's stage (the kubelet's final delete)
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import Any

SIM_KEY = "bench.podtrail.io/simulated"
RUN_LABEL = "bench.podtrail.io/run"
APP = "app"
INIT = "init-config"
APP_IMAGE = "registry.example/bench/app:1.0"
INIT_IMAGE = "registry.example/bench/init:1.0"

# Steps a Running, ready pod takes next, with their weights.
STEADY_MIX: tuple[tuple[str, int], ...] = (
    ("readiness-failed", 30),
    ("unready", 12),
    ("liveness-failed", 12),
    ("touch", 8),
    ("delete", 14),
)
EXIT_MIX: tuple[tuple[int, int], ...] = ((0, 4), (143, 4), (137, 2))


def stamp(moment: datetime) -> str:
    """RFC 3339 at second precision, as the kubelet writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclasses.dataclass
class Expect:
    """A timeline entry podtrail should add because of one write of the harness."""

    namespace: str
    pod: str
    type: str
    container: str | None
    step: str
    start: float | None  # monotonic time of the write's acknowledgement (None: set later)
    rv: str | None = None  # the pod's resourceVersion after the write (raw-watch lag)
    seen: float | None = None


@dataclasses.dataclass
class SimPod:
    """What the harness knows of one simulated pod (it is the pod's only writer)."""

    namespace: str
    name: str
    node: str
    app: str
    uid: str | None = None
    next_step: str = "create"
    not_before: float = 0.0
    phase: str = "Pending"
    conditions: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    init_status: dict[str, Any] | None = None
    app_status: dict[str, Any] | None = None
    restarts: int = 0
    ready: bool = False
    grace: int = 30
    exit_code: int = 0
    deletion_deadline: datetime | None = None
    probe_events: dict[str, tuple[str, int, str]] = dataclasses.field(default_factory=dict)
    touches: int = 0
    pod_ip: str = ""  # set once the sandbox is up
    ip: str = ""  # the address the sandbox will get
    gone: bool = False

    @property
    def key(self) -> tuple[str, str]:
        """Namespace and name."""
        return (self.namespace, self.name)

    # --- manifests -----------------------------------------------------------------------------

    def manifest(self, run_id: str) -> dict[str, Any]:
        """The pod as a Deployment's ReplicaSet would create it, about 5 KB of JSON in the end."""
        probe = {
            "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
            "successThreshold": 1,
        }
        env = [{"name": f"SETTING_{i}", "value": f"value-{i}-{self.app}"} for i in range(8)]
        resources = {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {
                    "app": self.app,
                    "tier": "backend",
                    "pod-template-hash": "5d8f7c9b6",
                    RUN_LABEL: run_id,
                },
                "annotations": {"bench.podtrail.io/purpose": "simulated load for podtrail"},
            },
            "spec": {
                "nodeName": self.node,
                "nodeSelector": {SIM_KEY: "true"},
                "tolerations": [
                    {"key": SIM_KEY, "operator": "Exists", "effect": "NoSchedule"},
                    {"key": SIM_KEY, "operator": "Exists", "effect": "NoExecute"},
                ],
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": self.grace,
                "enableServiceLinks": False,
                "initContainers": [
                    {
                        "name": INIT,
                        "image": INIT_IMAGE,
                        "command": ["/bin/prepare", "--config", "/etc/app"],
                        "resources": resources,
                    }
                ],
                "containers": [
                    {
                        "name": APP,
                        "image": APP_IMAGE,
                        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                        "env": env,
                        "resources": resources,
                        "readinessProbe": probe,
                        "livenessProbe": probe,
                    }
                ],
            },
        }

    def status(self) -> dict[str, Any]:
        """The whole status as it stands (sent as a merge patch: lists are replaced whole)."""
        status: dict[str, Any] = {
            "phase": self.phase,
            "conditions": [
                {"type": t, "status": s, "lastTransitionTime": when, "lastProbeTime": None}
                for t, (s, when) in self.conditions.items()
            ],
            "qosClass": "Burstable",
        }
        if self.pod_ip:
            status["hostIP"] = "10.250.0.1"
            status["hostIPs"] = [{"ip": "10.250.0.1"}]
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
            status["startTime"] = self.conditions.get("PodScheduled", ("", ""))[1]
        if self.init_status is not None:
            status["initContainerStatuses"] = [self.init_status]
        if self.app_status is not None:
            status["containerStatuses"] = [self.app_status]
        return status

    def set_condition(self, ctype: str, value: bool, when: str) -> None:
        """Set a condition, moving its transition time only when its status changes."""
        text = "True" if value else "False"
        old = self.conditions.get(ctype)
        if old is None or old[0] != text:
            self.conditions[ctype] = (text, when)

    def container_status(
        self, name: str, image: str, state: dict[str, Any], *, ready: bool, started: bool | None
    ) -> dict[str, Any]:
        """A container status as the kubelet reports it."""
        status: dict[str, Any] = {
            "name": name,
            "image": image,
            "imageID": f"{image}@sha256:{'ab' * 32}",
            "state": state,
            "lastState": {},
            "ready": ready,
            "restartCount": 0,
        }
        if started is not None:
            status["started"] = started
            status["containerID"] = f"containerd://{self.uid or ''}{name}"
        return status


def pick(rng: random.Random, mix: tuple[tuple[Any, int], ...]) -> Any:
    """A weighted choice."""
    total = sum(weight for _, weight in mix)
    roll = rng.uniform(0, total)
    for value, weight in mix:
        roll -= weight
        if roll <= 0:
            return value
    return mix[-1][0]


def event(
    pod: SimPod,
    name: str,
    *,
    reason: str,
    message: str,
    kind: str = "Normal",
    container: str | None = APP,
    component: str = "kubelet",
    when: datetime | None = None,
) -> dict[str, Any]:
    """A core/v1 Event about the pod, as the kubelet (or the scheduler) posts it."""
    at = stamp(when or now())
    involved: dict[str, Any] = {
        "kind": "Pod",
        "apiVersion": "v1",
        "namespace": pod.namespace,
        "name": pod.name,
        "uid": pod.uid,
    }
    if container is not None:
        involved["fieldPath"] = f"spec.containers{{{container}}}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": pod.namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": component, "host": pod.node if component == "kubelet" else None},
        "reportingComponent": component,
        "reportingInstance": pod.node if component == "kubelet" else "",
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }


def started_at(moment: datetime) -> dict[str, Any]:
    """A running state that began at `moment`."""
    return {"running": {"startedAt": stamp(moment)}}


def deadline_reached(pod: SimPod, moment: datetime) -> bool:
    """Whether the grace period of the pod's deletion has run out."""
    return pod.deletion_deadline is None or moment >= pod.deletion_deadline - timedelta(
        milliseconds=200
    )
