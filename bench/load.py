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
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench import lifecycle as lc
from bench.kubeapi import ApiError, Kube

MERGE = "application/merge-patch+json"
STARTUP_STEPS = ("schedule", "scheduled-event", "init-start", "init-done", "app-start", "ready")


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

        async def one(pod: lc.SimPod) -> None:
            nonlocal done
            async with gate:
                await self._create(pod)
                moment = lc.now()
                when = lc.stamp(moment - timedelta(seconds=self.rng.uniform(60, 3600)))
                pod.pod_ip = pod.ip
                for ctype in ("PodScheduled", "PodReadyToStartContainers", "Initialized"):
                    pod.set_condition(ctype, True, when)
                pod.init_status = pod.container_status(
                    lc.INIT,
                    "registry.example/bench/init:1.0",
                    {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": when,
                            "finishedAt": when,
                        }
                    },
                    ready=True,
                    started=False,
                )
                pod.app_status = pod.container_status(
                    lc.APP,
                    "registry.example/bench/app:1.0",
                    {"running": {"startedAt": when}},
                    ready=True,
                    started=True,
                )
                pod.set_condition("ContainersReady", True, when)
                pod.set_condition("Ready", True, when)
                pod.phase = "Running"
                pod.ready = True
                await self._patch_status(pod)
                for i in range(events_per_pod):
                    reason, message = (
                        (
                            "Pulled",
                            'Container image "registry.example/bench/app:1.0" already present',
                        )
                        if i % 2 == 0
                        else ("Started", "Started container app")
                    )
                    body = lc.event(pod, f"{pod.name}.seed{i}", reason=reason, message=message)
                    await self.kube.request(
                        "POST", f"/api/v1/namespaces/{pod.namespace}/events", body=body
                    )
                pod.next_step = "steady"
                self._push(pod, self.rng.uniform(0, self.mean_interval))
                done += 1
                if done % 500 == 0:
                    self.log(
                        f"  {done}/{len(pods)} pods running ({time.monotonic() - started:.0f} s)"
                    )

        await asyncio.gather(*(one(pod) for pod in pods))

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

    def _steady_delay(self) -> float:
        return self.rng.expovariate(1.0 / self.mean_interval)

    async def _step(self, pod: lc.SimPod, step: str) -> float:  # noqa: C901 - one branch a step
        """Make the writes of one step; returns how long until the pod's next step."""
        moment = lc.now()
        when = lc.stamp(moment)
        quick = self.rng.uniform(0.2, 1.0)
        if step == "create":
            rv = await self._create(pod)
            self._expect(pod, "Created", None, step, rv)
            pod.next_step = "schedule"
            return quick
        if step == "schedule":
            pod.set_condition("PodScheduled", True, when)
            rv = await self._patch_status(pod)
            self._expect(pod, "Scheduled", None, step, rv)
            pod.next_step = "scheduled-event"
            return 0.05
        if step == "scheduled-event":
            body = lc.event(
                pod,
                f"{pod.name}.scheduled",
                reason="Scheduled",
                message=f"Successfully assigned {pod.namespace}/{pod.name} to {pod.node}",
                container=None,
                component="default-scheduler",
            )
            await self.kube.request("POST", f"/api/v1/namespaces/{pod.namespace}/events", body=body)
            pod.next_step = "init-start"  # the same fact as the condition: nothing new expected
            return quick
        if step == "init-start":
            pod.pod_ip = pod.ip
            pod.set_condition("PodReadyToStartContainers", True, when)
            pod.set_condition("Initialized", False, when)
            pod.set_condition("ContainersReady", False, when)
            pod.set_condition("Ready", False, when)
            pod.init_status = pod.container_status(
                lc.INIT,
                "registry.example/bench/init:1.0",
                lc.started_at(moment),
                ready=False,
                started=True,
            )
            pod.app_status = pod.container_status(
                lc.APP,
                "registry.example/bench/app:1.0",
                {"waiting": {"reason": "PodInitializing"}},
                ready=False,
                started=False,
            )
            rv = await self._patch_status(pod)
            self._expect(pod, "ContainerStarted", lc.INIT, step, rv)
            pod.next_step = "init-done"
            return quick
        if step == "init-done":
            assert pod.init_status is not None
            begun = pod.init_status["state"]["running"]["startedAt"]
            pod.init_status["state"] = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": begun,
                    "finishedAt": when,
                }
            }
            pod.init_status["started"] = False
            pod.init_status["ready"] = True
            pod.set_condition("Initialized", True, when)
            rv = await self._patch_status(pod)
            self._expect(pod, "ContainerTerminated", lc.INIT, step, rv)
            pod.next_step = "app-start"
            return quick
        if step == "app-start":
            assert pod.app_status is not None
            pod.app_status["state"] = lc.started_at(moment)
            pod.app_status["started"] = True
            pod.phase = "Running"
            rv = await self._patch_status(pod)
            self._expect(pod, "ContainerStarted", lc.APP, step, rv)
            pod.next_step = "ready"
            return quick
        if step == "ready":
            assert pod.app_status is not None
            pod.app_status["ready"] = True
            pod.ready = True
            pod.set_condition("ContainersReady", True, when)
            pod.set_condition("Ready", True, when)
            rv = await self._patch_status(pod)
            self._expect(pod, "ContainerReady", lc.APP, step, rv)
            pod.next_step = "steady"
            return self._steady_delay()
        if step == "unready":
            assert pod.app_status is not None
            pod.app_status["ready"] = False
            pod.ready = False
            pod.set_condition("ContainersReady", False, when)
            pod.set_condition("Ready", False, when)
            rv = await self._patch_status(pod)
            self._expect(pod, "ContainerNotReady", lc.APP, step, rv)
            pod.next_step = "ready"
            return self.rng.uniform(1.0, 5.0)
        if step in ("readiness-failed", "liveness-failed"):
            probe = "Readiness" if step == "readiness-failed" else "Liveness"
            await self._probe_event(pod, probe, moment)
            self._expect(pod, "ProbeFailed", lc.APP, step, None)
            if step == "liveness-failed":
                pod.next_step = "liveness-kill"
                return quick
            return self._steady_delay()
        if step == "liveness-kill":
            body = lc.event(
                pod,
                f"{pod.name}.kill{pod.restarts}",
                reason="Killing",
                message="Container app failed liveness probe, will be restarted",
            )
            await self.kube.request("POST", f"/api/v1/namespaces/{pod.namespace}/events", body=body)
            self._expect(pod, "LivenessRestart", lc.APP, step, None)
            pod.next_step = "restart"
            return quick
        if step == "restart":
            assert pod.app_status is not None
            begun = pod.app_status["state"].get("running", {}).get("startedAt", when)
            pod.restarts += 1
            pod.app_status["lastState"] = {
                "terminated": {
                    "exitCode": 137,
                    "reason": "Error",
                    "startedAt": begun,
                    "finishedAt": when,
                    "containerID": pod.app_status.get("containerID"),
                }
            }
            pod.app_status["restartCount"] = pod.restarts
            pod.app_status["state"] = lc.started_at(moment)
            pod.app_status["containerID"] = f"containerd://{pod.uid}{pod.restarts}"
            pod.app_status["ready"] = False
            pod.ready = False
            pod.set_condition("ContainersReady", False, when)
            pod.set_condition("Ready", False, when)
            rv = await self._patch_status(pod)
            self._expect(pod, "ContainerRestarted", lc.APP, step, rv)
            pod.next_step = "ready"
            return quick
        if step == "touch":
            pod.touches += 1
            result = await self.kube.request(
                "PATCH",
                f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}",
                body={"metadata": {"annotations": {"bench.podtrail.io/touched": str(pod.touches)}}},
                content_type=MERGE,
            )
            del result  # an annotation adds no fact: no record write expected
            return self._steady_delay()
        if step == "delete":
            await self.kube.request(
                "DELETE",
                f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}",
                body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": pod.grace},
            )
            pod.deletion_deadline = moment + timedelta(seconds=pod.grace)
            self._expect(pod, "DeletionRequested", None, step, None)
            pod.next_step = "killing"
            return 0.1
        if step == "killing":
            body = lc.event(
                pod, f"{pod.name}.stop", reason="Killing", message="Stopping container app"
            )
            await self.kube.request("POST", f"/api/v1/namespaces/{pod.namespace}/events", body=body)
            self._expect(pod, "KillingStarted", lc.APP, step, None)
            pod.next_step = "terminate"
            if pod.exit_code == 137:
                assert pod.deletion_deadline is not None
                pod.not_before = time.monotonic() + max(
                    0.0, (pod.deletion_deadline - lc.now()).total_seconds() + 0.05
                )
                return 0.0
            return quick
        if step == "terminate":
            assert pod.app_status is not None
            begun = pod.app_status["state"].get("running", {}).get("startedAt", when)
            code = pod.exit_code
            finished = pod.deletion_deadline if code == 137 else moment
            assert finished is not None
            pod.app_status["state"] = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": begun,
                    "finishedAt": lc.stamp(max(finished, moment - timedelta(seconds=1))),
                    "containerID": pod.app_status.get("containerID"),
                }
            }
            pod.app_status["ready"] = False
            pod.app_status["started"] = False
            for ctype in ("Ready", "ContainersReady", "PodReadyToStartContainers"):
                pod.set_condition(ctype, False, when)
            pod.phase = "Succeeded" if code == 0 else "Failed"
            rv = await self._patch_status(pod)
            verdict = "KilledAfterGrace" if code == 137 else "ExitedOnTerm"
            self._expect(pod, verdict, lc.APP, step, rv)
            # kwok removes the pod now; the harness times that from its own pod watch.
            if self.recording:
                self.expects.append(
                    lc.Expect(pod.namespace, pod.name, "PodDeleted", None, "removed", None)
                )
            pod.gone = True
            replacement = self.new_pod()
            self._push(replacement, 0.0)
            return 0.0
        raise ValueError(f"unknown step {step}")

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

    async def _probe_event(self, pod: lc.SimPod, probe: str, moment: Any) -> None:
        """The kubelet's Unhealthy Event for a probe: created once, then its count bumped."""
        message = f"{probe} probe failed: HTTP probe failed with statuscode: 503"
        known = pod.probe_events.get(probe)
        path = f"/api/v1/namespaces/{pod.namespace}/events"
        if known is None:
            name = f"{pod.name}.{probe.lower()}"
            body = lc.event(pod, name, reason="Unhealthy", message=message, kind="Warning")
            await self.kube.request("POST", path, body=body)
            pod.probe_events[probe] = (name, 1, body["firstTimestamp"])
            return
        name, count, first = known
        count += 1
        await self.kube.request(
            "PATCH",
            f"{path}/{name}",
            body={"count": count, "lastTimestamp": lc.stamp(moment)},
            content_type=MERGE,
        )
        pod.probe_events[probe] = (name, count, first)
