"""Writes refused by the API: a ResourceQuota on records, an admission policy denying status writes.

One operator follows three namespaces. In `quota` a ResourceQuota allows 3 records for 8 pods;
in `denied` a ValidatingAdmissionPolicy refuses every status write of records for 30 s while a
pod there is deleted (its whole termination happens during the refusal); in `free` nothing is
refused. The operator must keep what it holds bounded, keep writing `free`'s records meanwhile,
and write the refused record once allowed, with the facts of the refused period in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tests.e2e.support import container, parse_time, pod
from tests.faults.conftest import plays
from tests.faults.support import (
    GROUP,
    PLURAL,
    VERSION,
    FaultHarness,
    Obj,
    describe,
    duplicate_keys,
    entries,
    record_figures,
    status_of,
    timeline,
)
from tests.support.kube import wait_for
from tests.support.operator import MetricKey, OperatorProcess, has_metric, metric_sum

QUOTA_RECORDS = 3
QUOTA_PODS = 8
REFUSAL_SECONDS = 30
TRAP_TERM = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
REFUSAL_MESSAGE = "record status writes refused by the podtrail fault suite"


def deny_status_writes(name: str, namespace: str) -> list[Obj]:
    """A policy refusing UPDATE of podlifecyclerecords/status, bound to one namespace."""
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": ["*"],
                        "operations": ["UPDATE"],
                        "resources": [f"{PLURAL}/status"],
                    }
                ]
            },
            "validations": [{"expression": "false", "message": REFUSAL_MESSAGE}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    return [policy, binding]


async def status_write_refused(h: FaultHarness, namespace: str, name: str) -> bool:
    """Whether a dry-run status write of this record is refused by the policy now."""
    record = await h.record(namespace, name)
    assert record is not None
    try:
        await h.custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, record, dry_run="All"
        )
    except ApiException as error:
        if REFUSAL_MESSAGE in str(error.body):
            return True
        raise
    return False


async def delete_cluster_object(h: FaultHarness, manifest: Obj) -> None:
    admission = client.AdmissionregistrationV1Api(h.kube.api)
    name = manifest["metadata"]["name"]
    if manifest["kind"] == "ValidatingAdmissionPolicy":
        await admission.delete_validating_admission_policy(name)
    else:
        await admission.delete_validating_admission_policy_binding(name)


class PendingSampler:
    """The operator's pending gauges, once a second."""

    def __init__(self, operator: OperatorProcess) -> None:
        self.operator = operator
        self.samples: list[dict[MetricKey, float]] = []
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.samples.append(await self.operator.metrics())
            await asyncio.sleep(1)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="pending-sampler")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def highest(self, name: str) -> float:
        return max((metric_sum(s, name) for s in self.samples), default=0.0)


async def quota_part(h: FaultHarness, namespace: str) -> None:
    await h.kube.core.create_namespaced_resource_quota(
        namespace,
        {
            "metadata": {"name": "records"},
            "spec": {"hard": {f"count/{PLURAL}.{GROUP}": str(QUOTA_RECORDS)}},
        },
    )
    for index in range(QUOTA_PODS):
        await h.create_pod(namespace, pod(f"q-{index}", container("app", "sleep 3600"), grace=1))


async def refusal_window(h: FaultHarness, denied: str, free: str, suffix: str) -> dict[str, Any]:
    """Refuse `denied`'s status writes; delete its pod meanwhile and start one in `free`."""
    manifests = deny_status_writes(f"fault-deny-status-{suffix}", denied)
    for manifest in manifests:
        await h.kube.apply(manifest)
    h.cleanups.append(lambda: _remove_all(h, manifests))
    await wait_for(
        lambda: status_write_refused(h, denied, "victim"),
        timeout=30,
        what="the admission policy to refuse status writes",
    )
    began = datetime.now(UTC)
    await h.kube.delete_pod(denied, "victim")
    await h.create_pod(free, pod("neighbour", container("app", "sleep 3600"), grace=1))
    neighbour = await h.wait_record(
        free, "neighbour", lambda r: status_of(r).get("phase") == "Running", timeout=REFUSAL_SECONDS
    )
    written_during = datetime.now(UTC)
    await h.kube.wait_pod_gone(denied, "victim", timeout=REFUSAL_SECONDS)
    held = await h.record(denied, "victim")
    await asyncio.sleep(max(0.0, REFUSAL_SECONDS - (datetime.now(UTC) - began).total_seconds()))
    ended = datetime.now(UTC)
    await _remove_all(h, manifests)
    await wait_for(
        lambda: _allowed(h, denied, "victim"), timeout=30, what="status writes allowed again"
    )
    allowed_at = time.monotonic()
    caught_up = await h.wait_record(
        denied,
        "victim",
        lambda r: bool(status_of(r).get("outcome")),
        timeout=60,
        what="the refused record to catch up",
    )
    return {
        "began": began,
        "ended": ended,
        "neighbour": neighbour,
        "neighbour_written_during": written_during < ended,
        "held": held,
        "caught_up": caught_up,
        "catch_up_seconds": time.monotonic() - allowed_at,
    }


