"""The load: plays pod lifecycles at a target rate of transitions per second.

The harness is the simulated kubelet for everything before the final removal (which kwok's stage
plays): it patches pods/status, posts the kubelet's Events and deletes pods. Every write is one
transition, paced by a ticker; each pod's steps run one at a time, in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from bench import lifecycle as lc
from bench.kubeapi import ApiError, Kube

MERGE = "application/merge-patch+json"
STARTUP_STEPS = ("schedule", "scheduled-event", "init-start", "init-done", "app-start", "ready")


@dataclasses.dataclass(frozen=True)
class Tick:
    """When a step is played: the moment, its timestamp, and a short random delay to the next."""

    moment: datetime
    when: str
    quick: float


Step = Callable[[lc.SimPod, Tick], Awaitable[float]]


@dataclasses.dataclass
class Counters:
    """What the player did."""

    transitions: int = 0
    errors: int = 0
    by_step: dict[str, int] = dataclasses.field(default_factory=dict)
    late: int = 0  # ticks that found the in-flight limit reached (the system could not keep up)


class Player:
    """Keeps `size` simulated pods alive across namespaces and nodes, and moves them along."""

    def __init__(
        self,
        kube: Kube,
        *,
        run_id: str,
        namespaces: list[str],
        nodes: list[str],
        seed: int = 7,
        log: Callable[[str], None] = print,
    ) -> None:
        self.kube = kube
        self.run_id = run_id
        self.namespaces = namespaces
        self.nodes = nodes
        self.rng = random.Random(seed)
        self.log = log
        self.pods: dict[tuple[str, str], lc.SimPod] = {}
        self.expects: list[lc.Expect] = []
        self.recording = False
        self.counters = Counters()
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._seq = itertools.count()
        self._names = itertools.count()
        self._ips = itertools.count(1)
        self._busy: set[tuple[str, str]] = set()
        self.target_size = 0
        self.mean_interval = 10.0
        self._steps: dict[str, Step] = {
            "create": self._create_step,
            "schedule": self._schedule,
            "scheduled-event": self._scheduled_event,
            "init-start": self._init_start,
            "init-done": self._init_done,
            "app-start": self._app_start,
            "ready": self._ready,
            "unready": self._unready,
            "readiness-failed": self._readiness_failed,
            "liveness-failed": self._liveness_failed,
            "liveness-kill": self._liveness_kill,
            "restart": self._restart,
            "touch": self._touch,
            "delete": self._delete,
            "killing": self._killing,
            "terminate": self._terminate,
        }

    # --- population ------------------------------------------------------------------------------

    def new_pod(self) -> lc.SimPod:
        """A new simulated pod (not created yet), spread over namespaces and nodes."""
        n = next(self._names)
        namespace = self.namespaces[n % len(self.namespaces)]
        app = f"svc-{n % 50:02d}"
        pod = lc.SimPod(
            namespace=namespace,
            name=f"{app}-{self.run_id}-{n:06d}",
            node=self.nodes[n % len(self.nodes)],
            app=app,
        )
        ip = next(self._ips)
        pod.exit_code = lc.pick(self.rng, lc.EXIT_MIX)
        pod.grace = 2 if pod.exit_code == 137 else 30
        pod.ip = f"10.{64 + ip // 65536 % 64}.{ip // 256 % 256}.{ip % 256}"
        self.pods[pod.key] = pod
        return pod

    def _push(self, pod: lc.SimPod, delay: float) -> None:
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), pod.key))

    async def populate(self, size: int, *, events_per_pod: int, concurrency: int = 48) -> None:
        """Create `size` pods straight to Running and ready, plus past Events (not timed)."""
        self.target_size = size
        for key in [key for key, pod in self.pods.items() if pod.gone]:
            del self.pods[key]  # removed by kwok long ago
        live = sum(1 for pod in self.pods.values() if not pod.gone)
        pods = [self.new_pod() for _ in range(size - live)]
        gate = asyncio.Semaphore(concurrency)
        done = 0
        started = time.monotonic()
        every = max(500, len(pods) // 20)  # progress lines: about 20 at most

        async def one(pod: lc.SimPod) -> None:
            nonlocal done
            async with gate:
                await self._create_running(pod, events_per_pod)
                done += 1
                if done % every == 0:
                    self.log(
                        f"  {done}/{len(pods)} pods running ({time.monotonic() - started:.0f} s)"
                    )

        await asyncio.gather(*(one(pod) for pod in pods))

    async def _create_running(self, pod: lc.SimPod, events_per_pod: int) -> None:
        """Create a pod that has been Running and ready for a while, with its past Events."""
        await self._create(pod)
        moment = lc.now()
        when = lc.stamp(moment - timedelta(seconds=self.rng.uniform(60, 3600)))
        _set_running(pod, when)
        await self._patch_status(pod)
        for i in range(events_per_pod):
            reason, message = (
                ("Pulled", f'Container image "{lc.APP_IMAGE}" already present')
                if i % 2 == 0
                else ("Started", "Started container app")
            )
            await self._post_event(
                pod, lc.event(pod, f"{pod.name}.seed{i}", reason=reason, message=message)
            )
        pod.next_step = "steady"
        self._push(pod, self.rng.uniform(0, self.mean_interval))

    # --- playing --------------------------------------------------------------------------------

    async def play(self, rate: float, seconds: float, *, max_in_flight: int = 96) -> float:
        """Play `rate` transitions a second for `seconds`; returns the rate achieved."""
        self.mean_interval = max(0.5, self.target_size / rate)
        interval = 1.0 / rate
        tasks: set[asyncio.Task[None]] = set()
        before = self.counters.transitions
        start = time.monotonic()
        next_at = start
        end = start + seconds
        while True:
            now = time.monotonic()
            if now >= end:
                break
            while next_at <= now:
                next_at += interval
                if len(tasks) >= max_in_flight:
                    self.counters.late += 1
                    continue
                key = self._next_pod(now)
                if key is None:
                    continue
                task = asyncio.create_task(self._advance(key))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, min(next_at, end) - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks, timeout=60)
        return (self.counters.transitions - before) / max(1e-9, time.monotonic() - start)

    async def play_recorded(self, rate: float, seconds: float) -> float:
        """`play`, keeping what each write should add to its pod's record (`expects`)."""
        self.recording = True
        achieved = await self.play(rate, seconds)
        self.recording = False
        return achieved

    def _next_pod(self, now: float) -> tuple[str, str] | None:
        """The pod due soonest (early if need be, to hold the rate), skipping hard waits."""
        waiting: list[tuple[float, int, tuple[str, str]]] = []
        chosen = None
        while self._heap:
            item = heapq.heappop(self._heap)
            pod = self.pods.get(item[2])
            if pod is None or pod.gone:
                continue
            if pod.not_before > now:
                waiting.append(item)
                continue
            chosen = item[2]
            break
        for item in waiting:
            heapq.heappush(self._heap, item)
        if chosen is not None:
            self._busy.add(chosen)
        return chosen

    async def _advance(self, key: tuple[str, str]) -> None:
        pod = self.pods[key]
        step = pod.next_step
        if step == "steady":
            step = lc.pick(self.rng, lc.STEADY_MIX)
        try:
            delay = await self._step(pod, step)
            self.counters.transitions += 1
            self.counters.by_step[step] = self.counters.by_step.get(step, 0) + 1
        except (TimeoutError, ApiError, OSError) as error:
            self.counters.errors += 1
            if self.counters.errors <= 5:
                self.log(f"  write failed ({step} {pod.name}): {error}")
            delay = 1.0
            if isinstance(error, ApiError) and error.status == 404:
                pod.gone = True
        self._busy.discard(key)
        if not pod.gone:
            self._push(pod, delay)

    def _expect(
        self, pod: lc.SimPod, ftype: str, container: str | None, step: str, rv: str | None
    ) -> None:
        if self.recording:
            self.expects.append(
                lc.Expect(pod.namespace, pod.name, ftype, container, step, time.monotonic(), rv)
            )

    async def _write_status(
        self, pod: lc.SimPod, fact: str, container: str | None, step: str, *, then: str
    ) -> None:
        """Patch the pod's status, expect `fact` of the write; the pod's next step is `then`."""
        rv = await self._patch_status(pod)
        self._expect(pod, fact, container, step, rv)
        pod.next_step = then

    def _steady_delay(self) -> float:
        return self.rng.expovariate(1.0 / self.mean_interval)

    async def _step(self, pod: lc.SimPod, step: str) -> float:
        """Make the writes of one step; returns how long until the pod's next step."""
        moment = lc.now()
        tick = Tick(moment, lc.stamp(moment), self.rng.uniform(0.2, 1.0))
        play = self._steps.get(step)
        if play is None:
            raise ValueError(f"unknown step {step}")
        return await play(pod, tick)

    # --- the steps (lifecycle.py's diagram): each makes its write and names the pod's next step ---

    async def _create_step(self, pod: lc.SimPod, tick: Tick) -> float:
        rv = await self._create(pod)
        self._expect(pod, "Created", None, "create", rv)
        pod.next_step = "schedule"
        return tick.quick

    async def _schedule(self, pod: lc.SimPod, tick: Tick) -> float:
        pod.set_condition("PodScheduled", True, tick.when)
        await self._write_status(pod, "Scheduled", None, "schedule", then="scheduled-event")
        return 0.05

    async def _scheduled_event(self, pod: lc.SimPod, tick: Tick) -> float:
        body = lc.event(
            pod,
            f"{pod.name}.scheduled",
            reason="Scheduled",
            message=f"Successfully assigned {pod.namespace}/{pod.name} to {pod.node}",
            container=None,
            component="default-scheduler",
        )
        await self._post_event(pod, body)
        pod.next_step = "init-start"  # the same fact as the condition: nothing new expected
        return tick.quick

    async def _init_start(self, pod: lc.SimPod, tick: Tick) -> float:
        when = tick.when
        pod.pod_ip = pod.ip
        pod.set_condition("PodReadyToStartContainers", True, when)
        pod.set_condition("Initialized", False, when)
        pod.set_condition("ContainersReady", False, when)
        pod.set_condition("Ready", False, when)
        pod.init_status = pod.container_status(
            lc.INIT, lc.INIT_IMAGE, lc.started_at(tick.moment), ready=False, started=True
        )
        pod.app_status = pod.container_status(
            lc.APP,
            lc.APP_IMAGE,
            {"waiting": {"reason": "PodInitializing"}},
            ready=False,
            started=False,
        )
        await self._write_status(pod, "ContainerStarted", lc.INIT, "init-start", then="init-done")
        return tick.quick

    async def _init_done(self, pod: lc.SimPod, tick: Tick) -> float:
        assert pod.init_status is not None
        begun = pod.init_status["state"]["running"]["startedAt"]
        pod.init_status["state"] = _terminated(0, "Completed", begun, tick.when)
        pod.init_status["started"] = False
        pod.init_status["ready"] = True
        pod.set_condition("Initialized", True, tick.when)
        await self._write_status(pod, "ContainerTerminated", lc.INIT, "init-done", then="app-start")
        return tick.quick

    async def _app_start(self, pod: lc.SimPod, tick: Tick) -> float:
        assert pod.app_status is not None
        pod.app_status["state"] = lc.started_at(tick.moment)
        pod.app_status["started"] = True
        pod.phase = "Running"
        await self._write_status(pod, "ContainerStarted", lc.APP, "app-start", then="ready")
        return tick.quick

    async def _ready(self, pod: lc.SimPod, tick: Tick) -> float:
        _set_ready(pod, True, tick.when)
        await self._write_status(pod, "ContainerReady", lc.APP, "ready", then="steady")
        return self._steady_delay()

    async def _unready(self, pod: lc.SimPod, tick: Tick) -> float:
        _set_ready(pod, False, tick.when)
        await self._write_status(pod, "ContainerNotReady", lc.APP, "unready", then="ready")
        return self.rng.uniform(1.0, 5.0)

    async def _readiness_failed(self, pod: lc.SimPod, tick: Tick) -> float:
        await self._probe_event(pod, "Readiness", tick.moment)
        self._expect(pod, "ProbeFailed", lc.APP, "readiness-failed", None)
        return self._steady_delay()

    async def _liveness_failed(self, pod: lc.SimPod, tick: Tick) -> float:
        await self._probe_event(pod, "Liveness", tick.moment)
        self._expect(pod, "ProbeFailed", lc.APP, "liveness-failed", None)
        pod.next_step = "liveness-kill"
        return tick.quick

    async def _liveness_kill(self, pod: lc.SimPod, tick: Tick) -> float:
        body = lc.event(
            pod,
            f"{pod.name}.kill{pod.restarts}",
            reason="Killing",
            message="Container app failed liveness probe, will be restarted",
        )
        await self._post_event(pod, body)
        self._expect(pod, "LivenessRestart", lc.APP, "liveness-kill", None)
        pod.next_step = "restart"
        return tick.quick

    async def _restart(self, pod: lc.SimPod, tick: Tick) -> float:
        app = pod.app_status
        assert app is not None
        begun = _running_since(app, tick.when)
        pod.restarts += 1
        app["lastState"] = _terminated(
            137, "Error", begun, tick.when, containerID=app.get("containerID")
        )
        app["restartCount"] = pod.restarts
        app["state"] = lc.started_at(tick.moment)
        app["containerID"] = f"containerd://{pod.uid}{pod.restarts}"
        _set_ready(pod, False, tick.when)
        await self._write_status(pod, "ContainerRestarted", lc.APP, "restart", then="ready")
        return tick.quick

    async def _touch(self, pod: lc.SimPod, tick: Tick) -> float:
        pod.touches += 1
        await self.kube.request(
            "PATCH",
            f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}",
            body={"metadata": {"annotations": {"bench.podtrail.io/touched": str(pod.touches)}}},
            content_type=MERGE,
        )  # an annotation adds no fact: no record write expected
        return self._steady_delay()

    async def _delete(self, pod: lc.SimPod, tick: Tick) -> float:
        await self.kube.request(
            "DELETE",
            f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}",
            body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": pod.grace},
        )
        pod.deletion_deadline = tick.moment + timedelta(seconds=pod.grace)
        self._expect(pod, "DeletionRequested", None, "delete", None)
        pod.next_step = "killing"
        return 0.1

    async def _killing(self, pod: lc.SimPod, tick: Tick) -> float:
        body = lc.event(pod, f"{pod.name}.stop", reason="Killing", message="Stopping container app")
        await self._post_event(pod, body)
        self._expect(pod, "KillingStarted", lc.APP, "killing", None)
        pod.next_step = "terminate"
        if pod.exit_code == 137:
            assert pod.deletion_deadline is not None
            pod.not_before = time.monotonic() + max(
                0.0, (pod.deletion_deadline - lc.now()).total_seconds() + 0.05
            )
            return 0.0
        return tick.quick

    async def _terminate(self, pod: lc.SimPod, tick: Tick) -> float:
        app = pod.app_status
        assert app is not None
        code = pod.exit_code
        finished = pod.deletion_deadline if code == 137 else tick.moment
        assert finished is not None
        app["state"] = _terminated(
            code,
            "Completed" if code == 0 else "Error",
            _running_since(app, tick.when),
            lc.stamp(max(finished, tick.moment - timedelta(seconds=1))),
            containerID=app.get("containerID"),
        )
        app["ready"] = False
        app["started"] = False
        for ctype in ("Ready", "ContainersReady", "PodReadyToStartContainers"):
            pod.set_condition(ctype, False, tick.when)
        pod.phase = "Succeeded" if code == 0 else "Failed"
        rv = await self._patch_status(pod)
        verdict = "KilledAfterGrace" if code == 137 else "ExitedOnTerm"
        self._expect(pod, verdict, lc.APP, "terminate", rv)
        # kwok removes the pod now; the harness times that from its own pod watch.
        if self.recording:
            self.expects.append(
                lc.Expect(pod.namespace, pod.name, "PodDeleted", None, "removed", None)
            )
        pod.gone = True
        self._push(self.new_pod(), 0.0)  # its replacement
        return 0.0

    async def worst_case(self, restarts: int, probe_failures: int) -> lc.SimPod:
        """Take one pod through many restarts and failed probes: the largest record.

        Its timeline reaches the operator's cap; the record's size then stops growing.
        """
        pod = next((p for p in self.pods.values() if not p.gone and p.uid and p.ready), None)
        if pod is None:
            raise LookupError("no running, ready pod left")
        self.pods.pop(pod.key)  # out of the regular load from now on
        for probe in ("Readiness", "Liveness"):
            await self._probe_event(pod, probe, lc.now())
            name, _, first = pod.probe_events[probe]
            await self.kube.request(
                "PATCH",
                f"/api/v1/namespaces/{pod.namespace}/events/{name}",
                body={"count": probe_failures // 2, "lastTimestamp": lc.stamp(lc.now())},
                content_type=MERGE,
            )
            pod.probe_events[probe] = (name, probe_failures // 2, first)
        for _ in range(restarts):
            await self._step(pod, "restart")
            await self._step(pod, "ready")
        return pod

    # --- writes ---------------------------------------------------------------------------------

    async def _create(self, pod: lc.SimPod) -> str | None:
        result = await self.kube.request(
            "POST", f"/api/v1/namespaces/{pod.namespace}/pods", body=pod.manifest(self.run_id)
        )
        meta = result.get("metadata") or {}
        pod.uid = meta.get("uid")
        return meta.get("resourceVersion")

    async def _patch_status(self, pod: lc.SimPod) -> str | None:
        result = await self.kube.request(
            "PATCH",
            f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/status",
            body={"status": pod.status()},
            content_type=MERGE,
        )
        return (result.get("metadata") or {}).get("resourceVersion")

    async def _post_event(self, pod: lc.SimPod, body: dict[str, Any]) -> None:
        await self.kube.request("POST", f"/api/v1/namespaces/{pod.namespace}/events", body=body)

    async def _probe_event(self, pod: lc.SimPod, probe: str, moment: Any) -> None:
        """The kubelet's Unhealthy Event for a probe: created once, then its count bumped."""
        message = f"{probe} probe failed: HTTP probe failed with statuscode: 503"
        known = pod.probe_events.get(probe)
        if known is None:
            name = f"{pod.name}.{probe.lower()}"
            body = lc.event(pod, name, reason="Unhealthy", message=message, kind="Warning")
            await self._post_event(pod, body)
            pod.probe_events[probe] = (name, 1, body["firstTimestamp"])
            return
        name, count, first = known
        count += 1
        await self.kube.request(
            "PATCH",
            f"/api/v1/namespaces/{pod.namespace}/events/{name}",
            body={"count": count, "lastTimestamp": lc.stamp(moment)},
            content_type=MERGE,
        )
        pod.probe_events[probe] = (name, count, first)


def _terminated(code: int, reason: str, begun: str, finished: str, **more: Any) -> dict[str, Any]:
    """A container state that ended with `code` (`more`: e.g. its containerID)."""
    return {
        "terminated": {
            "exitCode": code,
            "reason": reason,
            "startedAt": begun,
            "finishedAt": finished,
            **more,
        }
    }


def _running_since(container: dict[str, Any], default: str) -> str:
    """When a running container started (`default` when it is not running)."""
    return str(container["state"].get("running", {}).get("startedAt", default))


def _set_ready(pod: lc.SimPod, ready: bool, when: str) -> None:
    """The app container's readiness, and the pod's two conditions that follow it."""
    assert pod.app_status is not None
    pod.app_status["ready"] = ready
    pod.ready = ready
    pod.set_condition("ContainersReady", ready, when)
    pod.set_condition("Ready", ready, when)


def _set_running(pod: lc.SimPod, when: str) -> None:
    """The status of a pod Running and ready since `when`, its init container done."""
    pod.pod_ip = pod.ip
    for ctype in ("PodScheduled", "PodReadyToStartContainers", "Initialized"):
        pod.set_condition(ctype, True, when)
    pod.init_status = pod.container_status(
        lc.INIT, lc.INIT_IMAGE, _terminated(0, "Completed", when, when), ready=True, started=False
    )
    pod.app_status = pod.container_status(
        lc.APP, lc.APP_IMAGE, {"running": {"startedAt": when}}, ready=True, started=True
    )
    _set_ready(pod, True, when)
    pod.phase = "Running"
