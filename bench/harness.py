"""One benchmark run: sizes x repeats x rates, every consumer measured on the same load.

For each size: the pods are created (and kept between repeats). For each repeat: records are
removed, the three consumers start together (operator, raw watch, kube-state-metrics) and their
start is measured; then one measured window per rate; then the operator's restart catch-up
(stopped, the load goes on without it, started again); then they stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench import apimetrics, controlplane, deployment, observe, procs, setup
from bench.kubeapi import Kube, wait_for_apiserver
from bench.lifecycle import SIM_KEY, Expect
from bench.load import Player

REPO = Path(__file__).resolve().parent.parent
IDLE_SECONDS = 10.0  # the sample of the API server's CPU without load, once a repeat


@dataclasses.dataclass
class Options:
    """What to run."""

    sizes: list[int]
    rates: list[float]
    seconds: float
    repeats: int
    mode: str
    kubeconfig: str
    kubectl: str
    out: Path
    coalesce: float = 1.0
    events_per_pod: int = 2
    namespaces: int = 4
    nodes: int = 10
    catchup_seconds: float = 10.0
    profile: bool = False
    keep: bool = False
    operator_args: list[str] = dataclasses.field(default_factory=list)
    variant: str = ""
    worst_restarts: int = 0


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    info["load_average"] = os.getloadavg()
    git = ["git", "-C", str(REPO)]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["commit"] = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--", "operator"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
        info["operator_uncommitted_changes"] = len([line for line in changed if line.strip()])
    return info


def build_tools() -> dict[str, str]:
    """Kwok and kube-state-metrics from the binary cache (built on first use)."""
    paths = {}
    for tool in ("kwok", "kube-state-metrics"):
        proc = subprocess.run(
            ["bash", str(REPO / "bench" / "tools.sh"), tool],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        paths[tool] = proc.stdout.strip().splitlines()[-1]
    return paths


async def scrape(url: str) -> str:
    """GET a Prometheus endpoint as text."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


