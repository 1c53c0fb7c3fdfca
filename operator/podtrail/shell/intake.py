"""Pods into records: the scope check, held Events, removals — for any stream that sees pods."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from podtrail import core
from podtrail.shell.kube import Kube
from podtrail.shell.logs import get_logger
from podtrail.shell.metrics import Metrics
from podtrail.shell.persist import RecordWriter
from podtrail.shell.scope import Scope
from podtrail.shell.streams import HeldEvents

log = get_logger(__name__)

# What the core and the writer read of a pod's metadata (its annotations only decide the scope).
_READ_METADATA = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "ownerReferences",
)


def pod_digest(raw: Mapping[str, Any]) -> bytes:
    """A digest of what the core and the writer read of a pod.

    Two updates with the same digest differ at most in what nothing reads: resourceVersion,
    managedFields, annotations (a controller's bookkeeping, `kubectl annotate`). The API
    server writes keys in a fixed order, so equal parts encode equally; if they did not, an
    unchanged pod would only be observed again, never a change missed.
    """
    meta = raw.get("metadata") or {}
    read = [meta.get(key) for key in _READ_METADATA]
    read += [raw.get("spec"), raw.get("status")]
    return hashlib.blake2b(orjson.dumps(read), digest_size=16).digest()


class SeenPods:
    """The digest of each tracked pod's last update taken, to drop those that change nothing.

    Observing a pod and stepping its record costs about a quarter of a millisecond; an update
    that changes nothing the core reads adds no fact. About 100 bytes a pod.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[str, bytes]] = {}

    def same(self, namespace: str, name: str, digest: bytes) -> bool:
        """Whether the pod's last update taken had this digest."""
        seen = self._seen.get((namespace, name))
        return seen is not None and seen[1] == digest

    def taken(self, namespace: str, name: str, uid: str, digest: bytes) -> None:
        """The pod's update with this digest went to its record."""
        self._seen[(namespace, name)] = (uid, digest)

    def forget(self, namespace: str, name: str) -> None:
        """The pod is gone."""
        self._seen.pop((namespace, name), None)

    def keep_only(self, namespace: str | None, live_uids: set[str]) -> None:
        """After a listing: forget the pods (of the namespace, or all) it no longer shows."""
        for key, (uid, _) in list(self._seen.items()):
            if (namespace is None or key[0] == namespace) and uid not in live_uids:
                del self._seen[key]


class PodIntake:
    """Takes pods as a watch shows them and feeds the tracked ones to their records."""

    def __init__(
        self,
        kube: Kube,
        scope: Scope,
        writer: RecordWriter,
        held: HeldEvents,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._kube = kube
        self._scope = scope
        self._writer = writer
        self._held = held
        self._metrics = metrics
        self._clock = clock
        self._seen = SeenPods()

    async def pod(self, raw: dict[str, Any], *, deleted: bool) -> None:
        """One pod (ADDED, MODIFIED, listed, or DELETED with its last state).

        An update that changes nothing the core reads, of a pod whose record is held, is
        dropped here (see SeenPods).
        """
        meta = raw.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        if not self._scope.knows(namespace):
            await self._learn_namespace(namespace)
        has_record = self._writer.get(namespace, name) is not None
        if not self._scope.tracks(raw, has_record=has_record):
            return
        self._metrics.observations.labels(stream="pods").inc()
        digest = pod_digest(raw)
        if has_record and not deleted and self._seen.same(namespace, name, digest):
            self._metrics.pods_unchanged.inc()
            return
        labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
        self._writer.submit(core.observe_pod(raw), labels=labels)
        for held in self._held.release(namespace, name):
            self._writer.submit(held)
        uid = meta.get("uid")
        uid = uid if isinstance(uid, str) else None
        if deleted:
            self._seen.forget(namespace, name)
            self._writer.submit(core.PodGone(namespace, name, uid, self._clock(), True))
        elif uid is not None:
            self._seen.taken(namespace, name, uid, digest)

    async def _learn_namespace(self, namespace: str) -> None:
        """Read a namespace's opt-out before deciding: the namespace stream may lag the pods'.

        After a few failed tries the pod's own annotation decides alone (the namespace stays
        unknown, so its next pod asks again): a sick API server must not stop the pod stream.
        """
        try:
            found = await self._kube.retried(lambda: self._kube.get_namespace(namespace))
        except Exception as error:
            log.warning(
                "namespace unreadable: the pod's own annotation decides",
                namespace=namespace,
                error=str(error) or type(error).__name__,
            )
            return
        if found is not None:
            self._scope.learn_namespace(found)

    def missing_after_listing(self, namespace: str | None, listed_uids: Iterable[str]) -> None:
        """Close the records whose pod a full listing no longer shows (deleted unseen)."""
        live = set(listed_uids)
        self._seen.keep_only(namespace, live)
        now = self._clock()
        for state in self._writer.records():
            if namespace is not None and state.namespace != namespace:
                continue
            uid = state.record.pod_uid
            if uid is not None and uid not in live and state.record.removal is None:
                self._writer.submit(core.PodGone(state.namespace, state.name, uid, now, False))
