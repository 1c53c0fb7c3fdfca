"""What the harness sees of the records (its own watch) and how it matches them to its writes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp

from bench.kubeapi import ApiError, Kube
from bench.lifecycle import RUN_LABEL, Expect

RECORDS = "/apis/podtrail.io/v1alpha1/podlifecyclerecords"


@dataclasses.dataclass
class Arrival:
    """New timeline content seen in a record: an entry added, or an entry's count raised."""

    namespace: str
    pod: str
    type: str
    container: str | None
    times: int
    seen: float


@dataclasses.dataclass
class RecordView:
    """The harness's copy of one record."""

    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    writes: list[float] = dataclasses.field(default_factory=list)
    bare_writes: int = 0  # writes that added no timeline content
    phase: str | None = None
    restarts: int | None = None
    ready: int | None = None
    uid: str | None = None
    keys_duplicated: int = 0


class RecordWatch:
    """List + watch of this run's records (selected by the run label they copy from the pods)."""

    def __init__(self, kube: Kube, run_id: str) -> None:
        self.kube = kube
        self.params = {"labelSelector": f"{RUN_LABEL}={run_id}"}
        self.views: dict[tuple[str, str], RecordView] = {}
        self.arrivals: list[Arrival] = []
        self.updates = 0
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        """Start watching in the background."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                listing = await self.kube.list_all(RECORDS, self.params)
                now = time.monotonic()
                for obj in listing["items"]:
                    self._see(obj, now, listed=True)
                self.ready.set()
                async for kind, obj, seen in self.kube.watch(
                    RECORDS, self.params, resource_version=listing["resourceVersion"]
                ):
                    if kind == "RELIST":
                        break
                    if kind == "DELETED":
                        meta = obj.get("metadata") or {}
                        self.views.pop((meta.get("namespace"), meta.get("name")), None)
                        continue
                    self._see(obj, seen, listed=False)
            except (TimeoutError, ApiError, aiohttp.ClientError, OSError):
                self.restarts += 1
                await asyncio.sleep(1.0)  # e.g. 429 while the API server (re)initialises

    def _see(self, obj: dict[str, Any], seen: float, *, listed: bool) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        status = obj.get("status") or {}
        view = self.views.get(key)
        if view is None:
            view = self.views[key] = RecordView()
        counts: dict[str, int] = {}
        added: list[Arrival] = []
        timeline = status.get("timeline") or []
        keys = (status.get("tracking") or {}).get("timelineKeys") or []
        if len(keys) != len(timeline):  # a record written before the keys moved to tracking
            keys = [entry.get("key") for entry in timeline]
        for entry, entry_key in zip(timeline, keys, strict=True):
            fact_key = str(entry_key)
            if fact_key in counts:
                view.keys_duplicated += 1
            count = int(entry.get("count") or 1)
            counts[fact_key] = count
            before = view.counts.get(fact_key, 0)
            if count > before:
                added.append(
                    Arrival(
                        key[0],
                        key[1],
                        str(entry.get("type")),
                        entry.get("container"),
                        count - before,
                        seen,
                    )
                )
        # Entries dropped by the timeline cap stay counted, so they are not seen as new again.
        view.counts.update(counts)
        view.phase = status.get("phase")
        view.restarts = (status.get("summary") or {}).get("restarts")
        view.ready = (status.get("summary") or {}).get("readyContainers")
        view.uid = status.get("podUID")
        if not listed:
            self.updates += 1
            view.writes.append(seen)
            if not added:
                view.bare_writes += 1
        self.arrivals.extend(added)


def raw_watch_log(
    path: Path,
) -> tuple[float | None, dict[str, float], dict[tuple[str, str], float]]:
    """(synced at, first time seen by resourceVersion, DELETED time by pod) from the floor's log."""
    synced = None
    by_rv: dict[str, float] = {}
    deleted: dict[tuple[str, str], float] = {}
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 4:
                continue
            kind, name, rv, when = parts
            if kind == "SYNCED":
                synced = float(when)
                continue
            by_rv.setdefault(rv, float(when))
            if kind == "DELETED":
                namespace, _, pod = name.partition("/")
                deleted[(namespace, pod)] = float(when)
    return synced, by_rv, deleted


def raw_watch_list_cost(path: Path) -> tuple[int, float] | None:
    """(pods listed, CPU seconds of the list) from the first line of the floor's log."""
    with contextlib.suppress(FileNotFoundError, ValueError), open(path) as f:
        kind, pods, cpu, _ = f.readline().split()
        if kind == "SYNCED" and cpu != "-":
            return int(pods), float(cpu)
    return None


def match(
    expects: Iterable[Expect], arrivals: Iterable[Arrival]
) -> tuple[list[Expect], list[Expect]]:
    """Pair each expectation with the first later arrival of its type in its pod's record.

    Returns (matched, unmatched); matched ones have `seen` set.
    """
    pending: dict[tuple[str, str, str, str | None], list[Expect]] = collections.defaultdict(list)
    for expect in sorted(
        (e for e in expects if e.start is not None), key=lambda e: float(e.start or 0)
    ):
        pending[(expect.namespace, expect.pod, expect.type, expect.container)].append(expect)
    matched: list[Expect] = []
    for arrival in sorted(arrivals, key=lambda a: a.seen):
        queue = pending.get((arrival.namespace, arrival.pod, arrival.type, arrival.container))
        if not queue:
            continue
        for _ in range(arrival.times):
            if not queue or float(queue[0].start or 0) > arrival.seen + 0.001:
                break
            expect = queue.pop(0)
            expect.seen = arrival.seen
            matched.append(expect)
    unmatched = [e for queue in pending.values() for e in queue]
    return matched, unmatched


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max (None when there are no values)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1]}


def record_sizes(items: list[dict[str, Any]]) -> dict[str, float | None]:
    """p50/max of the records' JSON size in KiB (whole object; and the status alone)."""
    whole = sorted(len(json.dumps(item, separators=(",", ":"))) / 1024 for item in items)
    status = sorted(
        len(json.dumps(item.get("status") or {}, separators=(",", ":"))) / 1024 for item in items
    )
    if not whole:
        return {"p50": None, "max": None, "status_p50": None, "status_max": None}
    return {
        "p50": whole[len(whole) // 2],
        "max": whole[-1],
        "status_p50": status[len(status) // 2],
        "status_max": status[-1],
    }


def min_gap(times: list[float]) -> float | None:
    """The shortest interval between two consecutive writes of one record."""
    ordered = sorted(times)
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    return min(gaps) if gaps else None
