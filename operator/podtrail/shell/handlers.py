"""Kopf handlers and the operator's composition root.

Nothing here writes to a pod (no annotations, no finalizers). Kopf logs in, starts and stops
the operator, follows namespaces and serves the liveness probe. The hot streams (pods, Events
about pods, EndpointSlices, and records, whose every write comes back through a watch) are the
operator's own watches, started at start-up; records are written by the RecordWriter alone.

With leader election, every replica runs Kopf (namespaces, the probe) but only the holder of
the Lease runs the runtime: the streams, the writer and the sweep (and, with --otlp-endpoint,
the trace exporter and its live passes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine, Iterator
from typing import Any

import kopf
from prometheus_client import start_http_server

from podtrail import core
from podtrail.shell import kube as kube_module
from podtrail.shell.backoff import Backoff
from podtrail.shell.health import StreamHealth
from podtrail.shell.intake import PodIntake
from podtrail.shell.kube import Kube
from podtrail.shell.leader import ElectionConfig, LeaderElector
from podtrail.shell.logs import get_logger
from podtrail.shell.metrics import Metrics
from podtrail.shell.persist import RecordWriter
from podtrail.shell.scope import Scope
from podtrail.shell.settings import PodtrailSettings, record_limits
from podtrail.shell.streams import (
    HeldEvents,
    follow_endpoint_slices,
    follow_pod_events,
    follow_pods,
    follow_records,
)
from podtrail.shell.sweep import sweep_forever
from podtrail.shell.traces import Tracing, build_tracing

log = get_logger(__name__)


WRITER_TASK = "record-writer"
"""The runtime's task that writes records: stopped last, after the shutdown flush."""
ELECTOR_TASK = "leader-elector"
"""The election's task that renews or competes for the Lease: stopped last."""
FOLLOWER_TASK = "leader-follower"
"""The election's task that starts and drops the runtime as the Lease is won and lost."""
TRACES_TASK = "trace-exporter"
"""The runtime's task that exports traces: stopped after the writer's flush, which ends lives."""
LIVE_TRACES_TASK = "trace-live"
"""The runtime's task that offers live pods' closed spans."""
TRACE_FLUSH_SECONDS = 5.0
"""At shutdown, after the writer's flush: the traces' share of the grace period."""


