"""Pods into records (PodIntake) and the start-up catch-up, against fake API answers.

No cluster: the API is scripted (record pages, namespaces, pod stream items) and the writer is
either a recording fake or the real RecordWriter over the in-memory store of test_persist.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from podtrail import core
from podtrail.shell import handlers
from podtrail.shell.intake import PodIntake
from podtrail.shell.kube import Kube, Page, StreamItem
from podtrail.shell.metrics import Metrics
from podtrail.shell.persist import RecordWriter
from podtrail.shell.scope import Scope
from podtrail.shell.settings import PodtrailSettings
from podtrail.shell.streams import HeldEvents, follow_pods
from tests.shell.test_persist import FakeStore, FakeTime, expected_status, make_writer
from tests.shell.test_persist_faults import stored_record
from tests.shell.test_streams import FakeWriter, ScriptedKube, added
from tests.unit import builders as b

NOW = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)


def intake(
    writer: FakeWriter,
    *,
    held: HeldEvents | None = None,
    opt_in: bool = False,
    namespaces: tuple[str, ...] = (),
    api: ScriptedKube | None = None,
) -> PodIntake:
    scope = Scope(namespaces=namespaces, opt_in=opt_in)
    scope.learn_namespace({"metadata": {"name": b.NAMESPACE}})
    return PodIntake(
        cast(Kube, api or ScriptedKube()),
        scope,
        writer,  # type: ignore[arg-type]
        held or HeldEvents(),
        Metrics(),
        clock=lambda: NOW,
    )


def tracked(name: str = b.POD, *, annotation: str | None = None, uid: str = b.UID) -> Any:
    raw = b.pod(name=name, uid=uid)
    if annotation is not None:
        raw["metadata"]["annotations"] = {"podtrail.io/track": annotation}
    return raw


def kinds(writer: FakeWriter) -> list[str]:
    return [type(o).__name__ for o in writer.submitted]


# --- PodIntake.pod ------------------------------------------------------------------------------


async def test_a_pod_is_observed_then_the_events_held_for_it_in_their_order() -> None:
    held = HeldEvents()
    first = core.observe_event(b.event("Scheduled", "assigned", first=1))
    second = core.observe_event(b.event("Pulled", "pulled", first=2, container="app"))
    other = core.observe_event(b.event("Scheduled", "assigned", pod_name="other"))
    assert first is not None and second is not None and other is not None
    for event in (first, other, second):
        held.hold(event)
    writer = FakeWriter()

    await intake(writer, held=held).pod(tracked(), deleted=False)

    assert writer.submitted[0] == core.observe_pod(tracked())
    assert writer.submitted[1:] == [first, second]
    assert len(held) == 1, "the other pod's Event is still held"
    assert held.release(b.NAMESPACE, "other") == [other]


async def test_a_deleted_pod_is_observed_then_closed_at_the_intakes_time() -> None:
    writer = FakeWriter()

    await intake(writer).pod(tracked(), deleted=True)

    assert kinds(writer) == ["PodSeen", "PodGone"]
    assert writer.submitted[1] == core.PodGone(b.NAMESPACE, b.POD, b.UID, NOW, True)


async def test_the_pods_labels_go_with_its_observation() -> None:
    labelled: list[Any] = []

    class LabelWriter(FakeWriter):
        def submit(self, observation: Any, labels: Any = None) -> None:
            labelled.append(labels)
            super().submit(observation)

    raw = tracked()
    raw["metadata"]["labels"] = {"app": "web"}
    await intake(LabelWriter()).pod(raw, deleted=False)

    assert labelled == [{"app": "web"}]


async def test_an_opted_out_pod_is_not_recorded_and_its_events_stay_held() -> None:
    held = HeldEvents()
    event = core.observe_event(b.event("Scheduled", "assigned"))
    assert event is not None
    held.hold(event)
    writer = FakeWriter()

    await intake(writer, held=held).pod(tracked(annotation="false"), deleted=True)

    assert writer.submitted == []
    assert len(held) == 1


async def test_in_opt_in_mode_a_pod_needs_the_annotation_or_a_record() -> None:
    plain, annotated, with_record = FakeWriter(), FakeWriter(), FakeWriter(known={b.POD})

    await intake(plain, opt_in=True).pod(tracked(), deleted=False)
    await intake(annotated, opt_in=True).pod(tracked(annotation="true"), deleted=False)
    await intake(with_record, opt_in=True).pod(tracked(), deleted=False)

    assert (kinds(plain), kinds(annotated), kinds(with_record)) == ([], ["PodSeen"], ["PodSeen"])


async def test_a_pod_outside_the_watched_namespaces_is_ignored() -> None:
    writer = FakeWriter()

    await intake(writer, namespaces=("elsewhere",)).pod(tracked(), deleted=False)

    assert writer.submitted == []


async def test_an_unknown_namespace_is_read_once_and_its_opt_out_honoured() -> None:
    api = ScriptedKube()
    opted_out = {"metadata": {"name": "quiet", "annotations": {"podtrail.io/track": "false"}}}
    api.namespace_answers = [opted_out]
    writer = FakeWriter()
    pods = PodIntake(
        cast(Kube, api),
        Scope(namespaces=(), opt_in=False),
        writer,  # type: ignore[arg-type]
        HeldEvents(),
        Metrics(),
    )
    raw = tracked()
    raw["metadata"]["namespace"] = "quiet"

    await pods.pod(raw, deleted=False)
    await pods.pod(raw, deleted=False)

    assert api.namespace_reads == 1, "the namespace is known after the first read"
    assert writer.submitted == []


# --- PodIntake.missing_after_listing ------------------------------------------------------------


def state(namespace: str, name: str, uid: str | None, *, removed: bool = False) -> Any:
    record = types.SimpleNamespace(pod_uid=uid, removal=object() if removed else None)
    return types.SimpleNamespace(namespace=namespace, name=name, record=record)


class ListingWriter(FakeWriter):
    def __init__(self, states: Iterable[Any]) -> None:
        super().__init__()
        self.states = list(states)

    def records(self) -> list[Any]:
        return self.states


async def test_a_listing_closes_the_records_of_pods_it_no_longer_shows() -> None:
    writer = ListingWriter(
        [
            state("a", "listed", "u-listed"),
            state("a", "vanished", "u-vanished"),
            state("a", "closed-already", "u-closed", removed=True),
            state("a", "placeholder", None),  # a user's record for a pod not seen yet
            state("b", "other-namespace", "u-other"),
        ]
    )

    intake(writer).missing_after_listing("a", ["u-listed"])

    assert writer.submitted == [core.PodGone("a", "vanished", "u-vanished", NOW, False)]


async def test_a_listing_of_all_namespaces_closes_in_every_namespace() -> None:
    writer = ListingWriter([state("a", "one", "u1"), state("b", "two", "u2")])

    intake(writer).missing_after_listing(None, ["u1"])

    assert writer.submitted == [core.PodGone("b", "two", "u2", NOW, False)]


# --- handlers._catch_up -------------------------------------------------------------------------


class RecordPages:
    """The records' listing, page by page, per namespace; the namespaces asked noted."""

    def __init__(self, pages: dict[str | None, list[Page]]) -> None:
        self.pages = pages
        self.asked: list[str | None] = []

    async def record_pages(self, namespace: str | None = None) -> AsyncIterator[Page]:
        self.asked.append(namespace)
        for page in self.pages[namespace]:
            yield page


