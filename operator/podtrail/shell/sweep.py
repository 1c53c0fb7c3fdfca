"""The retention sweep: one loop for all records, no timer or finalizer per record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from podtrail.shell import retention
from podtrail.shell.kube import Kube
from podtrail.shell.logs import get_logger
from podtrail.shell.metrics import Metrics
from podtrail.shell.persist import RecordState, RecordWriter, failure_detail, failure_reason
from podtrail.shell.settings import PodtrailSettings

log = get_logger(__name__)


def record_age(state: RecordState) -> retention.RecordAge:
    """What retention needs of a record the writer knows (a stub included)."""
    return retention.RecordAge(
        namespace=state.namespace,
        name=state.name,
        pod_gone_at=state.pod_gone_at,
        ttl_seconds=state.ttl_seconds,
        created_at=state.created_at,
        pod_seen=state.record.pod_uid is not None or state.stored.pod_uid is not None,
    )


async def sweep_once(
    kube: Kube,
    writer: RecordWriter,
    settings: PodtrailSettings,
    metrics: Metrics,
    now: datetime,
) -> list[retention.Removal]:
    """Delete the records whose time is up, and those over the bounds.

    A delete that fails (a time-out, throttling, a server error) is logged and counted, and the
    sweep goes on with the others; the next sweep chooses that record again.
    """
    ages = [record_age(state) for state in writer.records() if state.exists]
    removals = retention.choose_removals(
        ages,
        now=now,
        retention_seconds=settings.retention_seconds,
        max_per_namespace=settings.max_records_per_namespace,
        max_total=settings.max_records,
    )
    kept = len(ages) - len(removals)
    if kept > settings.max_records:
        log.warning(
            "record bound exceeded: the records of live pods are kept",
            records=kept,
            max_records=settings.max_records,
        )
    for removal in removals:
        state = writer.get(removal.namespace, removal.name)
        if state is None or state.uid is None or state.pending:
            continue
        try:
            await kube.delete_record(removal.namespace, removal.name, state.uid)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            _delete_failed(metrics, removal, error)
            continue
        writer.forget(removal.namespace, removal.name, state.uid)
        metrics.swept.labels(reason=removal.reason).inc()
        log.info(
            "record deleted",
            namespace=removal.namespace,
            record=removal.name,
            reason=removal.reason,
        )
    return removals


def _delete_failed(metrics: Metrics, removal: retention.Removal, error: Exception) -> None:
    reason = failure_reason(error)
    metrics.delete_failures.labels(reason=reason).inc()
    log.warning(
        "record not deleted; the next sweep tries again",
        namespace=removal.namespace,
        record=removal.name,
        why=removal.reason,
        reason=reason,
        detail=failure_detail(error),
    )


async def sweep_forever(
    kube: Kube,
    writer: RecordWriter,
    settings: PodtrailSettings,
    metrics: Metrics,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Run the sweep at its interval until cancelled; a failed sweep is logged and retried."""
    while True:
        try:
            await sweep_once(kube, writer, settings, metrics, clock())
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("retention sweep failed", error=repr(error))
        await asyncio.sleep(settings.sweep_seconds)
