"""The one writer of records: coalesces status writes per record and never loses an update.

Observations go through the pure core at once (so facts are logged and counted as they happen);
the resulting status is written at most once per record per coalescing window, at once for
terminal facts, and on shutdown. A write carries the resourceVersion it was computed on: on a
conflict the record is read again and the window's observations are applied again to the fresh
status (the core is idempotent, so nothing is counted twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from podtrail import core
from podtrail.shell import kube
from podtrail.shell.logs import get_logger
from podtrail.shell.metrics import Metrics

log = get_logger(__name__)

RecordKey = tuple[str, str]
_MAX_ATTEMPTS = 5


class RecordStore(Protocol):
    """What the writer needs of the API (kube.Kube has it; tests give a fake)."""

    async def get_record(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The record, or None."""

    async def create_record(
        self, namespace: str, name: str, labels: Mapping[str, str]
    ) -> dict[str, Any]:
        """A new record; raises AlreadyExistsError."""

    async def replace_record_status(
        self, namespace: str, name: str, resource_version: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Write the status; raises ConflictError or NotFoundError."""

    async def patch_record_labels(
        self, namespace: str, name: str, labels: Mapping[str, str]
    ) -> dict[str, Any]:
        """Make the record's labels exactly these."""


@dataclasses.dataclass(slots=True)
class _Pending:
    observation: core.Observation
    received_at: datetime
    received_monotonic: float


@dataclasses.dataclass(slots=True)
class RecordState:
    """What the operator knows of one record: the stored side and what is not written yet.

    Records are kept in the core's model, not as status dicts: a status is read once when the
    record is loaded and rendered once per write, never per observation.
    """

    namespace: str
    name: str
    stored: core.Record
    record: core.Record
    exists: bool = False
    uid: str | None = None
    resource_version: str | None = None
    stored_labels: dict[str, str] = dataclasses.field(default_factory=dict)
    labels: dict[str, str] | None = None
    ttl_seconds: int | None = None
    stored_outcome: str | None = None
    stored_stages: frozenset[str] = frozenset()
    pending: list[_Pending] = dataclasses.field(default_factory=list)
    due: float | None = None

    @property
    def key(self) -> RecordKey:
        """Namespace and name."""
        return (self.namespace, self.name)

    @property
    def pod_gone_at(self) -> datetime | None:
        """When the stored record says its pod left the API."""
        removal = self.stored.removal
        return removal.time if removal is not None else None

    def adopt(self, record: Mapping[str, Any], limits: core.Limits) -> None:
        """Take the stored side from a record object read from the API."""
        meta = record.get("metadata") or {}
        spec = record.get("spec") or {}
        status = record.get("status") or {}
        self.exists = True
        self.uid = meta.get("uid")
        self.resource_version = meta.get("resourceVersion")
        self.stored = core.load_record(status, limits)
        self.stored_labels = dict(meta.get("labels") or {})
        ttl = spec.get("ttlSecondsAfterPodDeletion")
        self.ttl_seconds = ttl if isinstance(ttl, int) else None
        self.settle_metrics(status)

    def settle_metrics(self, status: Mapping[str, Any]) -> None:
        """Remember what the stored status already counted (outcome, lifecycle stages)."""
        outcome = status.get("outcome")
        self.stored_outcome = outcome if isinstance(outcome, str) else None
        durations = status.get("durations")
        self.stored_stages = frozenset(durations) if isinstance(durations, Mapping) else frozenset()


class RecordWriter:
    """Applies observations to records and writes their statuses, coalesced per record."""

    def __init__(
        self,
        store: RecordStore,
        *,
        limits: core.Limits,
        window_seconds: float,
        concurrency: int,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._limits = limits
        self._window = window_seconds
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._records: dict[RecordKey, RecordState] = {}
        self._queue: list[tuple[float, int, RecordKey]] = []
        self._sequence = 0
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: dict[RecordKey, asyncio.Task[None]] = {}
        self._unwritten: set[RecordKey] = set()  # records with pending observations

    # --- what the handlers call ----------------------------------------------------------------

    def get(self, namespace: str, name: str) -> RecordState | None:
        """The known state of a record, if any."""
        return self._records.get((namespace, name))

    def records(self) -> Iterator[RecordState]:
        """Every record known."""
        return iter(list(self._records.values()))

    def adopt(self, record: Mapping[str, Any]) -> RecordState:
        """Learn of a record that exists in the API (at start-up, or one a user created)."""
        meta = record.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        state = self._records.get(key) or self._new_state(*key)
        if state.exists and state.uid == meta.get("uid"):
            # Our own writes come back through the watch: learn only the spec (the status we
            # hold is as new or newer; a conflict on the next write re-reads it if not).
            ttl = (record.get("spec") or {}).get("ttlSecondsAfterPodDeletion")
            state.ttl_seconds = ttl if isinstance(ttl, int) else None
            return state
        state.adopt(record, self._limits)
        state.record = self._replay(state.stored, state.pending)
        return state

    def _new_state(self, namespace: str, name: str) -> RecordState:
        empty = core.load_record(None, self._limits)
        state = RecordState(namespace=namespace, name=name, stored=empty, record=empty)
        self._records[(namespace, name)] = state
        self._metrics.records.set(len(self._records))
        return state

    def forget(self, namespace: str, name: str, uid: str | None = None) -> None:
        """A record was deleted: drop what is known of it (unless it is another object now)."""
        state = self._records.get((namespace, name))
        if state is not None and (uid is None or state.uid in (None, uid)) and not state.pending:
            del self._records[(namespace, name)]
            self._metrics.records.set(len(self._records))

    def submit(
        self, observation: core.Observation, *, labels: Mapping[str, str] | None = None
    ) -> tuple[core.Fact, ...]:
        """Apply one observation now; schedule the write. Returns the new facts."""
        key = (observation.namespace, observation.pod_name)
        state = self._records.get(key) or self._new_state(*key)
        if labels is not None:
            state.labels = dict(labels)
        received_at = self._clock()
        step = core.step(state.record, observation, now=received_at, limits=self._limits)
        labels_changed = state.labels is not None and state.labels != state.stored_labels
        if step.record is state.record and state.exists and not labels_changed:
            return ()
        state.record = step.record
        state.pending.append(_Pending(observation, received_at, self._monotonic()))
        self._unwritten.add(key)
        for fact in step.facts:
            self._metrics.facts.labels(type=fact.type).inc()
            log.info("fact", namespace=key[0], pod=key[1], **fact.as_log())
        self._schedule(state, immediately=step.terminal)
        return step.facts

    # --- the flushing loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Write records as their windows close, until cancelled."""
        while True:
            now = self._monotonic()
            while self._queue and self._queue[0][0] <= now:
                due, _, key = heapq.heappop(self._queue)
                state = self._records.get(key)
                if state is None or state.due != due:
                    continue  # rescheduled or forgotten meanwhile
                state.due = None
                self._start_flush(key)
            self._wakeup.clear()
            timeout = self._queue[0][0] - now if self._queue else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def flush_all(self) -> None:
        """Write everything pending now (shutdown)."""
        for state in list(self._records.values()):
            if state.pending:
                state.due = None
                self._start_flush(state.key)
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight.values()), return_exceptions=True)

    def pending_count(self) -> int:
        """Records with unwritten facts."""
        return len(self._unwritten)

    def _schedule(self, state: RecordState, *, immediately: bool) -> None:
        due = self._monotonic() + (0.0 if immediately else self._window)
        if state.due is not None and state.due <= due:
            return  # already due sooner
        state.due = due
        self._sequence += 1
        heapq.heappush(self._queue, (due, self._sequence, state.key))
        self._metrics.pending.set(self.pending_count())
        self._wakeup.set()

    def _start_flush(self, key: RecordKey) -> None:
        if key in self._in_flight:
            state = self._records.get(key)
            if state is not None:
                self._schedule(state, immediately=False)
            return
        task = asyncio.create_task(self._flush(key), name=f"podtrail-write-{key[0]}/{key[1]}")
        self._in_flight[key] = task
        task.add_done_callback(lambda _: self._in_flight.pop(key, None))

    async def _flush(self, key: RecordKey) -> None:
        async with self._slots:
            state = self._records.get(key)
            if state is None or not state.pending:
                return
            try:
                await self._write(state)
            except asyncio.CancelledError:
                raise
            except kube.NamespaceGoneError:
                # Its namespace is being deleted: so would the record be. Nothing to keep.
                self._metrics.writes.labels(kind="create", result="namespace-gone").inc()
                self._records.pop(key, None)
                self._unwritten.discard(key)
                self._metrics.records.set(len(self._records))
            except Exception as error:  # keep the facts; try again after a window
                self._metrics.writes.labels(kind="status", result="error").inc()
                log.warning(
                    "record write failed; will retry",
                    namespace=key[0],
                    record=key[1],
                    error=repr(error),
                )
                self._schedule(state, immediately=False)
            finally:
                self._metrics.pending.set(self.pending_count())

    async def _write(self, state: RecordState) -> None:
        for _ in range(_MAX_ATTEMPTS):
            if not state.exists:
                await self._create(state)
            if state.labels is not None and state.labels != state.stored_labels:
                await self._write_labels(state)
            written = len(state.pending)
            record = state.record
            if record == state.stored:
                self._settle(state, written, record, None)
                return
            status = core.render_record(record, self._limits)
            try:
                stored = await self._store.replace_record_status(
                    state.namespace, state.name, state.resource_version or "", status
                )
            except kube.ConflictError:
                self._metrics.writes.labels(kind="status", result="conflict").inc()
                await self._reload(state)
                continue
            except kube.NotFoundError:
                self._metrics.writes.labels(kind="status", result="gone").inc()
                state.exists = False
                continue
            self._metrics.writes.labels(kind="status", result="ok").inc()
            meta = stored.get("metadata") or {}
            state.resource_version = meta.get("resourceVersion")
            self._settle(state, written, record, status)
            return
        raise kube.KubeError(f"gave up after {_MAX_ATTEMPTS} conflicting writes")

    def _settle(
        self, state: RecordState, written: int, record: core.Record, status: dict[str, Any] | None
    ) -> None:
        now = self._monotonic()
        for item in state.pending[:written]:
            self._metrics.write_lag.observe(max(0.0, now - item.received_monotonic))
        state.stored = record
        if status is not None:
            self._count_settled(state, status)
        del state.pending[:written]
        if state.pending:
            self._schedule(state, immediately=False)
        else:
            self._unwritten.discard(state.key)

    def _count_settled(self, state: RecordState, status: Mapping[str, Any]) -> None:
        """Outcomes and lifecycle durations newly in the stored status, counted once."""
        self._metrics.observe_status_change(
            {"outcome": state.stored_outcome, "durations": dict.fromkeys(state.stored_stages)},
            status,
        )
        state.settle_metrics(status)

    async def _create(self, state: RecordState) -> None:
        try:
            record = await self._store.create_record(
                state.namespace, state.name, state.labels or {}
            )
            self._metrics.writes.labels(kind="create", result="ok").inc()
            state.adopt(record, self._limits)
        except kube.AlreadyExistsError:
            self._metrics.writes.labels(kind="create", result="exists").inc()
            await self._reload(state)

    async def _write_labels(self, state: RecordState) -> None:
        record = await self._store.patch_record_labels(
            state.namespace, state.name, state.labels or {}
        )
        self._metrics.writes.labels(kind="labels", result="ok").inc()
        meta = record.get("metadata") or {}
        state.resource_version = meta.get("resourceVersion")
        state.stored_labels = dict(meta.get("labels") or {})

    async def _reload(self, state: RecordState) -> None:
        record = await self._store.get_record(state.namespace, state.name)
        if record is None:
            state.exists = False
            state.stored = core.load_record(None, self._limits)
        else:
            state.adopt(record, self._limits)
        state.record = self._replay(state.stored, state.pending)

    def _replay(self, record: core.Record, pending: list[_Pending]) -> core.Record:
        """Apply not-yet-written observations again on a fresh record (idempotent by design)."""
        for item in pending:
            record = core.step(
                record, item.observation, now=item.received_at, limits=self._limits
            ).record
        return record
