"""The operator's own watches: pods, Events about pods, EndpointSlices, records."""

from __future__ import annotations

import contextlib
import time
import traceback
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from podtrail import core
from podtrail.shell.health import StreamHealth
from podtrail.shell.kube import Kube, StreamItem
from podtrail.shell.logs import get_logger
from podtrail.shell.metrics import Metrics
from podtrail.shell.persist import RecordWriter

RecordKey = tuple[str, str]
ItemErrorHook = Callable[[str], None]

log = get_logger(__name__)


class StreamReport:
    """What one stream tells the metrics, the health and the log.

    `on_item_error(stream)` is called each time handling one object failed (the error is
    logged, and the stream goes on with the next object). The health key is
    "<stream>:<namespace or 'all'>", e.g. "pods:all".
    """

    def __init__(
        self,
        stream: str,
        namespace: str | None,
        metrics: Metrics,
        health: StreamHealth | None = None,
        on_item_error: ItemErrorHook | None = None,
    ) -> None:
        self.stream = stream
        self.key = f"{stream}:{namespace or 'all'}"
        self._metrics = metrics
        self._health = health
        self._on_item_error = on_item_error
        if health is not None:
            health.started(self.key)

    def restarted(self, cause: str) -> None:
        """The stream failed and backs off (see kube._cause_of for the causes)."""
        self._metrics.stream_restarts.labels(stream=self.stream, cause=cause).inc()
        if self._health is not None:
            self._health.failed(self.key, cause)

    def up(self) -> None:
        """A list page or a watch response arrived."""
        if self._health is not None:
            self._health.succeeded(self.key)

    @contextlib.contextmanager
    def one_object(self, raw: Mapping[str, Any] | None = None) -> Iterator[None]:
        """Handle one object: an error is logged and counted, and the stream goes on.

        Cancellation is no Exception: it passes through.
        """
        try:
            yield
        except Exception as error:
            meta = (raw or {}).get("metadata") or {}
            log.warning(
                "stream object not handled",
                stream=self.key,
                namespace=meta.get("namespace"),
                name=meta.get("name"),
                error=str(error) or type(error).__name__,
                # The frames, not their locals: rendering locals costs seconds per error.
                traceback="".join(traceback.format_exception(error, limit=-8)),
            )
            if self._on_item_error is not None:
                self._on_item_error(self.stream)


class HeldEvents:
    """Events about pods not seen yet, held briefly until the pod's first observation arrives.

    The pod and Event streams are not ordered with each other, and an Event alone cannot say
    whether its pod is opted out; so an Event for an unknown pod waits here (bounded in count and
    age) instead of creating a record.
    """

    def __init__(
        self,
        *,
        max_events: int = 10_000,
        max_age_seconds: float = 120.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._held: OrderedDict[RecordKey, list[tuple[float, core.EventSeen]]] = OrderedDict()
        self._count = 0
        self._max_events = max_events
        self._max_age = max_age_seconds
        self._monotonic = monotonic

    def __len__(self) -> int:
        return self._count

    def hold(self, observation: core.EventSeen) -> None:
        """Keep an Event for later, dropping the oldest held ones past the bound."""
        key = (observation.namespace, observation.pod_name)
        self._held.setdefault(key, []).append((self._monotonic(), observation))
        self._held.move_to_end(key)
        self._count += 1
        self._expire()
        while self._count > self._max_events and self._held:
            _, dropped = self._held.popitem(last=False)
            self._count -= len(dropped)

    def release(self, namespace: str, name: str) -> list[core.EventSeen]:
        """The Events held for a pod that has now been seen."""
        held = self._held.pop((namespace, name), [])
        self._count -= len(held)
        return [observation for _, observation in held]

    def _expire(self) -> None:
        limit = self._monotonic() - self._max_age
        while self._held:
            key, items = next(iter(self._held.items()))
            if items[-1][0] >= limit:
                break
            del self._held[key]
            self._count -= len(items)


async def follow_pod_events(
    kube: Kube,
    namespace: str | None,
    writer: RecordWriter,
    held: HeldEvents,
    metrics: Metrics,
    *,
    health: StreamHealth | None = None,
    on_item_error: ItemErrorHook | None = None,
) -> None:
    """Feed every Event about a pod to its record (or hold it until the pod is seen)."""
    report = StreamReport("events", namespace, metrics, health, on_item_error)
    async for item in kube.pod_events(namespace, report.restarted, report.up):
        for raw in _objects(item):
            with report.one_object(raw):
                _take_event(raw, writer, held, metrics)


def _take_event(
    raw: dict[str, Any], writer: RecordWriter, held: HeldEvents, metrics: Metrics
) -> None:
    observation = core.observe_event(raw)
    if observation is None:
        return
    metrics.observations.labels(stream="events").inc()
    if writer.get(observation.namespace, observation.pod_name) is None:
        held.hold(observation)
    else:
        writer.submit(observation)


def _objects(item: StreamItem) -> tuple[dict[str, Any], ...]:
    if item.kind == "LISTED":
        return item.items
    if item.kind in {"ADDED", "MODIFIED"} and item.obj is not None:
        return (item.obj,)
    return ()  # a deleted Event removes nothing from the timeline


def _slim_slice(raw: dict[str, Any]) -> dict[str, Any]:
    """Only what the endpoint diff reads, so keeping every slice stays cheap."""
    meta = raw.get("metadata") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "labels": meta.get("labels") or {},
            "annotations": meta.get("annotations") or {},
        },
        "endpoints": raw.get("endpoints") or [],
    }