def runtime_of(
    api: Any, writer: RecordWriter | FakeWriter, settings: PodtrailSettings
) -> handlers.Runtime:
    scope = Scope(namespaces=settings.namespaces, opt_in=settings.opt_in)
    scope.learn_namespace({"metadata": {"name": b.NAMESPACE}})  # as the start-up listing does
    held = HeldEvents()
    pods = PodIntake(api, scope, writer, held, Metrics(), clock=lambda: NOW)  # type: ignore[arg-type]
    return handlers.Runtime(settings, api, scope, cast(RecordWriter, writer), held, Metrics(), pods)


def a_writer() -> RecordWriter:
    time = FakeTime()
    return make_writer(FakeStore(time), time, Metrics())


def record(name: str, namespace: str = b.NAMESPACE, uid: str | None = None) -> dict[str, Any]:
    raw = stored_record(name, expected_status(b.pod(name=name, uid=uid or f"pod-{name}")))
    raw["metadata"]["namespace"] = namespace
    return raw


async def test_catch_up_adopts_every_page_and_returns_the_listings_version() -> None:
    api = RecordPages(
        {None: [Page([record("one"), record("two")], None), Page([record("three")], "42")]}
    )
    writer = a_writer()

    versions = await handlers._catch_up(runtime_of(api, writer, PodtrailSettings()))

    assert versions == {None: "42"}
    assert api.asked == [None]
    assert sorted(s.name for s in writer.records()) == ["one", "three", "two"]
    assert writer.pending_count() == 0, "loading records writes nothing"


async def test_catch_up_lists_each_watched_namespace_with_its_own_version() -> None:
    api = RecordPages(
        {
            "a": [Page([record("one", "a")], "7")],
            "b": [Page([], "9")],  # no record yet: the watch still starts from a version
        }
    )
    writer = a_writer()
    settings = PodtrailSettings(namespaces=("a", "b"))

    versions = await handlers._catch_up(runtime_of(api, writer, settings))

    assert versions == {"a": "7", "b": "9"}
    assert [(s.namespace, s.name) for s in writer.records()] == [("a", "one")]


