"""The one writer of records: coalesces status writes per record and never loses an update.

Observations go through the pure core at once (so facts are logged and counted as they happen);
the resulting status is written at most once per record per coalescing window, at once for
terminal facts, and on shutdown. A write carries the resourceVersion it was computed on: on a
conflict the record is read again and the window's observations are applied again to the fresh
status (the core is idempotent, so nothing is counted twice).

On a sick or shared cluster: a record that cannot be written (throttled, over a quota, refused
by an admission policy, too large, a hung request) waits through its own backoff, honouring
Retry-After, while every other record goes on being written; each failure is logged with its
reason, counted, and told on the record itself by a rate-limited Warning Event. What a record
keeps pending is bounded, and so is the shutdown flush.

Memory: only records that can still change are kept in full. A record whose pod is gone and
whose status is written is reduced to a stub (identity, resourceVersion, pod UID, removal and
creation times, retention, labels, and marks of the Events it counted); whatever arrives for it
later is kept pending and the record is read again from the API before it is written.

A pod's end: when the removal of a pod this writer saw go is settled (written, and kept in full
for the late Events), the record is handed to `on_ended` (the trace exporter) once, just before
it becomes a stub; `announce_ended` hands over the ones still waiting (shutdown).
"""

from __future__ import annotations

import array
import asyncio
import bisect
import dataclasses
import heapq
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from podtrail import core
from podtrail.core.clock import parse_time
from podtrail.shell import kube
from podtrail.shell.backoff import Backoff
from podtrail.shell.logs import get_logger
from podtrail.shell.metrics import Metrics

log = get_logger(__name__)

RecordKey = tuple[str, str]
EndedHook = Callable[[str, str, core.Record], None]
"""Called with (namespace, name, record) once a removed pod's record is settled."""
T = TypeVar("T")

_MAX_ATTEMPTS = 5
MAX_PENDING = 256
"""Pending observations kept per record; past it the oldest non-terminal ones are dropped."""
EVICT_AFTER_SECONDS = 30.0
"""How long a written record of a gone pod stays in full (late Events come within seconds)."""
WRITE_TIMEOUT_SECONDS = 90.0
"""The most one flush of one record may take (each API call has its own, shorter, bound)."""
WARNING_INTERVAL_SECONDS = 600.0
"""At most one Warning Event per record in this time."""
SHUTDOWN_FLUSH_SECONDS = 20.0
"""The default bound of the shutdown flush, inside the pod's 30 s grace period."""
EVENT_REASON = "RecordWriteFailed"


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
        self, namespace: str, name: str, changes: Mapping[str, str | None], resource_version: str
    ) -> dict[str, Any]:
        """Set these labels and remove those given as None; the record's others stay.

        Raises ConflictError when the record is no longer at this resourceVersion.
        """

    async def post_record_event(
        self,
        namespace: str,
        name: str,
        uid: str,
        reason: str,
        message: str,
        type: str = "Warning",
    ) -> None:
        """Post a core/v1 Event about the record."""


def failure_reason(error: BaseException) -> str:
    """Why an API call failed, in one word fit for a metric label."""
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, kube.ConflictError | kube.AlreadyExistsError):
        return "conflict"
    status = _status_of(error)
    text = _body_of(error).lower()
    if status == 429:
        return "throttled"
    if status == 403 and "exceeded quota" in text:
        return "quota"
    if status in (401, 403):
        return "forbidden"
    if status == 413 or (status is not None and "too large" in text):
        return "too-large"
    if status in (400, 422):
        return "invalid"
    if status is not None and status >= 500:
        return "server-error"
    if kube.is_transient(error):
        return "connection"
    return "other"


def failure_detail(error: BaseException) -> str:
    """The API's own message for a failure (its Status message), else the error, shortened."""
    body = _body_of(error)
    message = ""
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            message = parsed["message"]
    return (message or str(error) or type(error).__name__)[:300]


def _status_of(error: BaseException) -> int | None:
    for candidate in (error, error.__cause__):
        status = getattr(candidate, "status", None)
        if isinstance(status, int) and status > 0:
            return status
    return None


def _body_of(error: BaseException) -> str:
    for candidate in (error, error.__cause__):
        raw = getattr(candidate, "body", None)
        if isinstance(raw, bytes):
            return raw.decode("utf-8", "replace")
        if isinstance(raw, str):
            return raw
    return ""