def sum_metric(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus counter's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram_quantiles(before: str, after: str, name: str) -> dict[str, float | None]:
    """p50/p99 upper bounds of a Prometheus histogram's growth between two scrapes."""

    def buckets(text: str) -> dict[float, float]:
        found = {}
        for line in text.splitlines():
            if line.startswith(name + "_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                found[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
        return found

    b0, b1 = buckets(before), buckets(after)
    grown = sorted((le, b1[le] - b0.get(le, 0.0)) for le in b1)
    total = grown[-1][1] if grown else 0.0
    out: dict[str, float | None] = {"n": total}
    for q in (0.5, 0.99):
        out[f"p{int(q * 100)}"] = next((le for le, n in grown if total and n >= q * total), None)
    return out


class Bench:
    """The state of one benchmark run."""

    def __init__(self, options: Options, kube: Kube, tools: dict[str, str]) -> None:
        self.o = options
        self.kube = kube
        self.tools = tools
        self.run_id = secrets.token_hex(2)
        self.logs = options.out / f"logs-{self.run_id}"
        self.results: list[dict[str, Any]] = []
        self.starts: list[dict[str, Any]] = []
        self.catchups: list[dict[str, Any]] = []
        self.lag_series: dict[str, Any] = {}
        self.worst: dict[str, Any] | None = None
        self.worst_key: tuple[str, str] | None = None
        self.lease: asyncio.Task[None] | None = None
        self.kwok: procs.Consumer | None = None
        self.player: Player | None = None
        self.namespaces: list[str] = []
        self.deployment = deployment.read()  # the bounds the figures are set against
        self.idle_cores: dict[str, float | None] = {}  # API server's and etcd's, without load

    # --- consumers ------------------------------------------------------------------------------

    def operator(self, tag: str) -> procs.Consumer:
        """The operator as the benchmark runs it (JSON logs at warning, no health port)."""
        self.operator_port = procs.free_port()
        # A variant: the operator with changes applied at run time (bench/variants.py).
        module = (
            ["bench.variants", "--variant", self.o.variant, "--"]
            if self.o.variant
            else ["podtrail"]
        )
        return self._python(
            "operator",
            [
                *module,
                "--kubeconfig",
                self.o.kubeconfig,
                "--log-format",
                "json",
                "--log-level",
                "warning",
                "--health-port",
                "0",
                "--metrics-port",
                str(self.operator_port),
                "--coalesce-seconds",
                str(self.o.coalesce),
                *self.o.operator_args,
            ],
            f"operator-{tag}.log",
        )

    def raw_watch(self, tag: str) -> procs.Consumer:
        """The floor: bench.rawwatch in its own process."""
        self.raw_log = self.logs / f"rawwatch-{tag}.events"
        return self._python(
            "raw watch",
            ["bench.rawwatch", "--kubeconfig", self.o.kubeconfig, "--log", str(self.raw_log)],
            f"rawwatch-{tag}.log",
        )

    def _python(self, name: str, module: list[str], log_name: str) -> procs.Consumer:
        """`python -m <module...>` in the project's .venv, the repository on its path."""
        argv = [str(REPO / ".venv" / "bin" / "python"), "-m", *module]
        return procs.Consumer(name, argv, self.logs / log_name, env={"PYTHONPATH": str(REPO)})

    def ksm(self, tag: str) -> procs.Consumer:
        """kube-state-metrics watching pods only, on loopback ports."""
        self.ksm_port = procs.free_port()
        argv = [
            self.tools["kube-state-metrics"],
            "--kubeconfig",
            self.o.kubeconfig,
            "--resources=pods",
            "--host=127.0.0.1",
            f"--port={self.ksm_port}",
            "--telemetry-host=127.0.0.1",
            f"--telemetry-port={procs.free_port()}",
        ]
        return procs.Consumer("kube-state-metrics", argv, self.logs / f"ksm-{tag}.log")

    # --- the run ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Sizes, then repeats: pods created once per size, consumers started per repeat."""
        await setup.wait_for_other_runs(self.kube, log=log)
        self.lease = asyncio.create_task(setup.hold_lease(self.kube, self.run_id))
        await setup.teardown(self.kube, None, log=log)  # leftovers of an interrupted run
        await setup.apply_crd(self.o.kubectl, self.o.kubeconfig)
        log("CRD applied and established")
        self.logs.mkdir(parents=True, exist_ok=True)
        self.kwok = procs.Consumer(
            "kwok",
            [
                self.tools["kwok"],
                "--kubeconfig",
                self.o.kubeconfig,
                "--config",
                str(REPO / "bench" / "kwok-stages.yaml"),
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={SIM_KEY}=true",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{procs.free_port()}",
                "-v=WARN",
            ],
            self.logs / "kwok.log",
        )
        self.kwok.start()
        log(f"run {self.run_id}: kwok started (pid {self.kwok.pid}); logs in {self.logs}")
        nodes = await setup.create_nodes(self.kube, self.run_id, self.o.nodes, log=log)
        self.namespaces = await setup.create_namespaces(self.kube, self.run_id, self.o.namespaces)
        self.player = Player(
            self.kube, run_id=self.run_id, namespaces=self.namespaces, nodes=nodes, log=log
        )
        await self.baseline()
        for size in self.o.sizes:
            log(f"{size} pods: creating them (Running, ready, {self.o.events_per_pod} Events each)")
            began = time.monotonic()
            await self.player.populate(size, events_per_pod=self.o.events_per_pod)
            events = await self.count_events()
            log(
                f"{size} pods in place in {time.monotonic() - began:.0f} s; {events} Events present"
            )
            for repeat in range(1, self.o.repeats + 1):
                await self.repeat(size, repeat, events)

    async def baseline(self) -> None:
        """Start each consumer with none of the benchmark's pods: its fixed cost.

        Imports, connections and the cluster's own pods: taken off the per-pod start figures.
        """
        operator, raw, ksm = self.operator("empty"), self.raw_watch("empty"), self.ksm("empty")
        consumers = [operator, raw, ksm]
        self.base_cpu: dict[str, float] = {}
        for consumer in consumers:
            consumer.start()
        try:
            deadline = time.monotonic() + 120
            quiet = {consumer.name: _Quiet() for consumer in consumers}
            while time.monotonic() < deadline and min(q.count for q in quiet.values()) < 4:
                await asyncio.sleep(0.25)
                for consumer in consumers:
                    quiet[consumer.name].sample(consumer.cpu())
            self.base_cpu = {c.name: c.cpu() for c in consumers}
        finally:
            for consumer in consumers:
                await consumer.stop()
        log("empty start, CPU s: " + ", ".join(f"{n} {v:.2f}" for n, v in self.base_cpu.items()))

    async def count_events(self) -> int:
        """Events about pods in the whole cluster (what the operator lists)."""
        total = 0
        token = None
        while True:
            params = {"limit": "500", "fieldSelector": "involvedObject.kind=Pod"}
            if token:
                params["continue"] = token
            page = await self.kube.request("GET", "/api/v1/events", params=params)
            total += len(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return total

    async def repeat(self, size: int, repeat: int, events: int) -> None:
        """One repeat at one size: start, a window per rate, restart catch-up."""
        assert self.player is not None
        tag = f"{size}-{repeat}"
        log(f"{size} pods, repeat {repeat}: removing records, starting the consumers")
        began = time.monotonic()
        await setup.delete_records(self.kube, self.namespaces, expected=size, log=log)
        watch = observe.RecordWatch(self.kube, self.run_id)
        watch.start()
        await watch.ready.wait()
        log(f"records removed, harness watching records ({time.monotonic() - began:.0f} s)")
        operator, raw, ksm = self.operator(tag), self.raw_watch(tag), self.ksm(tag)
        consumers = [operator, raw, ksm]
        sampler = asyncio.create_task(procs.sample_forever(consumers))
        try:
            start = await self.measure_start(size, repeat, events, watch, operator, raw, ksm)
            self.starts.append(start)
            self.idle_cores = await self._control_plane_idle()
            steady_since = time.monotonic()
            for rate in self.o.rates:
                result = await self.window(size, rate, repeat, watch, operator, raw, ksm)
                result["steady_since"] = steady_since
                self.results.append(result)
            memory = {
                c.name: {
                    "steady_rss_mib": c.steady_rss(steady_since),
                    "peak_rss_mib": c.memory()[1] if c.alive() else None,
                }
                for c in consumers
            }
            start["memory"] = memory
            await self.check_ksm(size)
            if size == max(self.o.sizes) and repeat == self.o.repeats and self.o.worst_restarts:
                try:
                    self.worst = await self.worst_case()
                except LookupError as error:
                    log(f"worst-case record skipped: {error}")
            catchup = await self.catch_up(size, repeat, watch, operator)
            self.catchups.append(catchup)
        finally:
            sampler.cancel()
            for consumer in consumers:
                await consumer.stop()
            await watch.stop()
        self.save_partial()
        exits = {c.name: c.proc.returncode if c.proc else None for c in consumers}
        log(f"{size} pods, repeat {repeat}: consumers stopped {exits}")

    def synced(self, watch: observe.RecordWatch) -> tuple[int, int]:
        """Count (records current, live pods).

        A record is current when it follows its pod's instance, phase, restarts and readiness.
        """
        assert self.player is not None
        live = [p for p in self.player.pods.values() if not p.gone and p.uid]
        current = 0
        for pod in live:
            view = watch.views.get(pod.key)
            if (
                view is not None
                and view.uid == pod.uid
                and view.phase == pod.phase
                and (view.restarts or 0) == pod.restarts
                and (view.ready or 0) == (1 if pod.ready else 0)
            ):
                current += 1
        return current, len(live)

    async def measure_start(
        self,
        size: int,
        repeat: int,
        events: int,
        watch: observe.RecordWatch,
        operator: procs.Consumer,
        raw: procs.Consumer,
        ksm: procs.Consumer,
    ) -> dict[str, Any]:
        """Start all three; time each until it holds every pod (the operator: every record)."""
        done = await self._until_held(size, watch, operator, raw, ksm)
        missing = {"operator", "raw watch", "kube-state-metrics"} - set(done)
        if missing:
            current, live = self.synced(watch)
            log(f"start: {sorted(missing)} not in sync after the deadline ({current}/{live})")
        result: dict[str, Any] = {
            "size": size,
            "repeat": repeat,
            "events_present": events,
            "start": {
                name: {
                    "seconds": s,
                    "cpu_seconds": cpu,
                    "cpu_ms_per_pod": 1000 * max(0.0, cpu - self.base_cpu.get(name, 0.0)) / size,
                }
                for name, (s, cpu) in done.items()
            },
        }
        listed = observe.raw_watch_list_cost(self.raw_log)
        if listed is not None and "raw watch" in result["start"]:
            # The floor times its own list exactly: no need to subtract an empty start.
            result["start"]["raw watch"]["cpu_ms_per_pod"] = 1000 * listed[1] / max(1, listed[0])
        log(
            "start: "
            + ", ".join(
                f"{n} {s:.1f} s / {1000 * c / size:.2f} ms a pod" for n, (s, c) in done.items()
            )
        )
        await asyncio.sleep(2.0)
        return result

    async def _until_held(
        self,
        size: int,
        watch: observe.RecordWatch,
        operator: procs.Consumer,
        raw: procs.Consumer,
        ksm: procs.Consumer,
    ) -> dict[str, tuple[float, float]]:
        """Start the three; (seconds, CPU seconds) of each until it held every pod."""
        for consumer in (operator, raw, ksm):
            consumer.start()
        t0 = time.monotonic()
        done: dict[str, tuple[float, float]] = {}
        ksm_quiet = _Quiet()
        deadline = t0 + max(180.0, size * 0.1)
        # Checking every record costs the harness ~1 ms per 1,000 pods: at most 4 times a second,
        # less often for more pods (the figure is longer too), so it takes little from the rest.
        every, polls = _polls_per_check(size), 0
        while len(done) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            polls += 1
            now = time.monotonic()
            for consumer in (operator, raw, ksm):
                if not consumer.alive():
                    raise RuntimeError(f"{consumer.name} exited: see {consumer.log_path}")
            if "raw watch" not in done:
                synced, _, _ = observe.raw_watch_log(self.raw_log)
                if synced is not None:
                    done["raw watch"] = (synced - t0, raw.cpu())
            if "operator" not in done and polls % every == 0:
                current, live = self.synced(watch)
                if live and current == live:
                    done["operator"] = (now - t0, operator.cpu())
            if "kube-state-metrics" not in done:
                cpu = ksm.cpu()
                if ksm_quiet.sample(cpu) >= 4:  # a second without work after the list: all held
                    done["kube-state-metrics"] = (now - 1.0 - t0, cpu)
        return done

    async def window(
        self,
        size: int,
        rate: float,
        repeat: int,
        watch: observe.RecordWatch,
        operator: procs.Consumer,
        raw: procs.Consumer,
        ksm: procs.Consumer,
    ) -> dict[str, Any]:
        """Play `rate` transitions a second for the window; measure everything around it."""
        assert self.player is not None
        player = self.player
        consumers = {"operator": operator, "raw watch": raw, "kube-state-metrics": ksm}
        mark = await self._mark(consumers, watch)
        spy = self._profile(operator, f"{size}-{rate:g}-{repeat}")
        achieved = await player.play_recorded(rate, self.o.seconds)
        played = player.counters.transitions - mark.transitions
        failed = player.counters.errors - mark.errors
        if failed > max(20, played):
            raise RuntimeError(f"{failed} writes of the load failed: was the cluster reset?")
        await asyncio.sleep(self.o.coalesce + 4.0)  # let the last facts land
        if spy is not None:
            await asyncio.to_thread(spy.wait)
        after = await self._since(mark, consumers)
        facts = self._facts(mark, watch)
        result = {
            "size": size,
            "rate": rate,
            "repeat": repeat,
            "seconds": self.o.seconds,
            **self._load_figures(mark, after, achieved, played),
            **facts.figures(),
            **_record_writes(watch, mark, self.o.coalesce),
            **_api_figures(after.api, after.latency, played),
            **apimetrics.record_body_figures(mark.api_bodies, after.api_bodies, played),
            **_control_plane_figures(after.control_plane_cpu, played),
            "control_plane_idle_cores": self.idle_cores,
            "operator_metrics": _operator_figures(mark.operator_metrics, after.operator_metrics),
        }
        if size == max(self.o.sizes) and rate == max(self.o.rates):
            self.lag_series.setdefault(f"{size} pods, {rate:g}/s", []).append(facts.points)
        _log_window(result)
        return result

    async def _control_plane_idle(self) -> dict[str, float | None]:
        """The API server's and etcd's CPU, in cores, with every consumer connected, no load.

        Their background (controllers, node leases, idle watches) is in each window's figure
        too: at 20 transitions/s it can be a fair share of it.
        """
        before = controlplane.read(controlplane.find_pids(self.kube.host))
        began = time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        pids = {name: reading.pid for name, reading in before.items()}
        spent = controlplane.spent(before, controlplane.read(pids))
        elapsed = time.monotonic() - began
        return {name: None if cpu is None else cpu / elapsed for name, cpu in spent.items()}

    async def _mark(self, consumers: dict[str, procs.Consumer], watch: observe.RecordWatch) -> Mark:
        """Where every counter stands as a window begins."""
        assert self.player is not None
        cpu = {name: c.cpu() for name, c in consumers.items()}
        harness_cpu = procs.cpu_seconds(os.getpid())
        busy = procs.machine_busy()
        api_text = await self.kube.text("/metrics")
        operator_metrics = await scrape(f"http://127.0.0.1:{self.operator_port}/metrics")
        expects, arrivals = len(self.player.expects), len(watch.arrivals)
        writes = {key: len(view.writes) for key, view in watch.views.items()}
        bare = {key: view.bare_writes for key, view in watch.views.items()}
        # Found again each window: the API server may have been restarted in between. Read after
        # the scrapes, so serving them is not counted in the window.
        plane = controlplane.read(controlplane.find_pids(self.kube.host))
        return Mark(
            t0=time.monotonic(),
            transitions=self.player.counters.transitions,
            errors=self.player.counters.errors,
            cpu=cpu,
            harness_cpu=harness_cpu,
            busy=busy,
            api=apimetrics.counts_in(api_text),
            api_seconds=apimetrics.seconds_in(api_text),
            operator_metrics=operator_metrics,
            expects=expects,
            arrivals=arrivals,
            writes=writes,
            bare=bare,
            api_bodies=apimetrics.body_bytes_in(api_text),
            control_plane=plane,
        )

    def _profile(self, operator: procs.Consumer, tag: str) -> subprocess.Popen[bytes] | None:
        """With --profile: py-spy sampling the operator through the window."""
        if not self.o.profile:
            return None
        return subprocess.Popen(
            [
                str(REPO / ".venv" / "bin" / "py-spy"),
                "record",
                "--pid",
                str(operator.pid),
                "--rate",
                "50",
                "--duration",
                str(int(self.o.seconds)),
                "--format",
                "raw",
                "--nonblocking",
                "-o",
                str(self.logs / f"operator-{tag}.folded"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def _since(self, mark: Mark, consumers: dict[str, procs.Consumer]) -> Since:
        """What the consumers, the machine and the API server did since `mark`."""
        t1 = time.monotonic()
        cpu = {name: c.cpu() - mark.cpu[name] for name, c in consumers.items()}
        pids = {name: reading.pid for name, reading in mark.control_plane.items()}
        plane = controlplane.spent(mark.control_plane, controlplane.read(pids))
        harness_cpu = procs.cpu_seconds(os.getpid()) - mark.harness_cpu
        busy1 = procs.machine_busy()
        api_text = await self.kube.text("/metrics")
        api = apimetrics.delta(mark.api, apimetrics.counts_in(api_text))
        latency = apimetrics.mean_latency(
            mark.api_seconds,
            apimetrics.seconds_in(api_text),
            "PUT podlifecyclerecords/status",
            "POST podlifecyclerecords",
            "PATCH pods/status",
            "POST events",
        )
        return Since(
            seconds=t1 - mark.t0,
            cpu=cpu,
            harness_cpu=harness_cpu,
            busy=(busy1[0] - mark.busy[0]) / max(1, busy1[1] - mark.busy[1]),
            api=api,
            latency=latency,
            operator_metrics=await scrape(f"http://127.0.0.1:{self.operator_port}/metrics"),
            api_bodies=apimetrics.body_bytes_in(api_text),
            control_plane_cpu=plane,
        )

    def _facts(self, mark: Mark, watch: observe.RecordWatch) -> Facts:
        """The facts the window's writes should add, matched to what the records show."""
        assert self.player is not None
        expects = self.player.expects[mark.expects :]
        _, by_rv, deleted = observe.raw_watch_log(self.raw_log)
        for expect in expects:
            if expect.step == "removed":
                expect.start = deleted.get((expect.namespace, expect.pod))
        matched, unmatched = observe.match(expects, watch.arrivals[mark.arrivals :])
        points = {
            "operator": [
                (float(e.start or 0) - mark.t0, float(e.seen or 0) - float(e.start or 0))
                for e in matched
            ],
            "raw watch": [
                (float(e.start or 0) - mark.t0, by_rv[e.rv] - float(e.start or 0))
                for e in expects
                if e.rv and e.rv in by_rv
            ],
        }
        return Facts(expects, unmatched, points)

    def _load_figures(
        self, mark: Mark, since: Since, achieved: float, played: int
    ) -> dict[str, Any]:
        """The load the window played, and what it cost the consumers and the machine."""
        assert self.player is not None
        counters = self.player.counters
        return {
            "measured_seconds": since.seconds,
            "achieved_rate": achieved,
            "transitions": played,
            "write_errors": counters.errors - mark.errors,
            "late_ticks": counters.late,
            "steps": dict(counters.by_step),
            "machine_busy": since.busy,
            "load_average_1m": os.getloadavg()[0],
            "harness_cpu_seconds": since.harness_cpu,
            "cpu_per_1000": {n: 1000 * c / max(1, played) for n, c in since.cpu.items()},
            "cpu_seconds": since.cpu,
        }

    async def worst_case(self) -> dict[str, Any]:
        """The record of a pod with thousands of probe failures and many restarts."""
        assert self.player is not None
        restarts, failures = self.o.worst_restarts, 3000
        began = time.monotonic()
        pod = await self.player.worst_case(restarts, failures)
        self.worst_key = pod.key
        await asyncio.sleep(self.o.coalesce + 3.0)
        record = await self.kube.request(
            "GET",
            f"/apis/podtrail.io/v1alpha1/namespaces/{pod.namespace}/podlifecyclerecords/{pod.name}",
        )
        status = record.get("status") or {}
        result = {
            "restarts": restarts,
            "probe_failures": failures,
            "size_kib": len(json.dumps(record, separators=(",", ":"))) / 1024,
            "status_kib": len(json.dumps(status, separators=(",", ":"))) / 1024,
            "timeline_entries": len(status.get("timeline") or []),
            "timeline_dropped": status.get("timelineDropped"),
            "restarts_recorded": (status.get("summary") or {}).get("restarts"),
            "probe_failures_recorded": status.get("probeFailures"),
            "seconds": time.monotonic() - began,
        }
        log(
            f"worst-case record: {result['size_kib']:.1f} KiB, "
            f"{result['timeline_entries']} entries "
            f"({result['timeline_dropped']} dropped), restarts {result['restarts_recorded']}, "
            f"probe failures {result['probe_failures_recorded']}"
        )
        return result

    async def check_ksm(self, size: int) -> None:
        """One scrape of kube-state-metrics after the windows: it must know this run's pods."""
        text = await scrape(f"http://127.0.0.1:{self.ksm_port}/metrics")
        ours = len(
            re.findall(rf'^kube_pod_info\{{[^}}]*namespace="bench-{self.run_id}-', text, re.M)
        )
        log(
            f"kube-state-metrics exports {ours} of this run's pods "
            f"({len(text) / 1e6:.1f} MB scrape)"
        )

    async def catch_up(
        self, size: int, repeat: int, watch: observe.RecordWatch, operator: procs.Consumer
    ) -> dict[str, Any]:
        """Stop the operator, let pods change without it, start it: time until all is current."""
        await operator.stop()
        changed, expects = await self._change_while_down()
        first_arrival = len(watch.arrivals)
        api0 = await apimetrics.request_counts(self.kube)
        new = self.operator(f"{size}-{repeat}-restart")
        new.start()
        result: dict[str, Any] = {"size": size, "repeat": repeat, "changes_while_down": changed}
        current, unmatched = await self._until_current(new, expects, watch, first_arrival, size)
        result.update(current)
        result["cpu_seconds"] = new.cpu()
        base = self.base_cpu.get("operator", 0.0)
        result["cpu_ms_per_pod"] = 1000 * max(0.0, result["cpu_seconds"] - base) / size
        result["facts_missing"] = len(unmatched)
        result["missing_by_type"] = _count(e.type for e in unmatched)
        api = apimetrics.delta(api0, await apimetrics.request_counts(self.kube))
        result["record_requests"] = apimetrics.record_requests(api)
        await asyncio.sleep(2.0)
        result.update(await self._records_checked(watch))
        _log_catch_up(result)
        await new.stop()
        return result

    async def _change_while_down(self) -> tuple[int, list[Expect]]:
        """Play the load with the operator stopped: (changes made, facts its restart must find)."""
        assert self.player is not None
        player = self.player
        rate = sorted(self.o.rates)[len(self.o.rates) // 2]
        first = len(player.expects)
        await player.play_recorded(rate, self.o.catchup_seconds)
        live_keys = {p.key for p in player.pods.values() if not p.gone}
        # Facts of pods still alive must all be recovered from what their status shows; a
        # readiness flap while the operator was away leaves no trace in the status (the
        # readiness it ends in is checked with the rest of the record's current state).
        expects = [
            e
            for e in player.expects[first:]
            if (e.namespace, e.pod) in live_keys
            and e.step != "removed"
            and e.type not in ("ContainerReady", "ContainerNotReady")
        ]
        return len(player.expects) - first, expects

    async def _until_current(
        self,
        new: procs.Consumer,
        expects: list[Expect],
        watch: observe.RecordWatch,
        first_arrival: int,
        size: int,
    ) -> tuple[dict[str, Any], list[Expect]]:
        """Wait until the restarted operator has every fact and every record follows its pod.

        Returns ({"seconds": ...} or, at the deadline, the count not current; facts not found).
        """
        t0 = time.monotonic()
        deadline = t0 + max(120.0, size * 0.05)
        unmatched = expects
        current = live = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25 * _polls_per_check(size))
            if not new.alive():
                raise RuntimeError(f"operator exited: see {new.log_path}")
            for e in unmatched:
                e.seen = None
            _, unmatched = observe.match(unmatched, watch.arrivals[first_arrival:])
            current, live = self.synced(watch)
            if not unmatched and current == live:
                return {"seconds": time.monotonic() - t0}, unmatched
        return {"seconds": None, "not_current": live - current}, unmatched

    async def _records_checked(self, watch: observe.RecordWatch) -> dict[str, Any]:
        """Every record of the run: duplicate keys and facts, sizes, longest timeline."""
        items = (await self.kube.list_all(observe.RECORDS, watch.params))["items"]
        worst = self.worst_key
        ordinary = [
            item
            for item in items
            if (item["metadata"]["namespace"], item["metadata"]["name"]) != worst
        ]
        return {
            "duplicate_keys": sum(_duplicates(item) for item in items),
            # The worst-case pod restarts several times a second: equal texts there are expected.
            "duplicate_facts": sum(_same_fact_twice(item) for item in ordinary),
            "record_size_kib": observe.record_sizes(items),
            "records": len(items),
            "timeline_entries_max": max(
                (len((i.get("status") or {}).get("timeline") or []) for i in items), default=0
            ),
        }

    def results_so_far(self) -> dict[str, Any]:
        """Everything measured so far, as the report reads it."""
        options = dataclasses.asdict(self.o)
        return {
            "run_id": self.run_id,
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
            "machine": machine(),
            "windows": self.results,
            "starts": self.starts,
            "catchups": self.catchups,
            "lag_series": self.lag_series,
            "worst_case_record": self.worst,
            "deployment": self.deployment,
            "logs": str(self.logs),
        }

    def save_partial(self) -> None:
        """After each repeat: what an interrupted run still leaves behind."""
        path = self.o.out / f"{self.o.mode}-{self.run_id}.partial.json"
        path.write_text(json.dumps(self.results_so_far(), default=str))

    async def cleanup(self) -> None:
        """Stop kwok; remove the namespaces, pods and simulated nodes of this run."""
        if self.kwok is not None and not self.o.keep:
            await self.kwok.stop()
        if not self.o.keep:
            await setup.teardown(self.kube, self.run_id, log=log)
        if self.lease is not None:
            self.lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.lease


@dataclasses.dataclass
class Mark:
    """Where the counters stood as a window began (the window's share is taken from them)."""

    t0: float
    transitions: int
    errors: int
    cpu: dict[str, float]  # by consumer
    harness_cpu: float
    busy: tuple[float, float]  # the machine's busy and total jiffies
    api: Counter[str]  # API server requests by "VERB resource"
    api_seconds: Counter[str]
    operator_metrics: str  # the operator's /metrics
    expects: int  # the player's expectations so far
    arrivals: int  # the record watch's arrivals so far
    writes: dict[tuple[str, str], int]  # writes seen of each record so far
    bare: dict[tuple[str, str], int]  # of those, writes that added no timeline content
    api_bodies: Counter[str] = dataclasses.field(default_factory=Counter)  # request body bytes
    control_plane: dict[str, controlplane.Reading] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Since:
    """What happened from a window's mark to its end (the last facts landed)."""

    seconds: float
    cpu: dict[str, float]
    harness_cpu: float
    busy: float  # the machine's busy share
    api: dict[str, int]
    latency: dict[str, float | None]
    operator_metrics: str
    api_bodies: Counter[str] = dataclasses.field(default_factory=Counter)  # so far, not a delta
    control_plane_cpu: dict[str, float | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Facts:
    """A window's expected facts, those its record never showed, and the lag of the others."""

    expects: list[Expect]
    unmatched: list[Expect]
    points: dict[str, list[tuple[float, float]]]  # by consumer: (seconds into the window, lag)

    def figures(self) -> dict[str, Any]:
        """The lag percentiles and the facts missing."""
        return {
            "lag": {
                name: observe.percentiles([lag for _, lag in points])
                for name, points in self.points.items()
            },
            "facts_expected": len(self.expects),
            "facts_missing": len(self.unmatched),
            "missing_by_type": _count(e.type for e in self.unmatched),
        }


class _Quiet:
    """Counts a process's idle samples in a row (under 10 ms of CPU each, once it has worked)."""

    def __init__(self) -> None:
        self.last = 0.0
        self.count = 0

    def sample(self, cpu: float) -> int:
        """Take its CPU seconds so far; the idle samples in a row."""
        idle = cpu - self.last < 0.01 and cpu > 0.02
        self.count = self.count + 1 if idle else 0
        self.last = cpu
        return self.count


def _record_writes(watch: observe.RecordWatch, mark: Mark, coalesce: float) -> dict[str, Any]:
    """Status writes per record, seen by the harness's watch (one update = one write)."""
    per_record: list[int] = []
    close = 0
    bare = 0
    for key, view in watch.views.items():
        new = [t for t in view.writes[mark.writes.get(key, 0) :] if t >= mark.t0]
        if new:
            per_record.append(len(new))
            ordered = sorted(new)
            close += sum(
                1 for a, b in zip(ordered, ordered[1:], strict=False) if b - a < coalesce * 0.9
            )
        bare += view.bare_writes - mark.bare.get(key, 0)
    return {
        "records_written": len(per_record),
        "status_writes_per_record": {
            "mean": sum(per_record) / len(per_record) if per_record else None,
            "max": max(per_record) if per_record else None,
        },
        "writes_closer_than_window": close,
        "writes_without_new_fact": bare,
        "record_updates_seen": sum(per_record),
    }


def _api_figures(
    api: dict[str, int], latency: dict[str, float | None], played: int
) -> dict[str, Any]:
    """The API server's requests: all, on records, and the writes of records per transition."""
    record_api = apimetrics.record_requests(api)
    writes = sum(v for k, v in record_api.items() if not k.startswith(("LIST", "WATCH", "GET")))
    return {
        "api_requests": api,
        "record_requests": record_api,
        "apiserver_mean_latency_s": latency,
        "record_status_writes": sum(v for k, v in record_api.items() if k.endswith("/status")),
        "record_writes_per_1000": 1000 * writes / max(1, played),
    }


def _control_plane_figures(cpu: dict[str, float | None], played: int) -> dict[str, Any]:
    """The API server's and etcd's CPU in the window: serving every client, not one consumer."""
    return {
        "control_plane_cpu_seconds": cpu,
        "control_plane_cpu_per_1000": {
            name: None if seconds is None else 1000 * seconds / max(1, played)
            for name, seconds in cpu.items()
        },
    }


def _operator_figures(before: str, after: str) -> dict[str, Any]:
    """What the operator's own metrics counted between two scrapes."""

    def grown(name: str, **labels: str) -> float:
        return sum_metric(after, name, **labels) - sum_metric(before, name, **labels)

    return {
        "status_writes_ok": grown("podtrail_status_writes_total", kind="status", result="ok"),
        "conflicts": grown("podtrail_status_writes_total", result="conflict"),
        "facts": grown("podtrail_facts_total"),
        "write_lag": histogram_quantiles(before, after, "podtrail_write_lag_seconds"),
    }


def _log_window(result: dict[str, Any]) -> None:
    lag = result["lag"]["operator"]
    log(
        f"{result['size']} pods @ {result['rate']:g}/s (repeat {result['repeat']}): "
        f"{result['transitions']} transitions ({result['achieved_rate']:.0f}/s), "
        f"operator lag p50 {_ms(lag['p50'])} p99 {_ms(lag['p99'])}, "
        f"CPU/1000: "
        + ", ".join(f"{n} {v:.2f} s" for n, v in result["cpu_per_1000"].items())
        + f", missing facts {result['facts_missing']}/{result['facts_expected']}, "
        f"machine busy {result['machine_busy']:.0%}, API server / etcd CPU/1000: "
        + " / ".join(
            "-" if v is None else f"{v:.2f} s"
            for v in result["control_plane_cpu_per_1000"].values()
        )
    )


def _log_catch_up(result: dict[str, Any]) -> None:
    seconds = result["seconds"]
    log(
        f"restart catch-up, {result['size']} pods (repeat {result['repeat']}): "
        + (f"{seconds:.1f} s" if seconds is not None else "NOT current")
        + f", {result['cpu_ms_per_pod']:.2f} ms CPU a pod, duplicate keys "
        f"{result['duplicate_keys']}, "
        f"record size p50 {result['record_size_kib']['p50'] or 0:.1f} KiB"
    )


def _polls_per_check(size: int) -> int:
    """How many 0.25 s polls between two checks of every record: 1 up to 5,000 pods."""
    return max(1, size // 5000)


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


def _duplicates(record: dict[str, Any]) -> int:
    status = record.get("status") or {}
    keys = (status.get("tracking") or {}).get("timelineKeys")
    if keys is None:  # a record written before the keys moved to tracking
        keys = [e.get("key") for e in status.get("timeline") or []]
    return len(keys) - len(set(keys))


def _same_fact_twice(record: dict[str, Any]) -> int:
    """Entries telling the same thing twice under different keys (type, container, time, text)."""
    seen = set()
    twice = 0
    for e in (record.get("status") or {}).get("timeline") or []:
        ident = (e.get("type"), e.get("container"), e.get("time"), e.get("summary"))
        twice += ident in seen
        seen.add(ident)
    return twice


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.0f} ms"


async def run(options: Options) -> dict[str, Any]:
    """The whole benchmark; returns the raw results (the report is made from them)."""
    tools = await asyncio.to_thread(build_tools)
    log(f"tools: {', '.join(tools.values())}")
    kube = await Kube.connect(options.kubeconfig)
    bench: Bench | None = None
    try:
        await wait_for_apiserver(kube, log=log)
        bench = Bench(options, kube, tools)
        try:
            await bench.run()
        finally:
            with contextlib.suppress(Exception):
                await bench.cleanup()
        results = bench.results_so_far()
        (options.out / f"{options.mode}-{bench.run_id}.partial.json").unlink(missing_ok=True)
        return results
    finally:
        await kube.close()
