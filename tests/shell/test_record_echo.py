"""The records' watch carries metadata only: echoes of our own writes are not read again.

A record is read in full only when its object or its spec (`generation`) is not the one the
writer holds: a user's record, a spec edit, a record recreated under the same name.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator
from typing import Any

import pytest

from podtrail import core
from podtrail.shell.handlers import observe_record
from tests.shell.test_persist import Harness, running, running_pod

NAMESPACE, NAME = "default", "web-1"


def metadata_of(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A record as the metadata-only watch shows it."""
    meta = record["metadata"]
    kept = {key: meta.get(key) for key in ("namespace", "name", "uid", "generation")}
    return {"metadata": kept | changes}


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with running() as made:
        yield made


class Runtime(types.SimpleNamespace):
    """What observe_record reads of the runtime: the writer, the API, the pod intake."""


class Kube:
    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.pod_reads = 0

    async def retried(self, attempt: Any) -> Any:
        return await attempt()

    async def get_record(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.harness.store.get_record(namespace, name)

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.pod_reads += 1
        return None


async def written(harness: Harness) -> dict[str, Any]:
    """A tracked pod's record, created and written by the writer."""
    observation = core.observe_pod(running_pod())
    harness.writer.submit(observation, labels={})
    await harness.settle()
    return harness.store.records[(observation.namespace, observation.pod_name)]


async def test_our_own_writes_coming_back_are_not_read(harness: Harness) -> None:
    record = await written(harness)
    runtime = Runtime(writer=harness.writer, kube=Kube(harness), intake=None)
    harness.store.calls.clear()

    assert harness.writer.knows_spec(record["metadata"])
    await observe_record(runtime, metadata_of(record), deleted=False)  # type: ignore[arg-type]

    assert harness.store.calls == [], "an echo is not read again"


async def test_a_spec_edit_is_read_and_taken(harness: Harness) -> None:
    record = await written(harness)
    record["spec"]["ttlSecondsAfterPodDeletion"] = 60
    record["metadata"]["generation"] = 2
    runtime = Runtime(writer=harness.writer, kube=Kube(harness), intake=None)
    harness.store.calls.clear()

    await observe_record(runtime, metadata_of(record), deleted=False)  # type: ignore[arg-type]

    assert harness.store.calls == ["get"]
    state = harness.writer.get(record["metadata"]["namespace"], record["metadata"]["name"])
    assert state is not None and state.ttl_seconds == 60 and state.generation == 2
    assert harness.writer.knows_spec(record["metadata"])


async def test_another_object_under_the_same_name_is_read(harness: Harness) -> None:
    record = await written(harness)
    assert not harness.writer.knows_spec({**record["metadata"], "uid": "another"})
    assert not harness.writer.knows_spec({**record["metadata"], "name": "unknown"})
    assert not harness.writer.knows_spec({**record["metadata"], "generation": None})


async def test_a_record_gone_before_it_is_read_changes_nothing(harness: Harness) -> None:
    record = await written(harness)
    meta = metadata_of(record, uid="recreated")
    del harness.store.records[(record["metadata"]["namespace"], record["metadata"]["name"])]
    runtime = Runtime(writer=harness.writer, kube=Kube(harness), intake=None)

    await observe_record(runtime, meta, deleted=False)  # type: ignore[arg-type]

    state = harness.writer.get(record["metadata"]["namespace"], record["metadata"]["name"])
    assert state is not None and state.uid == record["metadata"]["uid"]


async def test_a_users_record_without_a_pod_is_read_and_its_pod_asked_for(
    harness: Harness,
) -> None:
    created = await harness.store.create_record(NAMESPACE, NAME, {})
    kube = Kube(harness)
    runtime = Runtime(writer=harness.writer, kube=kube, intake=None)

    await observe_record(runtime, metadata_of(created), deleted=False)  # type: ignore[arg-type]

    state = harness.writer.get(NAMESPACE, NAME)
    assert state is not None and state.uid == created["metadata"]["uid"] and state.exists
    assert kube.pod_reads == 1