def _retry_after(error: BaseException) -> float | None:
    hint = kube.retry_after(error)
    if hint is None and error.__cause__ is not None:
        hint = kube.retry_after(error.__cause__)
    return hint


@dataclasses.dataclass(slots=True)
class _Pending:
    """One observation not yet in the stored record.

    `applied`: already folded into the in-memory record (its facts logged); an observation for
    a stub is not, until the record is read again.
    """

    observation: core.Observation
    received_at: datetime
    received_monotonic: float
    applied: bool
    terminal: bool


@dataclasses.dataclass(slots=True)
class _Trouble:
    """A record whose last write failed: when to try again, and why it failed."""

    backoff: Backoff
    retry_at: float
    reason: str


@dataclasses.dataclass(slots=True)
class RecordState:
    """What the operator knows of one record: the stored side and what is not written yet.

    Records are kept in the core's model, not as status dicts: a status is read once when the
    record is loaded and rendered once per write, never per observation. A stub (`evicted`)
    keeps, in `stored` and `record`, only the pod's UID and removal.
    """

    namespace: str
    name: str
    stored: core.Record
    record: core.Record
    exists: bool = False
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    created_at: datetime | None = None
    stored_labels: dict[str, str] = dataclasses.field(default_factory=dict)
    labels: dict[str, str] | None = None
    synced_labels: dict[str, str] | None = None
    labels_due: bool = False
    ttl_seconds: int | None = None
    stored_outcome: str | None = None
    stored_stages: frozenset[str] = frozenset()
    pending: list[_Pending] = dataclasses.field(default_factory=list)
    due: float | None = None
    evicted: bool = False
    event_marks: array.array[int] | None = None
    trouble: _Trouble | None = None
    warned_at: float | None = None
    end_due: bool = False
    """Its pod's removal arrived here and the `on_ended` hook has not had the record yet."""

    @property
    def key(self) -> RecordKey:
        """Namespace and name."""
        return (self.namespace, self.name)

    @property
    def pod_gone_at(self) -> datetime | None:
        """When the stored record says its pod left the API."""
        removal = self.stored.removal
        return removal.time if removal is not None else None

    @property
    def needs_write(self) -> bool:
        """Whether the API lacks something this state holds.

        Labels: the pod's changed since they were last merged into the record's, or a label
        write is still due (the operator's own labels change with the record: see `_write`).
        """
        labels_differ = self.labels is not None and self.labels != self.synced_labels
        return bool(self.pending) or not self.exists or labels_differ or self.labels_due

    def adopt(self, record: Mapping[str, Any], limits: core.Limits) -> None:
        """Take the stored side from a record object read from the API."""
        meta = record.get("metadata") or {}
        spec = record.get("spec") or {}
        status = record.get("status") or {}
        self.exists = True
        self.evicted = False
        self.event_marks = None
        self.uid = meta.get("uid")
        self.generation = _generation(meta)
        self.resource_version = meta.get("resourceVersion")
        self.created_at = parse_time(meta.get("creationTimestamp"))
        self.stored = core.load_record(status, limits)
        self.stored_labels = dict(meta.get("labels") or {})
        self.synced_labels = None
        ttl = spec.get("ttlSecondsAfterPodDeletion")
        self.ttl_seconds = ttl if isinstance(ttl, int) else None
        self.settle_metrics(status)

    def settle_metrics(self, status: Mapping[str, Any]) -> None:
        """Remember what the stored status already counted (outcome, lifecycle stages)."""
        outcome = status.get("outcome")
        self.stored_outcome = outcome if isinstance(outcome, str) else None
        self.stored_stages = frozenset(lifecycle_stages(status))

    def evict(self) -> None:
        """Keep only what the sweep and the streams need; the API holds the rest."""
        skeleton = core.Record(pod_uid=self.stored.pod_uid, removal=self.stored.removal)
        marks = sorted(_event_mark(seen.id, seen.count) for seen in self.stored.seen_events)
        self.event_marks = array.array("q", marks) if marks else None
        self.stored = self.record = skeleton
        self.evicted = True
        self.labels = None
        self.stored_outcome = None
        self.stored_stages = frozenset()
        self.trouble = None

    def already_counted(self, observation: core.Observation) -> bool:
        """Whether a stub's record already counted this very Event (a relisted one)."""
        marks = self.event_marks
        if marks is None or not isinstance(observation, core.EventSeen):
            return False
        mark = _event_mark(observation.event_id, observation.count)
        at = bisect.bisect_left(marks, mark)
        return at < len(marks) and marks[at] == mark