class NamedTasks:
    """Loops running as tasks under unique names, so each is found by what it does."""

    tasks: dict[str, asyncio.Task[None]]

    def spawn(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run one loop as a task under a name no other of these tasks has."""
        if name in self.tasks:
            work.close()
            raise ValueError(f"a task named {name} is already running")
        self.tasks[name] = asyncio.create_task(work, name=name)

    def all_but(self, *names: str) -> list[asyncio.Task[None]]:
        """Every task but those of these names (which are stopped after the others)."""
        return [task for key, task in self.tasks.items() if key not in names]


@dataclasses.dataclass
class Runtime(NamedTasks):
    """What the handlers share, built once at start-up."""

    settings: PodtrailSettings
    kube: Kube
    scope: Scope
    writer: RecordWriter
    held: HeldEvents
    metrics: Metrics
    intake: PodIntake
    health: StreamHealth = dataclasses.field(default_factory=StreamHealth)
    tracing: Tracing | None = None
    """The trace exporter and its feed, with --otlp-endpoint."""
    tasks: dict[str, asyncio.Task[None]] = dataclasses.field(default_factory=dict)
    """The writer (WRITER_TASK), a stream of each kind per namespace, the sweep, the traces'."""


@dataclasses.dataclass
class Election(NamedTasks):
    """The elector, its own API connection, and the tasks that follow the Lease."""

    elector: LeaderElector
    leases: Kube
    tasks: dict[str, asyncio.Task[None]] = dataclasses.field(default_factory=dict)
    """ELECTOR_TASK and FOLLOWER_TASK."""


def _watched_namespaces(settings: PodtrailSettings) -> list[str | None]:
    return list(settings.namespaces) or [None]


def build_registry(
    settings: PodtrailSettings, metrics: Metrics, election: ElectionConfig | None = None
) -> kopf.OperatorRegistry:
    """Register every handler on a fresh registry.

    With `election`, the runtime runs only while this replica holds the Lease; without, at once.
    """
    registry = kopf.OperatorRegistry()
    _register_lifecycle(registry, settings, metrics, election)
    _register_login(registry, settings)
    _register_namespaces(registry)
    _register_probe(registry)
    return registry


def _register_lifecycle(
    registry: kopf.OperatorRegistry,
    options: PodtrailSettings,  # not `settings`: the start-up handler's own argument is Kopf's
    metrics: Metrics,
    election: ElectionConfig | None,
) -> None:
    """Start-up (the runtime, or standing by for the Lease) and clean-up (flush, release)."""

    @kopf.on.startup(id="start", registry=registry)
    async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        _tune_kopf(settings, options.request_timeout_seconds)
        _serve_metrics(options, metrics, memo)
        if election is not None:
            memo.election = await _start_election(options, metrics, election, memo)
            return
        try:
            memo.runtime = await _start_runtime(options, metrics)
        except kube_module.KubeError as error:
            raise kopf.PermanentError(str(error)) from error
        metrics.leader.set(1)

    @kopf.on.cleanup(id="stop", registry=registry)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        running: Election | None = getattr(memo, "election", None)
        if running is not None:
            await _stop_election(running, memo, metrics)
            return
        runtime: Runtime | None = getattr(memo, "runtime", None)
        if runtime is not None:
            await _stop_runtime(runtime)


def _register_login(registry: kopf.OperatorRegistry, options: PodtrailSettings) -> None:
    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The API client's order (Kube.connect): an explicit --kubeconfig (main() exports it as
        # KUBECONFIG), else in-cluster credentials, then $KUBECONFIG, then ~/.kube/config.
        if options.kubeconfig:
            return kopf.login_with_kubeconfig(**kwargs)
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(
            **kwargs
        ) or kopf.login_with_kubeconfig(**kwargs)
        return info


def _register_namespaces(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.event("", "v1", "namespaces", id="namespace_changed", registry=registry)
    async def namespace_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime | None = getattr(memo, "runtime", None)
        if runtime is None:
            return  # standing by: a runtime lists the namespaces afresh when it starts
        runtime.scope.learn_namespace(event["object"], deleted=event.get("type") == "DELETED")


def _register_probe(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.probe(id="pending", registry=registry)
    def pending(memo: kopf.Memo, **_: Any) -> int | str:
        running: Election | None = getattr(memo, "election", None)
        runtime: Runtime | None = getattr(memo, "runtime", None)
        holders: list[NamedTasks] = [h for h in (running, runtime) if h is not None]
        for name, task in (item for holder in holders for item in holder.tasks.items()):
            if task.done():
                raise kopf.PermanentError(f"{name} stopped")
        if runtime is not None:
            _check_streams(runtime)
            return runtime.writer.pending_count()
        return "starting" if running is not None and running.elector.is_leader else "standby"


async def observe_record(runtime: Runtime, raw: dict[str, Any], *, deleted: bool) -> None:
    """A record changed: learn of records users create, of spec changes, of deletions.

    `raw` may be metadata only (the records' watch): a record whose object or spec is not the
    one held is then read in full; our own status writes coming back are not.
    """
    meta = raw.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    if deleted:
        runtime.writer.forget(namespace, name, meta.get("uid"))
        return
    if runtime.writer.knows_spec(meta):
        return
    if "spec" not in raw:
        found = await runtime.kube.retried(lambda: runtime.kube.get_record(namespace, name))
        if found is None:
            return  # deleted since: the watch says so next
        raw = found
        meta = raw.get("metadata") or {}
    state = runtime.writer.get(namespace, name)
    fresh = state is None or state.uid != meta.get("uid")
    runtime.writer.adopt(raw)
    if fresh and not (raw.get("status") or {}).get("podUID"):
        # A record created ahead of (or for) a pod by a user: fill it from the pod if it exists.
        pod = await runtime.kube.retried(lambda: runtime.kube.get_pod(namespace, name))
        if pod is not None:
            await runtime.intake.pod(pod, deleted=False)


def _tune_kopf(settings: kopf.OperatorSettings, request_timeout: float) -> None:
    settings.posting.enabled = False  # posting Events while watching Events feeds on itself
    settings.scanning.disabled = True
    settings.persistence.finalizer = "podtrail.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="podtrail.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="podtrail.io", key="last-handled-configuration"
    )
    settings.watching.server_timeout = 290
    settings.watching.client_timeout = 320
    settings.watching.connect_timeout = 10
    settings.networking.connect_timeout = 10  # Kopf's own requests, bounded like ours
    settings.networking.request_timeout = request_timeout
    settings.watching.chunk_size = 500
    settings.process.ultimate_exiting_timeout = 30
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def _check_streams(runtime: Runtime) -> None:
    """Fail the liveness probe when a stream has been down past the bound (a restart may help)."""
    outage = runtime.health.longest_outage()
    runtime.metrics.stream_outage.set(outage)
    if outage > runtime.settings.stream_outage_seconds:
        down = [name for name, state in runtime.health.states().items() if not state.up]
        raise kopf.PermanentError(f"streams down for {outage:.0f} s: {', '.join(sorted(down))}")


async def _connect(settings: PodtrailSettings, metrics: Metrics) -> Kube:
    return await Kube.connect(
        settings.kubeconfig,
        request_timeout=settings.request_timeout_seconds,
        on_request=metrics.count_request,
    )


async def _start_runtime(settings: PodtrailSettings, metrics: Metrics) -> Runtime:
    """Assemble the runtime, load every record, then start its loops."""
    kube = await _connect(settings, metrics)
    tracing = build_tracing(settings, metrics)
    try:
        runtime = await _assemble(settings, metrics, kube, tracing)
        versions = await _catch_up(runtime)
    except BaseException:
        if tracing is not None:
            await tracing.exporter.close(timeout=0)
        await kube.close()
        raise
    _spawn_loops(runtime, versions)
    log.info(
        "podtrail started",
        namespaces=list(settings.namespaces) or "all",
        opt_in=settings.opt_in,
        records=sum(1 for _ in runtime.writer.records()),
    )
    return runtime


async def _assemble(
    settings: PodtrailSettings, metrics: Metrics, kube: Kube, tracing: Tracing | None = None
) -> Runtime:
    scope = Scope(namespaces=settings.namespaces, opt_in=settings.opt_in)
    for namespace_object in await kube.retried(kube.list_namespaces):
        scope.learn_namespace(namespace_object)
    writer = RecordWriter(
        kube,
        limits=record_limits(settings),
        window_seconds=settings.coalesce_seconds,
        concurrency=settings.write_concurrency,
        metrics=metrics,
        write_timeout_seconds=settings.request_timeout_seconds * 3,
        on_ended=tracing.feed.ended if tracing is not None else None,
    )
    held = HeldEvents()
    intake = PodIntake(kube, scope, writer, held, metrics)
    return Runtime(settings, kube, scope, writer, held, metrics, intake, tracing=tracing)


def _spawn_loops(runtime: Runtime, versions: dict[str | None, str]) -> None:
    """The writer, a stream of each kind per namespace, the sweep; each task named."""
    kube, writer, metrics, health = runtime.kube, runtime.writer, runtime.metrics, runtime.health
    hooks: dict[str, Any] = {"health": health, "on_item_error": metrics.count_item_error}
    runtime.spawn(WRITER_TASK, writer.run())

    async def take_pod(raw: dict[str, Any], deleted: bool) -> None:
        await runtime.intake.pod(raw, deleted=deleted)

    async def take_record(raw: dict[str, Any], deleted: bool) -> None:
        await observe_record(runtime, raw, deleted=deleted)

    for namespace, version in versions.items():
        runtime.spawn(
            f"records-{namespace or 'all'}",
            follow_records(kube, namespace, version, take_record, metrics, **hooks),
        )
    closing = runtime.intake.missing_after_listing
    for namespace in _watched_namespaces(runtime.settings):
        where = namespace or "all"
        runtime.spawn(
            f"pods-{where}", follow_pods(kube, namespace, take_pod, closing, metrics, **hooks)
        )
        runtime.spawn(
            f"pod-events-{where}",
            follow_pod_events(kube, namespace, writer, runtime.held, metrics, **hooks),
        )
        runtime.spawn(
            f"endpoint-slices-{where}",
            follow_endpoint_slices(kube, namespace, writer, metrics, **hooks),
        )
    runtime.spawn("sweep", sweep_forever(kube, writer, runtime.settings, metrics))
    _spawn_tracing(runtime)


def _spawn_tracing(runtime: Runtime) -> None:
    """The trace exporter's task, and the live passes' unless --otlp-live-interval-seconds is 0."""
    tracing, writer = runtime.tracing, runtime.writer
    if tracing is None:
        return
    runtime.spawn(TRACES_TASK, tracing.exporter.run())
    if tracing.live_interval_seconds > 0:
        # Each record read as the pass reaches it (the pass yields between chunks).
        def live() -> Iterator[tuple[str, str, core.Record]]:
            return ((s.namespace, s.name, s.record) for s in writer.records() if not s.evicted)

        runtime.spawn(LIVE_TRACES_TASK, tracing.feed.follow_live(live))


async def _catch_up(runtime: Runtime) -> dict[str | None, str]:
    """Load every record; return each listing's version, from which the records' watch goes on.

    Records whose pod vanished while the operator was away are closed by the pod stream's first
    listing (PodIntake.missing_after_listing).
    """
    versions: dict[str | None, str] = {}
    for namespace in _watched_namespaces(runtime.settings):
        async for page in runtime.kube.record_pages(namespace):
            for record in page.items:
                runtime.writer.adopt(record)
            versions[namespace] = page.version or ""
    return versions


async def _stop_runtime(runtime: Runtime) -> None:
    """Stop the streams and the sweep, flush what is pending (bounded), then the writer.

    Then the lives that ended are handed to the trace exporter, which gets TRACE_FLUSH_SECONDS
    more to send what it holds.
    """
    await _cancel(runtime.all_but(WRITER_TASK, TRACES_TASK))
    unwritten = await runtime.writer.flush_all(timeout=runtime.settings.flush_seconds)
    await runtime.writer.close()
    if runtime.tracing is not None:
        runtime.writer.announce_ended()
        await runtime.tracing.exporter.close(timeout=TRACE_FLUSH_SECONDS)
    last = [runtime.tasks.get(WRITER_TASK), runtime.tasks.get(TRACES_TASK)]
    await _cancel([task for task in last if task is not None])
    await runtime.kube.close()
    log.info("podtrail stopped", unwritten_records=len(unwritten))


async def _abandon_runtime(runtime: Runtime) -> None:
    """Stop at once, writing nothing more: another replica leads now and writes the records."""
    pending = runtime.writer.pending_count()
    await _cancel(list(runtime.tasks.values()))
    if runtime.tracing is not None:
        await runtime.tracing.exporter.close(timeout=0)
    await runtime.kube.close()
    log.warning(
        "lost the lease: runtime stopped, pending facts left to the leader", pending=pending
    )


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _serve_metrics(settings: PodtrailSettings, metrics: Metrics, memo: kopf.Memo) -> None:
    """Serve /metrics once per process, standby included (it shows podtrail_leader 0)."""
    if settings.metrics_port and not getattr(memo, "metrics_served", False):
        start_http_server(settings.metrics_port, registry=metrics.registry)
        memo.metrics_served = True


async def _start_election(
    settings: PodtrailSettings, metrics: Metrics, config: ElectionConfig, memo: kopf.Memo
) -> Election:
    """Stand by for the Lease in the background; the runtime starts when it is won."""
    leases = await _connect(settings, metrics)
    elector = LeaderElector(leases, config)
    election = Election(elector, leases)
    metrics.leader.set(0)
    election.spawn(ELECTOR_TASK, elector.run())
    election.spawn(FOLLOWER_TASK, _run_while_leading(elector, settings, metrics, memo))
    log.info(
        "standing by for the lease",
        lease=f"{config.lease_namespace}/{config.lease_name}",
        identity=config.identity,
    )
    return election


async def _run_while_leading(
    elector: LeaderElector, settings: PodtrailSettings, metrics: Metrics, memo: kopf.Memo
) -> None:
    """Start the runtime on winning the Lease; drop it, unflushed, the moment it is lost."""
    while True:
        await elector.wait_until(leading=True)
        metrics.leader.set(1)
        starting = asyncio.create_task(_start_runtime_until_it_works(settings, metrics, memo))
        try:
            await elector.wait_until(leading=False)
        finally:
            # On shutdown a runtime already in memo stays there for the clean-up to flush.
            await _cancel([starting])
        metrics.leader.set(0)
        runtime: Runtime | None = getattr(memo, "runtime", None)
        memo.runtime = None
        if runtime is not None:
            await _abandon_runtime(runtime)


async def _start_runtime_until_it_works(
    settings: PodtrailSettings, metrics: Metrics, memo: kopf.Memo
) -> None:
    """Build the runtime into `memo.runtime`, backing off after failures (the CRD missing…)."""
    backoff = Backoff()
    while True:
        try:
            memo.runtime = await _start_runtime(settings, metrics)
            return
        except Exception as error:
            delay = backoff.next_delay(kube_module.retry_after(error))
            log.error("the runtime did not start", error=str(error), retry_in=round(delay, 1))
            await asyncio.sleep(delay)


async def _stop_election(election: Election, memo: kopf.Memo, metrics: Metrics) -> None:
    """Shutdown: flush while still holding the Lease, then release it for the standby."""
    # Everything but the elector first (the follower: the runtime is no longer its to drop).
    await _cancel(election.all_but(ELECTOR_TASK))
    runtime: Runtime | None = getattr(memo, "runtime", None)
    memo.runtime = None
    if runtime is not None:
        await _stop_runtime(runtime)
    await _cancel(list(election.tasks.values()))
    await election.elector.release()
    metrics.leader.set(0)
    await election.leases.close()
