"""The operator's streams: through a sick API server and one object's failure; Events held until
their pod is seen; the EndpointSlice diff across watch events and relistings.

The streams here are scripted at the level of Kube's stream items (the API-level faults are in
test_kube_faults.py); the clock is fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from podtrail import core
from podtrail.shell import kube
from podtrail.shell.backoff import Backoff
from podtrail.shell.health import StreamHealth
from podtrail.shell.intake import PodIntake
from podtrail.shell.kube import StreamItem
from podtrail.shell.metrics import Metrics
from podtrail.shell.scope import Scope
from podtrail.shell.streams import (
    HeldEvents,
    follow_endpoint_slices,
    follow_pod_events,
    follow_pods,
    follow_records,
)
from tests.unit import builders as b

Step = StreamItem | str | Callable[[], None]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> Callable[[], None]:
        def step() -> None:
            self.now += seconds

        return step


class ScriptedKube:
    """Streams that play a script: items, "up" (a success), a restart cause, or a callable.

    The stream ends with the script (the real ones never end; the tests need them to).
    """

    def __init__(self, script: Iterable[Step] = (), clock: FakeClock | None = None) -> None:
        self.script = list(script)
        self.clock = clock or FakeClock()
        self.namespace_answers: list[dict[str, Any] | Exception] = []
        self.namespace_reads = 0

    async def _play(
        self, on_restart: Callable[[str], None], on_up: Callable[[], None]
    ) -> AsyncIterator[StreamItem]:
        for step in self.script:
            if isinstance(step, StreamItem):
                yield step
            elif step == "up":
                on_up()
            elif isinstance(step, str):
                on_restart(step)
            else:
                step()

    def pods(self, namespace: str | None, on_restart: Any, on_up: Any) -> AsyncIterator[StreamItem]:
        return self._play(on_restart, on_up)

    def pod_events(
        self, namespace: str | None, on_restart: Any, on_up: Any
    ) -> AsyncIterator[StreamItem]:
        return self._play(on_restart, on_up)

    def endpoint_slices(
        self, namespace: str | None, on_restart: Any, on_up: Any
    ) -> AsyncIterator[StreamItem]:
        return self._play(on_restart, on_up)

    def records(
        self, namespace: str | None, on_restart: Any, since: str, on_up: Any
    ) -> AsyncIterator[StreamItem]:
        return self._play(on_restart, on_up)

    async def get_namespace(self, name: str) -> dict[str, Any] | None:
        self.namespace_reads += 1
        answer = self.namespace_answers.pop(0) if self.namespace_answers else None
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def retried(self, attempt: Callable[[], Awaitable[Any]]) -> Any:
        backoff = Backoff(jitter=lambda: 0.5)
        return await kube.retrying(attempt, backoff=backoff, sleep=self.clock.sleep)


class FakeWriter:
    """The record writer as the streams see it: who has a record, what was submitted."""

    def __init__(self, known: Iterable[str] = (), failing: Iterable[str] = ()) -> None:
        self.known = set(known)
        self.failing = set(failing)
        self.submitted: list[Any] = []

    def get(self, namespace: str, name: str) -> object | None:
        if name in self.failing:
            raise RuntimeError(f"cannot look up {name}")
        return object() if name in self.known else None

    def submit(self, observation: Any, labels: Any = None) -> None:
        self.submitted.append(observation)

    def records(self) -> list[Any]:
        return []


def added(raw: dict[str, Any]) -> StreamItem:
    return StreamItem("ADDED", obj=raw)


def throttled() -> ApiException:
    error = ApiException(status=429)
    error.headers = {"Retry-After": "2"}
    return error


def restarts(metrics: Metrics, stream: str, cause: str) -> float:
    value = metrics.registry.get_sample_value(
        "podtrail_stream_restarts_total", {"stream": stream, "cause": cause}
    )
    return value or 0.0


# --- one object's failure ---------------------------------------------------------------------


async def test_a_pod_whose_handling_fails_is_skipped_and_the_next_is_handled() -> None:
    pods = [
        b.pod(name="first", uid="u1"),
        b.pod(name="bad", uid="u2"),
        b.pod(name="next", uid="u3"),
    ]
    script: list[Step] = [
        StreamItem("LISTING"),
        StreamItem("LISTED", items=(pods[0], pods[1])),
        StreamItem("SYNCED"),
        added(pods[1]),
        added(pods[2]),
    ]
    taken: list[str] = []
    errors: list[str] = []
    listed: list[list[str]] = []

    async def take(raw: dict[str, Any], deleted: bool) -> None:
        if raw["metadata"]["name"] == "bad":
            raise KeyError("spec")
        taken.append(raw["metadata"]["name"])

    await follow_pods(
        ScriptedKube(script),  # type: ignore[arg-type]
        None,
        take,
        lambda namespace, uids: listed.append(uids),
        Metrics(),
        on_item_error=errors.append,
    )

    assert taken == ["first", "next"]
    assert errors == ["pods", "pods"]
    assert listed == [["u1", "u2"]]  # the failed pod still counts as listed: its record stays


async def test_a_failing_listing_check_does_not_stop_the_pod_stream() -> None:
    script: list[Step] = [StreamItem("LISTING"), StreamItem("SYNCED"), added(b.pod(name="next"))]
    taken: list[str] = []

    async def take(raw: dict[str, Any], deleted: bool) -> None:
        taken.append(raw["metadata"]["name"])

    def missing(namespace: str | None, uids: list[str]) -> None:
        raise RuntimeError("broken")

    await follow_pods(ScriptedKube(script), None, take, missing, Metrics())  # type: ignore[arg-type]

    assert taken == ["next"]


async def test_cancellation_in_a_pod_handler_ends_the_stream() -> None:
    async def take(raw: dict[str, Any], deleted: bool) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await follow_pods(
            ScriptedKube([added(b.pod())]),  # type: ignore[arg-type]
            None,
            take,
            lambda namespace, uids: None,
            Metrics(),
        )


async def test_a_record_whose_handling_fails_is_skipped() -> None:
    records = [{"metadata": {"namespace": "ns", "name": n}} for n in ("bad", "good", "gone")]
    script: list[Step] = [
        added(records[0]),
        added(records[1]),
        StreamItem("DELETED", obj=records[2]),
    ]
    taken: list[tuple[str, bool]] = []
    errors: list[str] = []

    async def take(raw: dict[str, Any], deleted: bool) -> None:
        if raw["metadata"]["name"] == "bad":
            raise ApiException(status=429)  # e.g. the pod read behind a user's new record
        taken.append((raw["metadata"]["name"], deleted))

    await follow_records(
        ScriptedKube(script),  # type: ignore[arg-type]
        None,
        "7",
        take,
        Metrics(),
        on_item_error=errors.append,
    )

    assert taken == [("good", False), ("gone", True)]
    assert errors == ["records"]


async def test_an_event_whose_handling_fails_is_skipped() -> None:
    script: list[Step] = [
        added(b.event("Scheduled", "assigned", pod_name="bad")),
        added(b.event("Scheduled", "assigned", pod_name="good")),
    ]
    writer = FakeWriter(known={"good"}, failing={"bad"})
    errors: list[str] = []

    await follow_pod_events(
        ScriptedKube(script),  # type: ignore[arg-type]
        None,
        writer,  # type: ignore[arg-type]
        HeldEvents(),
        Metrics(),
        on_item_error=errors.append,
    )

    assert [o.pod_name for o in writer.submitted] == ["good"]
    assert errors == ["events"]


async def test_a_slice_whose_handling_fails_is_skipped() -> None:
    members = [
        ("bad", "u1", "10.0.0.1", True, True, False),
        ("good", "u2", "10.0.0.2", True, True, False),
    ]
    bad_slice = b.endpoint_slice("one", members[:1])
    bad_slice["metadata"]["uid"] = "s1"
    good_slice = b.endpoint_slice("two", members[1:])
    good_slice["metadata"]["uid"] = "s2"
    writer = FakeWriter(known={"good"}, failing={"bad"})
    errors: list[str] = []

    await follow_endpoint_slices(
        ScriptedKube([added(bad_slice), added(good_slice)]),  # type: ignore[arg-type]
        None,
        writer,  # type: ignore[arg-type]
        Metrics(),
        on_item_error=errors.append,
    )

    assert [o.pod_name for o in writer.submitted] == ["good"]
    assert errors == ["endpointslices"]


# --- restarts and health -----------------------------------------------------------------------


async def test_restarts_are_counted_and_the_outage_measured() -> None:
    clock = FakeClock()
    health = StreamHealth(monotonic=clock.monotonic)
    metrics = Metrics()
    outages: list[float] = []

    def measure() -> None:
        outages.append(health.longest_outage(clock.now))

    script: list[Step] = [
        "up",
        measure,
        "throttled",
        clock.advance(10),
        "server-error",
        clock.advance(5),
        measure,
        "up",
        measure,
    ]

    async def take(raw: dict[str, Any], deleted: bool) -> None:
        pass

    await follow_pods(
        ScriptedKube(script),  # type: ignore[arg-type]
        "team-a",
        take,
        lambda namespace, uids: None,
        metrics,
        health=health,
    )

    assert outages == [0.0, 15.0, 0.0]
    assert restarts(metrics, "pods", "throttled") == 1
    assert restarts(metrics, "pods", "server-error") == 1
    assert health.states()["pods:team-a"].up


def test_a_stream_is_out_from_its_first_failure_until_its_next_success() -> None:
    clock = FakeClock()
    health = StreamHealth(monotonic=clock.monotonic)
    health.started("pods:all")
    health.started("events:all")
    assert health.longest_outage(clock.now + 3) == 3.0  # none has succeeded yet

    health.succeeded("pods:all")
    health.succeeded("events:all")
    assert health.longest_outage(clock.now) == 0.0

    clock.now += 10
    health.failed("pods:all", "throttled")
    clock.now += 20
    health.failed("pods:all", "timeout")
    health.failed("events:all", "connection")
    assert health.longest_outage(clock.now + 5) == 25.0
    state = health.states()["pods:all"]
    assert (state.up, state.failures, state.last_cause) == (False, 2, "timeout")

    health.succeeded("pods:all")
    assert health.longest_outage(clock.now + 5) == 5.0  # events are still out
    health.succeeded("events:all")
    assert health.longest_outage(clock.now + 5) == 0.0


# --- the namespace read behind a pod -----------------------------------------------------------


def intake_with(api: ScriptedKube, writer: FakeWriter, *, opt_in: bool = False) -> PodIntake:
    scope = Scope(namespaces=(), opt_in=opt_in)
    return PodIntake(api, scope, writer, HeldEvents(), Metrics())  # type: ignore[arg-type]


async def test_a_pod_is_still_handled_when_its_namespace_cannot_be_read() -> None:
    api = ScriptedKube()
    api.namespace_answers = [throttled(), throttled(), throttled()]
    writer = FakeWriter()

    await intake_with(api, writer).pod(b.pod(), deleted=False)

    assert api.namespace_reads == 3
    assert api.clock.sleeps == [2.0, 2.0]  # as the server asked
    assert [type(o) for o in writer.submitted] == [core.PodSeen]


async def test_a_namespace_read_that_recovers_is_honoured() -> None:
    api = ScriptedKube()
    opted_out = {"metadata": {"name": b.NAMESPACE, "annotations": {"podtrail.io/track": "false"}}}
    api.namespace_answers = [throttled(), opted_out]
    writer = FakeWriter()

    await intake_with(api, writer).pod(b.pod(), deleted=False)

    assert api.namespace_reads == 2
    assert writer.submitted == []


async def test_a_pod_stream_goes_on_when_namespaces_cannot_be_read() -> None:
    api = ScriptedKube([added(b.pod(name="one")), added(b.pod(name="two", uid="u2"))])
    api.namespace_answers = [throttled()] * 6
    writer = FakeWriter()
    intake = intake_with(api, writer)

    async def take(raw: dict[str, Any], deleted: bool) -> None:
        await intake.pod(raw, deleted=deleted)

    await follow_pods(
        api,  # type: ignore[arg-type]
        None,
        take,
        intake.missing_after_listing,
        Metrics(),
    )

    assert [o.pod_name for o in writer.submitted] == ["one", "two"]


# --- Events held until their pod is seen --------------------------------------------------------


def seen_event(pod_name: str, first: float = 5) -> core.EventSeen:
    observation = core.observe_event(
        b.event("Scheduled", f"assigned {first}", first=first, pod_name=pod_name)
    )
    assert observation is not None
    return observation


def test_held_events_are_released_once_in_their_order() -> None:
    held = HeldEvents()
    early, late, other = seen_event("web", 1), seen_event("web", 2), seen_event("db")
    for event in (early, other, late):
        held.hold(event)
    assert len(held) == 3

    assert held.release(b.NAMESPACE, "web") == [early, late]
    assert held.release(b.NAMESPACE, "web") == []
    assert len(held) == 1
    assert held.release("elsewhere", "db") == [], "a pod is known by namespace and name"
    assert held.release(b.NAMESPACE, "db") == [other]
    assert len(held) == 0


def test_held_events_expire_by_their_pods_latest_event() -> None:
    clock = FakeClock()
    held = HeldEvents(max_age_seconds=120, monotonic=clock.monotonic)
    held.hold(seen_event("old"))
    held.hold(seen_event("renewed", 1))
    clock.now += 100
    held.hold(seen_event("renewed", 2))  # its newer Event keeps the older one with it
    clock.now += 21  # both held 121 s ago; "renewed" had an Event 21 s ago

    held.hold(seen_event("new"))

    assert held.release(b.NAMESPACE, "old") == []
    assert [e.message for e in held.release(b.NAMESPACE, "renewed")] == ["assigned 1", "assigned 2"]
    assert len(held) == 1


def test_past_the_bound_the_pod_held_longest_ago_is_dropped_whole() -> None:
    held = HeldEvents(max_events=3, monotonic=FakeClock().monotonic)
    held.hold(seen_event("first", 1))
    held.hold(seen_event("second", 1))
    held.hold(seen_event("first", 2))  # "first" is now the latest held
    held.hold(seen_event("third", 1))  # four: the bound is three

    assert len(held) == 3
    assert held.release(b.NAMESPACE, "second") == []
    assert [e.message for e in held.release(b.NAMESPACE, "first")] == ["assigned 1", "assigned 2"]
    assert [e.pod_name for e in held.release(b.NAMESPACE, "third")] == ["third"]


async def test_an_event_for_an_unknown_pod_is_held_not_submitted() -> None:
    held = HeldEvents()
    script: list[Step] = [
        StreamItem("LISTED", items=(b.event("Scheduled", "assigned", pod_name="known"),)),
        added(b.event("Scheduled", "assigned", pod_name="unknown")),
        StreamItem("DELETED", obj=b.event("Pulled", "pulled", pod_name="known")),
    ]
    writer = FakeWriter(known={"known"})

    await follow_pod_events(ScriptedKube(script), None, writer, held, Metrics())  # type: ignore[arg-type]

    assert [o.pod_name for o in writer.submitted] == ["known"], "a deleted Event removes nothing"
    assert [o.pod_name for o in held.release(b.NAMESPACE, "unknown")] == ["unknown"]


# --- EndpointSlices: the diff across watch events and relistings --------------------------------


def slice_of(uid: str, *members: tuple[str, bool]) -> dict[str, Any]:
    """A slice named by its uid; members are (pod name, ready)."""
    raw = b.endpoint_slice(
        "web",
        [
            (name, f"pod-{name}", f"10.0.0.{len(name)}", ready, ready, False)
            for name, ready in members
        ],
    )
    raw["metadata"]["uid"] = uid
    raw["metadata"]["name"] = f"web-{uid}"
    return raw


def listing(*slices: dict[str, Any]) -> list[Step]:
    return [StreamItem("LISTING"), StreamItem("LISTED", items=slices), StreamItem("SYNCED")]


async def endpoint_changes(script: list[Step], known: Iterable[str]) -> list[tuple[str, str]]:
    writer = FakeWriter(known=known)
    await follow_endpoint_slices(ScriptedKube(script), None, writer, Metrics())  # type: ignore[arg-type]
    return [
        (o.pod_name, "removed" if o.removed else "ready" if o.ready else "not ready")
        for o in writer.submitted
    ]


async def test_the_first_listing_reports_every_endpoint_once() -> None:
    changes = await endpoint_changes(
        listing(slice_of("s1", ("a", True), ("b", False))), known={"a", "b"}
    )

    assert sorted(changes) == [("a", "ready"), ("b", "not ready")]


async def test_a_relisting_reports_only_what_changed_while_the_watch_was_gone() -> None:
    before = [slice_of("s1", ("a", True), ("b", True)), slice_of("s2", ("c", True))]
    after = [slice_of("s1", ("a", True), ("b", False)), slice_of("s3", ("d", True))]
    script = listing(*before) + ["expired"] + listing(*after) + ["expired"] + listing(*after)

    changes = await endpoint_changes(script, known={"a", "b", "c", "d"})

    first = sorted(changes[:3])
    assert first == [("a", "ready"), ("b", "ready"), ("c", "ready")]
    # a unchanged: nothing; b turned not ready; s2 gone with c; s3 new with d. The same listing
    # again: nothing at all.
    assert sorted(changes[3:]) == [("b", "not ready"), ("c", "removed"), ("d", "ready")]


async def test_a_relisting_forgets_a_slice_deleted_unseen_and_diffs_from_watched_changes() -> None:
    script = (
        listing(slice_of("s1", ("a", True)))
        + [
            added(slice_of("s2", ("b", True))),
            StreamItem("MODIFIED", obj=slice_of("s1", ("a", False))),
        ]
        + listing(slice_of("s1", ("a", False)))  # s2 deleted while the watch was gone
        + [StreamItem("DELETED", obj=slice_of("s1", ("a", False)))]
    )

    changes = await endpoint_changes(script, known={"a", "b"})

    assert changes == [
        ("a", "ready"),
        ("b", "ready"),
        ("a", "not ready"),
        ("b", "removed"),  # the relisting: s1 as watched, so only s2's loss
        ("a", "removed"),
    ]


async def test_an_endpoint_of_a_pod_without_a_record_is_not_submitted() -> None:
    changes = await endpoint_changes(listing(slice_of("s1", ("a", True), ("x", True))), known={"a"})

    assert changes == [("a", "ready")]