STAGES = {
    "timeToScheduleSeconds": "timeToSchedule",
    "initSeconds": "init",
    "timeToReadySeconds": "timeToReady",
    "terminationSeconds": "termination",
}
"""Status durations → the lifecycle metric's stage label (the names the status had before)."""


def _generation(metadata: Mapping[str, Any]) -> int | None:
    generation = metadata.get("generation")
    return generation if isinstance(generation, int) else None


def lifecycle_stages(status: Mapping[str, Any]) -> dict[str, Any]:
    """A status's durations by stage name (old and new duration names alike)."""
    durations = status.get("durations")
    if not isinstance(durations, Mapping):
        return {}
    return {STAGES.get(str(name), str(name)): value for name, value in durations.items()}


def _event_mark(event_id: str, count: int) -> int:
    """A 64-bit mark of an Event as counted (its identity and count), for a stub's memory."""
    return hash((event_id, count))


class RecordWriter:
    """Applies observations to records and writes their statuses, coalesced per record.

    `sleep` waits on the same clock as `monotonic` (tests pass a fake clock's); `backoff` makes
    the per-record backoff of a record whose write failed.
    """

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
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff: Callable[[], Backoff] = Backoff,
        max_pending: int = MAX_PENDING,
        evict_after_seconds: float = EVICT_AFTER_SECONDS,
        write_timeout_seconds: float = WRITE_TIMEOUT_SECONDS,
        warning_interval_seconds: float = WARNING_INTERVAL_SECONDS,
        on_ended: EndedHook | None = None,
    ) -> None:
        self._store = store
        self._limits = limits
        self._window = window_seconds
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._new_backoff = backoff
        self._max_pending = max(1, max_pending)
        self._evict_after = evict_after_seconds
        self._write_timeout = write_timeout_seconds
        self._warning_interval = warning_interval_seconds
        self._on_ended = on_ended
        self._records: dict[RecordKey, RecordState] = {}
        self._stubs = 0
        self._queue: list[tuple[float, int, RecordKey]] = []
        self._sequence = 0
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: dict[RecordKey, asyncio.Task[None]] = {}
        self._unwritten: set[RecordKey] = set()  # records the API lags behind
        self._side_tasks: set[asyncio.Task[None]] = set()

    # --- what the handlers call ----------------------------------------------------------------

    def get(self, namespace: str, name: str) -> RecordState | None:
        """The known state of a record, if any (a stub included)."""
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
            # Our own writes come back through the watch: learn only the spec. The status and
            # the labels we hold go with our resourceVersion: every write is made at it, so a
            # change we have not seen (a user's label) fails it and is read afresh. An echo
            # can be older than what we hold (the watch lags our writes): its labels would
            # take back a user's change we already know of.
            ttl = (record.get("spec") or {}).get("ttlSecondsAfterPodDeletion")
            state.ttl_seconds = ttl if isinstance(ttl, int) else None
            state.generation = _generation(meta)
            return state
        self._load(state, record)
        gone_at = state.pod_gone_at
        if gone_at is not None and self._evictable(state):
            if (self._clock() - gone_at).total_seconds() >= self._evict_after:
                self._evict(state)  # ended long ago (a start-up listing): no need to hold it
            else:
                self._schedule(state, delay=self._evict_after)
        self._track(state)
        return state

    def knows_spec(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a record's metadata names the object and spec already held here.

        The records' watch carries metadata only; a record is read in full when this is False.
        Its spec moves `generation` (the status subresource does not), so our own status
        writes coming back are told apart from a user's spec edit without reading them.
        """
        state = self._records.get((str(metadata.get("namespace")), str(metadata.get("name"))))
        return (
            state is not None
            and state.exists
            and state.uid is not None
            and state.uid == metadata.get("uid")
            and state.generation is not None
            and state.generation == _generation(metadata)
        )

    def forget(self, namespace: str, name: str, uid: str | None = None) -> None:
        """A record was deleted: drop what is known of it (unless it is another object now)."""
        state = self._records.get((namespace, name))
        if state is not None and (uid is None or state.uid in (None, uid)) and not state.pending:
            self._drop(state.key)

    def submit(
        self, observation: core.Observation, *, labels: Mapping[str, str] | None = None
    ) -> tuple[core.Fact, ...]:
        """Apply one observation now; schedule the write. Returns the new facts.

        For a stub the observation waits, unapplied, until the record is read again in the
        flush; its facts are logged then (and not returned here).
        """
        key = (observation.namespace, observation.pod_name)
        state = self._records.get(key) or self._new_state(*key)
        if labels is not None:
            state.labels = dict(labels)
        received_at = self._clock()
        if state.evicted:
            if not state.already_counted(observation):
                terminal = isinstance(observation, core.PodGone)
                self._keep(
                    state, _Pending(observation, received_at, self._monotonic(), False, terminal)
                )
            self._track(state)
            if state.needs_write:
                self._schedule(state)
            return ()
        step = core.step(state.record, observation, now=received_at, limits=self._limits)
        if step.record is state.record:
            # Nothing new: no pending item (its facts are all in the record already), but a
            # record still missing or behind in the API keeps its write scheduled.
            self._track(state)
            if state.needs_write:
                self._schedule(state)
            return ()
        state.record = step.record
        if step.terminal:
            self._note_end(state, step.record)
        self._keep(
            state, _Pending(observation, received_at, self._monotonic(), True, step.terminal)
        )
        self._track(state)
        self._announce(key, step.facts)
        # A new record is created at once: an operator killed within its first window then
        # leaves a record that the next one completes (or ends DeletedUnobserved), not nothing.
        self._schedule(state, immediately=step.terminal or not state.exists)
        return step.facts

    def pending_count(self) -> int:
        """Records with something the API does not have yet."""
        return len(self._unwritten)

    def announce_ended(self) -> None:
        """Hand every removed pod's record not handed over yet to `on_ended` (at shutdown)."""
        for state in list(self._records.values()):
            self._announce_end(state)

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
                self._start_flush(state)
            self._wakeup.clear()
            await self._wait(self._queue[0][0] - now if self._queue else None)

    async def flush_all(self, timeout: float = SHUTDOWN_FLUSH_SECONDS) -> list[RecordKey]:
        """Write everything pending now (shutdown), for at most `timeout` seconds.

        Each record gets one try, backoff or not (one that fails is not tried again here).
        Returns, and logs, the records still unwritten when done or when the time is up.
        """
        deadline = asyncio.ensure_future(self._sleep(timeout))
        failed: set[RecordKey] = set()
        try:
            while not deadline.done():
                for key in list(self._unwritten):
                    if key not in self._in_flight and key not in failed:
                        self._launch(key)
                tasks = list(self._in_flight.values())
                if not tasks:
                    break
                round_keys = set(self._in_flight)
                gathered: asyncio.Future[Any] = asyncio.gather(*tasks, return_exceptions=True)
                waits: set[asyncio.Future[Any]] = {gathered, deadline}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                failed |= {key for key in round_keys if self._failing(key)}
        finally:
            deadline.cancel()
        left = sorted(self._unwritten)
        if left:
            log.warning(
                "records left unwritten at shutdown",
                count=len(left),
                records=[f"{namespace}/{name}" for namespace, name in left[:20]],
                timeout_seconds=timeout,
            )
        return left

    async def close(self) -> None:
        """End the writes still under way (after `flush_all`, when its time is up)."""
        tasks = [*self._in_flight.values(), *self._side_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _failing(self, key: RecordKey) -> bool:
        state = self._records.get(key)
        return state is not None and state.trouble is not None

    async def _wait(self, timeout: float | None) -> None:
        """Until woken (a sooner write was scheduled) or `timeout` seconds pass."""
        if timeout is None:
            await self._wakeup.wait()
            return
        waiter = asyncio.ensure_future(self._wakeup.wait())
        sleeper = asyncio.ensure_future(self._sleep(max(0.0, timeout)))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()

    def _schedule(
        self, state: RecordState, *, immediately: bool = False, delay: float | None = None
    ) -> None:
        """Flush the record after the window (or `delay`), never before its backoff ends."""
        wait = 0.0 if immediately else self._window if delay is None else delay
        due = self._monotonic() + wait
        if state.trouble is not None:
            due = max(due, state.trouble.retry_at)
        if state.due is not None and state.due <= due:
            return  # already due sooner
        state.due = due
        self._sequence += 1
        heapq.heappush(self._queue, (due, self._sequence, state.key))
        self._metrics.pending.set(self.pending_count())
        if self._queue[0][2] == state.key:
            self._wakeup.set()  # the loop sleeps until its earliest entry: this one is sooner

    def _start_flush(self, state: RecordState) -> None:
        if state.key in self._in_flight:
            return  # the flush under way reschedules what arrives meanwhile
        if state.trouble is not None and state.trouble.retry_at > self._monotonic():
            self._schedule(state, immediately=True)
            return
        self._launch(state.key)

    def _launch(self, key: RecordKey) -> None:
        task = asyncio.create_task(self._flush(key), name=f"podtrail-write-{key[0]}/{key[1]}")
        self._in_flight[key] = task
        task.add_done_callback(lambda _: self._flush_done(key))

    def _flush_done(self, key: RecordKey) -> None:
        """What arrived during the flush is written next; a settled ended record is evicted."""
        self._in_flight.pop(key, None)
        state = self._records.get(key)
        if state is None:
            return
        if state.needs_write:
            self._schedule(state)
        elif self._evictable(state):
            self._schedule(state, delay=self._evict_after)

    async def _flush(self, key: RecordKey) -> None:
        async with self._slots:
            state = self._records.get(key)
            if state is None:
                return
            if not state.needs_write:
                if self._evictable(state):
                    self._evict(state)
                return
            try:
                await self._bounded(self._write(state), self._write_timeout)
            except asyncio.CancelledError:
                raise
            except kube.NamespaceGoneError:
                # Its namespace is being deleted: so would the record be. Nothing to keep.
                self._metrics.writes.labels(kind="create", result="namespace-gone").inc()
                self._drop(key)
            except Exception as error:  # keep the facts; try again after the backoff
                self._write_failed(state, error)
            else:
                state.trouble = None
            finally:
                self._metrics.pending.set(self.pending_count())

    async def _bounded(self, work: Coroutine[Any, Any, T], seconds: float) -> T:
        """`work`, or TimeoutError after `seconds` on the writer's clock (then `work` is ended)."""
        task = asyncio.ensure_future(work)
        timer = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()
        if not task.done() or task.cancelled():
            raise TimeoutError(f"no answer within {seconds:g} s")
        return task.result()

    def _write_failed(self, state: RecordState, error: Exception) -> None:
        """Back off (honouring Retry-After), say why, and try again later."""
        reason = failure_reason(error)
        trouble = state.trouble or _Trouble(self._new_backoff(), 0.0, reason)
        delay = trouble.backoff.next_delay(_retry_after(error))
        trouble.retry_at = self._monotonic() + delay
        trouble.reason = reason
        state.trouble = trouble
        self._metrics.writes.labels(kind="status", result="error").inc()
        self._metrics.write_failures.labels(reason=reason).inc()
        detail = failure_detail(error)
        log.warning(
            "record cannot be written; will retry",
            namespace=state.namespace,
            record=state.name,
            reason=reason,
            status=_status_of(error),
            detail=detail,
            exists=state.exists,
            failures=trouble.backoff.failures,
            retry_in_seconds=round(delay, 3),
            pending=len(state.pending),
        )
        self._warn(state, reason, detail)
        state.due = None  # a sooner due set meanwhile would skip the backoff
        self._schedule(state, immediately=True)

    def _warn(self, state: RecordState, reason: str, detail: str) -> None:
        """A Warning Event on the record, at most one per interval; never waited for."""
        if not state.exists or state.uid is None:
            return  # a record that cannot be created has nothing to attach an Event to
        now = self._monotonic()
        if state.warned_at is not None and now - state.warned_at < self._warning_interval:
            return
        state.warned_at = now
        message = (
            f"podtrail cannot write this record's status ({reason}): {detail}. "
            "Its new facts are kept and written when the API accepts them."
        )
        post = self._post_event(state.namespace, state.name, state.uid, message)
        task = asyncio.create_task(post, name=f"podtrail-warn-{state.namespace}/{state.name}")
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _post_event(self, namespace: str, name: str, uid: str, message: str) -> None:
        try:
            post = self._store.post_record_event(namespace, name, uid, EVENT_REASON, message)
            await self._bounded(post, self._write_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the Event is a courtesy: the log line and metric remain
            log.debug(
                "record Event not posted", namespace=namespace, record=name, error=repr(error)
            )

    async def _write(self, state: RecordState) -> None:
        if state.evicted:
            await self._reload(state)
        for _ in range(_MAX_ATTEMPTS):
            if not state.exists:
                await self._create(state)
            labels = self._merge_labels(state)
            written = len(state.pending)
            record = state.record
            if record == state.stored:
                self._settle(state, written, record, None)
                if await self._write_labels(state, labels):
                    return
                continue
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
            if await self._write_labels(state, labels):
                return
        raise kube.ConflictError(f"gave up after {_MAX_ATTEMPTS} conflicting writes")

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
        self._track(state)
        if state.needs_write:
            self._schedule(state)

    def _count_settled(self, state: RecordState, status: Mapping[str, Any]) -> None:
        """Outcomes and lifecycle durations newly in the stored status, counted once."""
        self._metrics.observe_status_change(
            {"outcome": state.stored_outcome, "durations": dict.fromkeys(state.stored_stages)},
            {**status, "durations": lifecycle_stages(status)},
            state.namespace,
        )
        state.settle_metrics(status)

    async def _create(self, state: RecordState) -> None:
        own = core.operator_labels(state.record, self._limits)
        labels, _ = core.merge_labels({}, None, state.labels or {}, own)
        try:
            record = await self._store.create_record(state.namespace, state.name, labels)
            self._metrics.writes.labels(kind="create", result="ok").inc()
            state.adopt(record, self._limits)
        except kube.AlreadyExistsError:
            self._metrics.writes.labels(kind="create", result="exists").inc()
            await self._reload(state)

    def _merge_labels(self, state: RecordState) -> dict[str, str]:
        """The record's labels to have; the marks of the operator's go into the record.

        The marks reach the API with the status, before the labels they mark: a label is never
        written unmarked (it would then pass for a user's). See core/labels.py.
        """
        own = core.operator_labels(state.record, self._limits)
        labels, marks = core.merge_labels(
            state.stored_labels, state.stored.label_marks, state.labels, own
        )
        if marks != state.record.label_marks:
            state.record = dataclasses.replace(state.record, label_marks=marks)
        state.synced_labels = state.labels
        state.labels_due = labels != state.stored_labels
        return labels

    async def _write_labels(self, state: RecordState, labels: dict[str, str]) -> bool:
        """Write the labels if they changed; False if the record changed since it was read.

        The record is then read again and the caller merges the labels anew. Labels change a
        few times in a record's life: at its creation (with the record), then once its node is
        known and once its outcome is, and when the pod's labels change.
        """
        if not state.labels_due:
            return True
        # Only the keys that change, at the resourceVersion the merge was made from: a label a
        # user set since is one the merge has not seen, and must not be overwritten.
        changes: dict[str, str | None] = {
            key: value for key, value in labels.items() if state.stored_labels.get(key) != value
        }
        changes.update((key, None) for key in state.stored_labels if key not in labels)
        try:
            record = await self._store.patch_record_labels(
                state.namespace, state.name, changes, state.resource_version or ""
            )
        except kube.ConflictError:
            self._metrics.writes.labels(kind="labels", result="conflict").inc()
            await self._reload(state)
            return False
        self._metrics.writes.labels(kind="labels", result="ok").inc()
        meta = record.get("metadata") or {}
        state.resource_version = meta.get("resourceVersion")
        state.stored_labels = dict(meta.get("labels") or {})
        state.labels_due = False
        self._track(state)
        return True

    async def _reload(self, state: RecordState) -> None:
        record = await self._store.get_record(state.namespace, state.name)
        if record is None:
            self._unstub(state)
            state.exists = False
            state.stored = core.load_record(None, self._limits)
            state.record = self._replay(state)
        else:
            self._load(state, record)

    def _load(self, state: RecordState, record: Mapping[str, Any]) -> None:
        """Take a record read from the API and apply what is pending on top of it."""
        self._unstub(state)
        state.adopt(record, self._limits)
        state.record = self._replay(state)

    def _replay(self, state: RecordState) -> core.Record:
        """Apply pending observations again on the stored record (idempotent by design).

        The facts of an observation applied here for the first time (one that arrived for a
        stub) are logged and counted now.
        """
        record = state.stored
        ended = False
        for item in state.pending:
            step = core.step(record, item.observation, now=item.received_at, limits=self._limits)
            record = step.record
            if not item.applied:
                item.applied, item.terminal = True, step.terminal
                ended = ended or step.terminal
                self._announce(state.key, step.facts)
        if ended:
            self._note_end(state, record)
        return record

    def _note_end(self, state: RecordState, record: core.Record) -> None:
        """A terminal step: once its removal is in, the record goes to `on_ended` when settled."""
        if self._on_ended is not None and record.removal is not None:
            state.end_due = True

    def _announce_end(self, state: RecordState) -> None:
        if not state.end_due or self._on_ended is None:
            return
        state.end_due = False
        try:
            self._on_ended(state.namespace, state.name, state.record)
        except Exception as error:  # the hook's trouble must not stop the writes
            log.warning(
                "end of a record not handed over",
                namespace=state.namespace,
                record=state.name,
                error=repr(error),
            )

    def _announce(self, key: RecordKey, facts: tuple[core.Fact, ...]) -> None:
        for fact in facts:
            self._metrics.facts.labels(type=fact.type).inc()
            log.info("fact", namespace=key[0], pod=key[1], **fact.as_log())

    # --- what is held, and how much ------------------------------------------------------------

    def _keep(self, state: RecordState, item: _Pending) -> None:
        """Add a pending observation, within the per-record bound.

        Past the bound the oldest non-terminal items go, applied ones first. Dropping an
        applied item loses nothing written or logged: its facts are in the in-memory record,
        which is what the next write sends; the pending list is only replayed after a conflict
        or a reload, where at worst facts already logged miss the stored timeline. An unapplied
        item (for a stub whose record could not be read again for that long) is dropped only
        when no applied one is left, and counted apart. Identical unapplied items are kept once.
        """
        if not item.applied and any(
            not held.applied and held.observation == item.observation for held in state.pending
        ):
            return
        state.pending.append(item)
        excess = len(state.pending) - self._max_pending
        for applied in (True, False):
            if excess <= 0:
                return
            victims = [
                index
                for index, held in enumerate(state.pending)
                if held.applied is applied and not held.terminal
            ][:excess]
            for index in reversed(victims):
                del state.pending[index]
            excess -= len(victims)
            if victims:
                kind = "applied" if applied else "unapplied"
                self._metrics.pending_dropped.labels(kind=kind).inc(len(victims))

    def _track(self, state: RecordState) -> None:
        if self._records.get(state.key) is not state:
            return  # forgotten meanwhile
        if state.needs_write:
            self._unwritten.add(state.key)
        else:
            self._unwritten.discard(state.key)

    def _new_state(self, namespace: str, name: str) -> RecordState:
        empty = core.load_record(None, self._limits)
        state = RecordState(namespace=namespace, name=name, stored=empty, record=empty)
        self._records[(namespace, name)] = state
        self._count_records()
        return state

    def _drop(self, key: RecordKey) -> None:
        state = self._records.pop(key, None)
        if state is not None:
            self._announce_end(state)
        if state is not None and state.evicted:
            self._stubs -= 1
        self._unwritten.discard(key)
        self._count_records()

    @staticmethod
    def _evictable(state: RecordState) -> bool:
        """Ended (its pod's removal is stored), fully written, and not failing."""
        return (
            not state.evicted
            and state.exists
            and state.trouble is None
            and state.pod_gone_at is not None
            and not state.needs_write
            and state.record is state.stored
        )

    def _evict(self, state: RecordState) -> None:
        self._announce_end(state)  # the last moment the record is held in full
        state.evict()
        self._stubs += 1
        self._count_records()

    def _unstub(self, state: RecordState) -> None:
        if state.evicted:
            state.evicted = False
            state.event_marks = None
            self._stubs -= 1
            self._count_records()

    def _count_records(self) -> None:
        total = len(self._records)
        self._metrics.records.set(total)
        self._metrics.records_in_memory.labels(form="full").set(total - self._stubs)
        self._metrics.records_in_memory.labels(form="stub").set(self._stubs)
