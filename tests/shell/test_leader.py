"""Leader election against an in-memory Lease API on a fake clock (no real sleeps)."""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from podtrail.shell import handlers, kube
from podtrail.shell.health import StreamHealth
from podtrail.shell.kube import Kube
from podtrail.shell.leader import ElectionConfig, LeaderElector, default_identity
from podtrail.shell.metrics import Metrics
from podtrail.shell.settings import PodtrailSettings

NS, NAME = "podtrail-system", "podtrail"
LEASE, RENEW, RETRY = 15.0, 10.0, 2.0


class FakeClock:
    """Virtual time: sleepers wait until the test moves the clock to their wake-up time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept.append(seconds)
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        await woken

    async def settle(self) -> None:
        """Run every task until each waits on the clock (the fake API answers at once)."""
        for _ in range(50):
            await asyncio.sleep(0)

    async def advance(self) -> None:
        """Move to the next wake-up and wake that sleeper."""
        await self.settle()
        while self._sleepers:
            when, _, woken = heapq.heappop(self._sleepers)
            if not woken.done():
                self.now = max(self.now, when)
                woken.set_result(None)
                break
        else:
            raise AssertionError("nothing is waiting on the clock")
        await self.settle()


def status_error(status: int, retry_after: str | None = None) -> ApiException:
    error = ApiException(status=status, reason="test")
    error.headers = {"Retry-After": retry_after} if retry_after else {}
    return error


class FakeLeases:
    """One Lease kept like the API server keeps it: resourceVersions and 409 on stale writes."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.fail_next: list[Exception] = []
        self.calls: list[str] = []

    def _maybe_fail(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    def _store(self, lease: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(dict(lease))
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append("get")
        self._maybe_fail()
        return copy.deepcopy(self.lease)

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        self._maybe_fail()
        if self.lease is not None:
            raise kube.AlreadyExistsError("exists")
        return self._store(lease)

    async def replace_lease(
        self, namespace: str, name: str, lease: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.calls.append("replace")
        self._maybe_fail()
        assert self.lease is not None
        if lease["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise kube.ConflictError("conflict")
        return self._store(lease)

    def holder(self) -> str:
        assert self.lease is not None
        return str(self.lease["spec"].get("holderIdentity") or "")

    def set_holder(self, holder: str, *, duration: int = 15) -> None:
        """Another replica writes the Lease (as if it renewed or took it over)."""
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "renewTime": f"2026-01-01T00:00:{self.version % 60:02d}.000000Z",
            "leaseTransitions": 1,
        }
        metadata = {"name": NAME, "namespace": NS, "resourceVersion": str(self.version)}
        self._store({"metadata": (self.lease or {}).get("metadata") or metadata, "spec": spec})


def elector(leases: FakeLeases, clock: FakeClock, identity: str = "me") -> LeaderElector:
    config = ElectionConfig(
        identity=identity,
        lease_name=NAME,
        lease_namespace=NS,
        lease_seconds=LEASE,
        renew_deadline_seconds=RENEW,
        retry_period_seconds=RETRY,
    )
    return LeaderElector(
        leases,
        config,
        clock=clock.monotonic,
        sleep=clock.sleep,
        wall=clock.wall,
        jitter=lambda: 0.0,
    )


async def until(condition: Callable[[], bool], clock: FakeClock, limit: float = 120) -> float:
    """Move the clock until `condition` holds; the fake seconds it took."""
    start = clock.now
    await clock.settle()
    while not condition():
        assert clock.now - start <= limit, "the condition never held"
        await clock.advance()
    return clock.now - start


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def leases() -> FakeLeases:
    return FakeLeases()


async def running(candidate: LeaderElector) -> asyncio.Task[None]:
    task = asyncio.create_task(candidate.run())
    await asyncio.sleep(0)
    return task


async def stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_takes_a_missing_lease_at_once(leases: FakeLeases, clock: FakeClock) -> None:
    me = elector(leases, clock)
    task = await running(me)
    assert await until(lambda: me.is_leader, clock) == 0
    assert leases.lease is not None
    spec = leases.lease["spec"]
    assert spec["holderIdentity"] == "me"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"] == "2026-01-01T00:16:40.000000Z"
    await stop(task)


async def test_takes_a_released_lease_at_once(leases: FakeLeases, clock: FakeClock) -> None:
    leases.set_holder("")
    me = elector(leases, clock)
    task = await running(me)
    assert await until(lambda: me.is_leader, clock) == 0
    assert leases.holder() == "me"
    assert leases.lease is not None and leases.lease["spec"]["leaseTransitions"] == 2
    await stop(task)


async def test_renews_every_retry_period_keeping_the_acquire_time(
    leases: FakeLeases, clock: FakeClock
) -> None:
    me = elector(leases, clock)
    task = await running(me)
    await until(lambda: me.is_leader, clock)
    assert leases.lease is not None
    acquired = leases.lease["spec"]["acquireTime"]
    versions = leases.version
    await until(lambda: clock.now >= 1030, clock)
    assert me.is_leader
    assert leases.version - versions == pytest.approx(15, abs=1)  # one write per 2 s
    assert leases.lease["spec"]["acquireTime"] == acquired
    assert leases.lease["spec"]["renewTime"] > acquired
    assert set(clock.slept) == {RETRY}
    await stop(task)


async def test_stands_by_while_another_renews(leases: FakeLeases, clock: FakeClock) -> None:
    leases.set_holder("other")
    me = elector(leases, clock)
    task = await running(me)
    for _ in range(30):  # a minute of the other renewing every 2 s
        await until(lambda: clock.now >= 1000 + RETRY * (_ + 1), clock)
        leases.set_holder("other")
    assert not me.is_leader
    assert leases.holder() == "other"
    assert "replace" not in leases.calls and "create" not in leases.calls
    await stop(task)


async def test_takes_over_after_the_holder_stops_renewing(
    leases: FakeLeases, clock: FakeClock
) -> None:
    leases.set_holder("other")
    me = elector(leases, clock)
    task = await running(me)
    took = await until(lambda: me.is_leader, clock)
    # Seen at the first read; expired on this replica's clock one lease duration later, and
    # noticed at the next retry.
    assert LEASE <= took <= LEASE + RETRY
    assert leases.holder() == "me"
    assert leases.lease is not None and leases.lease["spec"]["leaseTransitions"] == 2
    await stop(task)


async def test_expiry_ignores_the_timestamps_in_the_lease(
    leases: FakeLeases, clock: FakeClock
) -> None:
    # A renewTime far in the past (a skewed clock elsewhere) does not make the lease expired:
    # only this replica's clock, from when it saw the lease change, counts.
    leases.set_holder("other")
    assert leases.lease is not None
    leases.lease["spec"]["renewTime"] = "2000-01-01T00:00:00.000000Z"
    me = elector(leases, clock)
    task = await running(me)
    took = await until(lambda: me.is_leader, clock)
    assert took >= LEASE
    await stop(task)


async def test_two_replicas_one_leader_and_failover(leases: FakeLeases, clock: FakeClock) -> None:
    first, second = elector(leases, clock, "first"), elector(leases, clock, "second")
    one, two = await running(first), await running(second)
    await until(lambda: first.is_leader or second.is_leader, clock)
    await until(lambda: clock.now >= 1060, clock)
    assert [first.is_leader, second.is_leader].count(True) == 1
    leader, standby, leader_task = (first, second, one) if first.is_leader else (second, first, two)
    await stop(leader_task)  # killed: no release
    took = await until(lambda: standby.is_leader, clock)
    assert took <= LEASE + 2 * RETRY * 1.2 + RETRY
    assert leases.holder() == standby.config.identity
    assert leader.is_leader  # it never learnt (it was killed), but it no longer renews
    await stop(one, two)


async def test_loses_the_lease_on_seeing_another_holder(
    leases: FakeLeases, clock: FakeClock
) -> None:
    me = elector(leases, clock)
    task = await running(me)
    await until(lambda: me.is_leader, clock)
    leases.set_holder("usurper")
    took = await until(lambda: not me.is_leader, clock)
    assert took <= RETRY
    assert leases.holder() == "usurper"
    await stop(task)


async def test_loses_the_lease_on_a_conflict_with_another_writer(
    leases: FakeLeases, clock: FakeClock
) -> None:
    me = elector(leases, clock)
    task = await running(me)
    await until(lambda: me.is_leader, clock)
    real_get = leases.get_lease

    async def usurped_after_read(namespace: str, name: str) -> dict[str, Any] | None:
        seen = await real_get(namespace, name)
        leases.get_lease = real_get  # type: ignore[method-assign]
        leases.set_holder("usurper")  # written between our read and our write
        return seen

    leases.get_lease = usurped_after_read  # type: ignore[method-assign]
    calls = len(leases.calls)
    took = await until(lambda: not me.is_leader, clock)
    assert took <= RETRY
    # Our write is refused (409), the Lease is read again at once and shows the new holder.
    assert leases.calls[calls : calls + 3] == ["get", "replace", "get"]
    assert leases.holder() == "usurper"
    await stop(task)


async def test_a_conflict_with_itself_still_holding_is_not_a_loss(
    leases: FakeLeases, clock: FakeClock
) -> None:
    me = elector(leases, clock)
    task = await running(me)
    await until(lambda: me.is_leader, clock)

    real_get = leases.get_lease

    async def get_then_race(namespace: str, name: str) -> dict[str, Any] | None:
        seen = await real_get(namespace, name)
        leases.get_lease = real_get  # type: ignore[method-assign]
        assert leases.lease is not None
        leases._store(leases.lease)  # someone touched the lease (a label): version bumps
        return seen

    leases.get_lease = get_then_race  # type: ignore[method-assign]
    await until(lambda: clock.now >= 1010, clock)
    assert me.is_leader
    assert leases.holder() == "me"
    await stop(task)


async def test_renew_failures_past_the_deadline_lose_the_lease(
    leases: FakeLeases, clock: FakeClock
) -> None:
    me = elector(leases, clock)
    task = await running(me)
    await until(lambda: me.is_leader, clock)
    acquired = clock.now
    leases.fail_next = [status_error(500) for _ in range(1000)]
    await until(lambda: not me.is_leader, clock)
    # Lost at the renew deadline counted from the last successful renewal, which is before the
    # lease (15 s) runs out on a standby's clock.
    assert RENEW <= clock.now - acquired <= RENEW + RETRY
    assert clock.now - acquired < LEASE
    await stop(task)


async def test_a_short_outage_within_the_deadline_keeps_the_lease(
    leases: FakeLeases, clock: FakeClock
) -> None:
    me = elector(leases, clock)
    task = await running(me)
    await until(lambda: me.is_leader, clock)
    leases.fail_next = [status_error(503), TimeoutError(), status_error(500)]
    await until(lambda: not leases.fail_next, clock)
    await until(lambda: clock.now >= 1030, clock)
    assert me.is_leader
    await stop(task)


async def test_a_leader_cut_off_by_a_long_outage_leads_again_soon_after_it(
    leases: FakeLeases, clock: FakeClock
) -> None:
    me = elector(leases, clock)
    task = await running(me)
    await until(lambda: me.is_leader, clock)
    leases.fail_next = [TimeoutError() for _ in range(40)]  # minutes of a dead API server
    await until(lambda: not me.is_leader, clock)
    await until(lambda: not leases.fail_next, clock, limit=600)
    back = clock.now
    await until(lambda: me.is_leader, clock)
    # Standing by, it kept trying at a standby's pace, not at the 30 s backoff cap.
    assert clock.now - back <= RETRY * 2.2 + 0.01
    assert leases.holder() == me.config.identity
    await stop(task)


async def test_transient_errors_back_off_and_honour_retry_after(
    leases: FakeLeases, clock: FakeClock
) -> None:
    leases.fail_next = [status_error(429, retry_after="7"), status_error(500), status_error(500)]
    me = elector(leases, clock)
    task = await running(me)
    await until(lambda: me.is_leader, clock)
    assert clock.slept[0] >= 7  # told to come back in 7 s
    assert all(delay >= RETRY for delay in clock.slept)  # never a hot loop
    assert len(leases.calls) == 3 + 2  # three failed reads, then a read and a create
    await stop(task)


async def test_forbidden_is_retried_slowly_not_fatal(leases: FakeLeases, clock: FakeClock) -> None:
    leases.fail_next = [status_error(403) for _ in range(8)]
    me = elector(leases, clock)
    task = await running(me)
    await until(lambda: me.is_leader, clock, limit=600)
    waits = clock.slept[:8]  # then the leader's first renew period
    assert waits == sorted(waits) and waits[-1] > RETRY  # slower and slower
    assert leases.calls.count("get") == 9
    await stop(task)


async def test_release_lets_the_standby_take_over_at_once(
    leases: FakeLeases, clock: FakeClock
) -> None:
    first, second = elector(leases, clock, "first"), elector(leases, clock, "second")
    one = await running(first)
    await until(lambda: first.is_leader, clock)
    two = await running(second)
    await until(lambda: clock.now >= 1020, clock)
    assert not second.is_leader
    await stop(one)
    assert await first.release()
    assert not first.is_leader
    assert leases.holder() == ""
    assert leases.lease is not None and leases.lease["spec"]["leaseDurationSeconds"] == 1
    took = await until(lambda: second.is_leader, clock)
    assert took <= RETRY * (1 + 1.2)  # at its next retry, not after the lease duration
    await stop(two)


async def test_release_leaves_a_lease_taken_over_meanwhile(
    leases: FakeLeases, clock: FakeClock
) -> None:
    me = elector(leases, clock)
    task = await running(me)
    await until(lambda: me.is_leader, clock)
    await stop(task)
    leases.set_holder("other")
    assert not await me.release()
    assert leases.holder() == "other"


async def test_release_without_holding_writes_nothing(leases: FakeLeases, clock: FakeClock) -> None:
    leases.set_holder("other")
    me = elector(leases, clock)
    task = await running(me)
    await until(lambda: "get" in leases.calls, clock)
    await stop(task)
    calls = len(leases.calls)
    assert not await me.release()
    assert len(leases.calls) == calls


async def test_release_retries_transient_errors(leases: FakeLeases, clock: FakeClock) -> None:
    me = elector(leases, clock)
    task = await running(me)
    await until(lambda: me.is_leader, clock)
    await stop(task)
    leases.fail_next = [status_error(503), status_error(429, retry_after="1")]
    releasing = asyncio.create_task(me.release())
    await until(releasing.done, clock)
    assert releasing.result()
    assert leases.holder() == ""


async def test_wait_until_follows_the_changes(leases: FakeLeases, clock: FakeClock) -> None:
    me = elector(leases, clock)
    elected = asyncio.create_task(me.wait_until(leading=True))
    task = await running(me)
    await until(elected.done, clock)
    leases.set_holder("usurper")
    deposed = asyncio.create_task(me.wait_until(leading=False))
    await until(deposed.done, clock)
    await stop(task)


def test_config_refuses_unsafe_timings() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        ElectionConfig(identity="me", lease_seconds=10, renew_deadline_seconds=10)
    with pytest.raises(ValueError, match="retry periods"):
        ElectionConfig(identity="me", renew_deadline_seconds=2, retry_period_seconds=2)
    with pytest.raises(ValueError, match="identity"):
        ElectionConfig(identity="")


def test_identity_is_the_pod_name_made_unique() -> None:
    first = default_identity({"POD_NAME": "podtrail-abc"})
    second = default_identity({"POD_NAME": "podtrail-abc"})
    assert first.startswith("podtrail-abc_") and second.startswith("podtrail-abc_")
    assert first != second
    assert default_identity({})


# --- the handlers' wiring: the runtime runs only while leading ----------------------------------


class FakeRuntimeParts(handlers.NamedTasks):
    """What stopping a runtime touches: its tasks, its writer, its API connection."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        # The writer's task in the middle: the handlers find it by name, not by position.
        self.tasks = {
            name: asyncio.create_task(self._loop(name), name=name)
            for name in ("pods-all", handlers.WRITER_TASK, "sweep")
        }
        self.writer = FakeWriter(journal)
        self.kube = self
        self.settings = PodtrailSettings()
        self.tracing = None

    async def close(self) -> None:
        self.journal.append("close")

    async def _loop(self, name: str) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.journal.append(f"{name} stopped")
            raise


class FakeWriter:
    def __init__(self, journal: list[str]) -> None:
        self.journal = journal

    def pending_count(self) -> int:
        return 4

    async def flush_all(self, timeout: float) -> list[tuple[str, str]]:
        self.journal.append(f"flush within {timeout:g} s")
        return []

    async def close(self) -> None:
        self.journal.append("writer closed")


class JournalingLeases(FakeLeases):
    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self.journal = journal

    async def replace_lease(
        self, namespace: str, name: str, lease: Mapping[str, Any]
    ) -> dict[str, Any]:
        if not lease["spec"].get("holderIdentity"):
            self.journal.append("release")
        return await super().replace_lease(namespace, name, lease)


async def following(
    leases: FakeLeases, clock: FakeClock, journal: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[
    LeaderElector, Metrics, kopf.Memo, list[FakeRuntimeParts], dict[str, asyncio.Task[None]]
]:
    started: list[FakeRuntimeParts] = []

    async def start_runtime(settings: PodtrailSettings, metrics: Metrics) -> handlers.Runtime:
        started.append(FakeRuntimeParts(journal))
        return cast(handlers.Runtime, started[-1])

    monkeypatch.setattr(handlers, "_start_runtime", start_runtime)
    me, metrics, memo = elector(leases, clock), Metrics(), kopf.Memo()
    tasks = {
        handlers.ELECTOR_TASK: asyncio.create_task(me.run()),
        handlers.FOLLOWER_TASK: asyncio.create_task(
            handlers._run_while_leading(me, PodtrailSettings(), metrics, memo)
        ),
    }
    return me, metrics, memo, started, tasks


def leader_gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("podtrail_leader")


async def test_runtime_starts_on_winning_and_is_dropped_unflushed_on_losing(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal: list[str] = []
    leases = FakeLeases()
    me, metrics, memo, started, tasks = await following(leases, clock, journal, monkeypatch)
    await until(lambda: getattr(memo, "runtime", None) is not None, clock)
    assert leader_gauge(metrics) == 1
    parts = started[0]
    leases.set_holder("usurper")
    await until(lambda: memo.runtime is None, clock)
    await clock.settle()
    # Every loop stopped, no flush: the new leader owns the records.
    assert journal == ["pods-all stopped", "record-writer stopped", "sweep stopped", "close"]
    assert all(task.cancelled() for task in parts.tasks.values())
    assert leader_gauge(metrics) == 0
    # Back to standby; leads again (a second runtime) once the Lease is free.
    leases.set_holder("")
    await until(lambda: len(started) == 2 and memo.runtime is not None, clock)
    assert leader_gauge(metrics) == 1
    await stop(*tasks.values())
    await stop(*started[1].tasks.values())


async def test_shutdown_flushes_while_leading_then_releases(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal: list[str] = []
    leases = JournalingLeases(journal)
    me, metrics, memo, started, tasks = await following(leases, clock, journal, monkeypatch)
    await until(lambda: getattr(memo, "runtime", None) is not None, clock)
    # The follower listed first: the handlers find the elector by name, not by position.
    named = dict(reversed(tasks.items()))
    election = handlers.Election(me, cast(Kube, FakeRuntimeParts(journal)), named)
    await handlers._stop_election(election, memo, metrics)
    # The runtime's loops, its writes (bounded), its writer's task and connection; then the
    # Lease and its connection.
    assert journal == [
        "pods-all stopped",
        "sweep stopped",
        "flush within 20 s",
        "writer closed",
        "record-writer stopped",
        "close",
        "release",
        "close",
    ]
    assert leases.holder() == ""
    assert leader_gauge(metrics) == 0
    assert all(task.done() for task in tasks.values())
    await stop(*election.leases.tasks.values())  # type: ignore[attr-defined]


def probe_of(registry: kopf.OperatorRegistry) -> Callable[..., Any]:
    (handler,) = [h for h in registry._activities.get_all_handlers() if h.id == "pending"]
    return cast(Callable[..., Any], handler.fn)


async def test_the_liveness_probe_names_a_stopped_loop(clock: FakeClock) -> None:
    probe = probe_of(handlers.build_registry(PodtrailSettings(), Metrics(), None))
    memo = kopf.Memo()
    assert probe(memo=memo) == "standby"
    parts = FakeRuntimeParts([])
    parts.health = StreamHealth(monotonic=clock.monotonic)  # type: ignore[attr-defined]
    parts.metrics = Metrics()  # type: ignore[attr-defined]
    memo.runtime = parts
    try:
        assert probe(memo=memo) == 4, "the writer's pending facts"
        await stop(parts.tasks["sweep"])
        with pytest.raises(kopf.PermanentError, match="^sweep stopped$"):
            probe(memo=memo)
    finally:
        await stop(*parts.tasks.values())
