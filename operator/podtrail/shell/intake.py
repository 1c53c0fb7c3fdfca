"""Pods into records: the scope check, held Events, removals — for any stream that sees pods."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from podtrail import core
from podtrail.shell.kube import Kube
from podtrail.shell.logs import get_logger
from podtrail.shell.metrics import Metrics
from podtrail.shell.persist import RecordWriter
from podtrail.shell.scope import Scope
from podtrail.shell.streams import HeldEvents

log = get_logger(__name__)


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

    async def pod(self, raw: dict[str, Any], *, deleted: bool) -> None:
        """One pod (ADDED, MODIFIED, listed, or DELETED with its last state)."""
        meta = raw.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        if not self._scope.knows(namespace):
            await self._learn_namespace(namespace)
        if not self._scope.tracks(raw, has_record=self._writer.get(namespace, name) is not None):
            return
        self._metrics.observations.labels(stream="pods").inc()
        labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
        self._writer.submit(core.observe_pod(raw), labels=labels)
        for held in self._held.release(namespace, name):
            self._writer.submit(held)
        if deleted:
            uid = meta.get("uid")
            self._writer.submit(
                core.PodGone(
                    namespace, name, uid if isinstance(uid, str) else None, self._clock(), True
                )
            )

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
        now = self._clock()
        for state in self._writer.records():
            if namespace is not None and state.namespace != namespace:
                continue
            uid = state.record.pod_uid
            if uid is not None and uid not in live and state.record.removal is None:
                self._writer.submit(core.PodGone(state.namespace, state.name, uid, now, False))