async def _allowed(h: FaultHarness, namespace: str, name: str) -> bool:
    return not await status_write_refused(h, namespace, name)


async def _remove_all(h: FaultHarness, manifests: list[Obj]) -> None:
    for manifest in reversed(manifests):
        with contextlib.suppress(ApiException):
            await delete_cluster_object(h, manifest)


async def refused_writes(h: FaultHarness) -> dict[str, Any]:
    quota = await h.namespace("quota")
    denied = await h.namespace("denied")
    free = await h.namespace("free")
    operator = h.operator("refused", [quota, denied, free])
    await operator.start()
    sampler = PendingSampler(operator)
    sampler.start()
    try:
        await quota_part(h, quota)
        await h.create_pod(denied, pod("victim", container("app", TRAP_TERM), grace=10))
        await h.wait_record(denied, "victim", lambda r: status_of(r).get("phase") == "Running")
        window = await refusal_window(h, denied, free, denied.rsplit("-", 1)[-1])
        quota_records = await h.record_count(quota)
        before_lift = await operator.metrics()
        await h.kube.core.delete_namespaced_resource_quota("records", quota)
        lifted_at = time.monotonic()

        async def all_recorded() -> bool:
            return await h.record_count(quota) == QUOTA_PODS

        with contextlib.suppress(AssertionError):
            await wait_for(all_recorded, timeout=60, what="records after the quota", interval=2)
        after_lift = await h.record_count(quota)
        healthy = await operator.healthz()
    finally:
        await sampler.stop()
    return {
        **window,
        "quota_records": quota_records,
        "after_lift": after_lift,
        "after_lift_seconds": time.monotonic() - lifted_at,
        "metrics": before_lift,
        "highest_pending": sampler.highest("podtrail_records_pending"),
        "healthz": healthy,
        "records": await h.records(denied) + await h.records(free) + await h.records(quota),
    }


def in_window(entry: Obj, began: datetime, ended: datetime) -> bool:
    at = parse_time(str(entry.get("time")))
    return began - timedelta(seconds=1) <= at <= ended + timedelta(seconds=1)


@plays(refused_writes)
def test_refused_writes_stay_bounded_and_catch_up(outcome: dict[str, Any]) -> None:
    metrics = outcome["metrics"]
    caught_up: Obj = outcome["caught_up"]
    during = [e for e in timeline(caught_up) if in_window(e, outcome["began"], outcome["ended"])]
    failures = {
        ",".join(f"{k}={v}" for k, v in labels): value
        for (name, labels), value in metrics.items()
        if name == "podtrail_record_write_failures_total"
    }
    duplicates = sum(len(duplicate_keys(r)) for r in outcome["records"])
    record_figures(
        "3. writes refused",
        {
            "pods in the quota namespace / records allowed": f"{QUOTA_PODS} / {QUOTA_RECORDS}",
            "records there while the quota held": outcome["quota_records"],
            "records there 60 s after the quota was lifted": outcome["after_lift"],
            "highest podtrail_records_pending": outcome["highest_pending"],
            "pending observations dropped": metric_sum(metrics, "podtrail_pending_dropped_total"),
            "write failures by reason": failures,
            "status writes refused for (s)": REFUSAL_SECONDS,
            "other namespace's record written during the refusal": outcome[
                "neighbour_written_during"
            ],
            "facts of the refused period in the record once allowed": len(during),
            "refused record caught up after the policy was removed (s)": round(
                outcome["catch_up_seconds"], 1
            ),
            "duplicate timeline keys": duplicates,
        },
    )
    assert outcome["healthz"] == 200
    assert outcome["quota_records"] <= QUOTA_RECORDS
    assert outcome["neighbour_written_during"], "no record written elsewhere during the refusal"
    held = outcome["held"]
    assert not entries(held, "DeletionRequested"), f"a refused write went through: {describe(held)}"
    kinds = {e["type"] for e in during}
    assert {"DeletionRequested", "PodDeleted"} <= kinds, describe(caught_up)
    assert status_of(caught_up).get("outcome") == "GracefulShutdown", describe(caught_up)
    assert outcome["highest_pending"] <= QUOTA_PODS + 3, "pending records grew past the pods"
    assert has_metric(metrics, "podtrail_record_write_failures_total"), (
        "podtrail_record_write_failures_total is not exported: the writer's failure counter "
        "has not landed"
    )
    assert sum(failures.values()) > 0, "refused writes were not counted"
    assert duplicates == 0