async def test_after_catch_up_the_first_pod_listing_closes_records_of_vanished_pods() -> None:
    """A pod deleted while the operator was away: its record is closed once, not deleted."""
    api = RecordPages({None: [Page([record("alive"), record("vanished")], "5")]})
    writer = a_writer()
    runtime = runtime_of(api, writer, PodtrailSettings())
    await handlers._catch_up(runtime)
    alive = b.pod(name="alive", uid="pod-alive")
    pods = ScriptedKube([StreamItem("LISTING"), StreamItem("LISTED", items=(alive,))])
    pods.script += [StreamItem("SYNCED"), added(alive)]

    async def take(raw: dict[str, Any], deleted: bool) -> None:
        await runtime.intake.pod(raw, deleted=deleted)

    await follow_pods(cast(Kube, pods), None, take, runtime.intake.missing_after_listing, Metrics())

    vanished, kept = writer.get(b.NAMESPACE, "vanished"), writer.get(b.NAMESPACE, "alive")
    assert vanished is not None and kept is not None
    assert vanished.record.removal is not None and vanished.record.removal.time == NOW
    assert kept.record.removal is None
    assert [s.name for s in writer.records() if s.pending] == ["vanished"]


# --- the runtime's loops ------------------------------------------------------------------------


async def test_the_runtimes_loops_are_named_by_stream_and_namespace() -> None:
    runtime = runtime_of(ScriptedKube(), a_writer(), PodtrailSettings(namespaces=("a", "b")))

    handlers._spawn_loops(runtime, {"a": "1", "b": "2"})
    try:
        per_namespace = ("records", "pods", "pod-events", "endpoint-slices")
        assert sorted(runtime.tasks) == sorted(
            [handlers.WRITER_TASK, "sweep"] + [f"{s}-{n}" for s in per_namespace for n in "ab"]
        )
        assert all(task.get_name() == name for name, task in runtime.tasks.items())
        with pytest.raises(ValueError, match="sweep"):
            runtime.spawn("sweep", asyncio.Event().wait())  # closed unrun: no warning
    finally:
        await handlers._cancel(list(runtime.tasks.values()))


# --- updates that change nothing the core reads ---------------------------------------------


def touched(raw: dict[str, Any], version: str) -> dict[str, Any]:
    """The same pod after an update the core does not read: annotations, bookkeeping."""
    meta = raw["metadata"] | {
        "resourceVersion": version,
        "annotations": {"example.com/touched": version},
        "managedFields": [{"manager": "kubectl", "time": version}],
    }
    return raw | {"metadata": meta}


async def test_an_update_that_changes_nothing_the_core_reads_is_dropped() -> None:
    writer = FakeWriter()
    pods = intake(writer)
    await pods.pod(tracked(), deleted=False)
    writer.known.add(b.POD)

    await pods.pod(touched(tracked(), "2"), deleted=False)
    await pods.pod(touched(tracked(), "3"), deleted=False)

    assert kinds(writer) == ["PodSeen"], "only the first sighting went to the record"


@pytest.mark.parametrize(
    "change",
    [
        lambda raw: raw["status"].update(phase="Failed"),
        lambda raw: raw["metadata"].update(labels={"app": "other"}),
        lambda raw: raw["metadata"].update(deletionTimestamp="2026-01-01T00:09:00Z"),
        lambda raw: raw["metadata"].update(deletionGracePeriodSeconds=5),
        lambda raw: raw["spec"].update(nodeName="worker-9"),
        lambda raw: raw["metadata"].update(uid="another-instance"),
    ],
    ids=["status", "labels", "deletion", "grace", "spec", "uid"],
)
async def test_an_update_that_changes_what_the_core_reads_is_taken(change: Any) -> None:
    writer = FakeWriter()
    pods = intake(writer)
    await pods.pod(tracked(), deleted=False)
    writer.known.add(b.POD)
    changed = tracked()
    change(changed)

    await pods.pod(touched(changed, "2"), deleted=False)

    assert writer.submitted[-1] == core.observe_pod(changed)
    assert len(writer.submitted) == 2


async def test_a_pod_without_a_record_held_is_always_observed() -> None:
    writer = FakeWriter()  # the record was deleted, or never written: the pod makes it again
    pods = intake(writer)
    await pods.pod(tracked(), deleted=False)
    await pods.pod(touched(tracked(), "2"), deleted=False)

    assert kinds(writer) == ["PodSeen", "PodSeen"]


async def test_a_deletion_is_taken_even_when_the_pod_is_unchanged() -> None:
    writer = FakeWriter()
    pods = intake(writer)
    await pods.pod(tracked(), deleted=False)
    writer.known.add(b.POD)

    await pods.pod(tracked(), deleted=True)
    await pods.pod(tracked(), deleted=False)  # a pod of the same name, seen again afresh

    assert kinds(writer) == ["PodSeen", "PodSeen", "PodGone", "PodSeen"]


async def test_a_listing_forgets_the_pods_it_no_longer_shows() -> None:
    writer = FakeWriter()
    pods = intake(writer)
    await pods.pod(tracked(), deleted=False)
    writer.known.add(b.POD)
    pods.missing_after_listing(None, [])  # the pod is gone, unseen: its digest goes too

    await pods.pod(touched(tracked(), "2"), deleted=False)

    assert kinds(writer) == ["PodSeen", "PodSeen"]