async def follow_endpoint_slices(
    kube: Kube,
    namespace: str | None,
    writer: RecordWriter,
    metrics: Metrics,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    *,
    health: StreamHealth | None = None,
    on_item_error: ItemErrorHook | None = None,
) -> None:
    """Feed each tracked pod's endpoint changes (conditions, removal) to its record."""
    report = StreamReport("endpointslices", namespace, metrics, health, on_item_error)
    known: dict[str, dict[str, Any]] = {}

    def changed(old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        with report.one_object(new or old):
            for observation in core.observe_endpoint_slice_change(old, new, now=clock()):
                metrics.observations.labels(stream="endpointslices").inc()
                if writer.get(observation.namespace, observation.pod_name) is not None:
                    writer.submit(observation)

    listed: dict[str, dict[str, Any]] = {}
    async for item in kube.endpoint_slices(namespace, report.restarted, report.up):
        if item.kind == "LISTING":
            listed = {}
        elif item.kind == "LISTED":
            for raw in item.items:
                with report.one_object(raw):
                    slim = _slim_slice(raw)
                    listed[str(slim["metadata"]["uid"])] = slim
        elif item.kind == "SYNCED":
            for uid, old in list(known.items()):
                if uid not in listed:
                    changed(old, None)
            for uid, new in listed.items():
                changed(known.get(uid), new)
            known, listed = listed, {}
        elif item.obj is not None:
            with report.one_object(item.obj):
                slim = _slim_slice(item.obj)
                uid = str(slim["metadata"]["uid"])
                if item.kind == "DELETED":
                    changed(known.pop(uid, None), None)
                else:
                    changed(known.get(uid), slim)
                    known[uid] = slim


async def follow_pods(
    kube: Kube,
    namespace: str | None,
    take: Callable[[dict[str, Any], bool], Awaitable[None]],
    missing: Callable[[str | None, list[str]], None],
    metrics: Metrics,
    *,
    health: StreamHealth | None = None,
    on_item_error: ItemErrorHook | None = None,
) -> None:
    """Every pod change, in order, each one: no state in between is skipped.

    A listing (at start and after 410 Gone) is taken pod by pod, then the records of pods it no
    longer shows are closed. A pod whose handling fails is logged and skipped.
    """
    report = StreamReport("pods", namespace, metrics, health, on_item_error)
    uids: list[str] = []
    async for item in kube.pods(namespace, report.restarted, report.up):
        if item.kind == "LISTING":
            uids = []
        elif item.kind == "LISTED":
            for raw in item.items:
                uids.append(str((raw.get("metadata") or {}).get("uid")))
                with report.one_object(raw):
                    await take(raw, False)
        elif item.kind == "SYNCED":
            with report.one_object():
                missing(namespace, uids)
            uids = []
        elif item.obj is not None:
            with report.one_object(item.obj):
                await take(item.obj, item.kind == "DELETED")


async def follow_records(
    kube: Kube,
    namespace: str | None,
    since: str,
    take: Callable[[dict[str, Any], bool], Awaitable[None]],
    metrics: Metrics,
    *,
    health: StreamHealth | None = None,
    on_item_error: ItemErrorHook | None = None,
) -> None:
    """Every record change after the start-up listing: users' records, spec edits, deletions.

    A listing after 410 Gone is taken record by record; a record deleted while the watch was
    gone stays known until a write finds it missing (and creates it again if its pod lives).
    A record whose handling fails is logged and skipped.
    """
    report = StreamReport("records", namespace, metrics, health, on_item_error)
    async for item in kube.records(namespace, report.restarted, since, report.up):
        for raw in _objects(item):
            with report.one_object(raw):
                await take(raw, False)
        if item.kind == "DELETED" and item.obj is not None:
            with report.one_object(item.obj):
                await take(item.obj, True)
