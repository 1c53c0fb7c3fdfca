"""The operator restarted mid-lifecycle: facts backfilled from the pod, nothing twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tests.e2e.conftest import Harness, plays
from tests.e2e.support import (
    container,
    entries,
    entry,
    has_outcome,
    has_phase,
    pod,
    pod_running,
    timeline_keys,
)


async def operator_restart(h: Harness) -> Any:
    namespace = await h.namespace("restart")
    await h.kube.create_pod(
        namespace, pod("finisher", container("app", "sleep 8; exit 0"), restart="Never")
    )
    await h.kube.create_pod(namespace, pod("doomed", container("app", "sleep 3600"), grace=1))
    await h.kube.create_pod(namespace, pod("steady", container("app", "sleep 3600"), grace=1))
    for name in ("finisher", "doomed", "steady"):
        await h.kube.wait_pod(namespace, name, pod_running)
        await h.kube.wait_record(namespace, name, has_phase("Running"))
    before = await h.kube.record(namespace, "steady")
    await h.operator.stop()
    try:
        await h.kube.delete_pod(namespace, "doomed", grace=0)
        await h.kube.wait_pod_gone(namespace, "doomed")
        await h.kube.wait_pod(
            namespace,
            "finisher",
            lambda p: (p.get("status") or {}).get("phase") == "Succeeded",
            timeout=60,
        )
    finally:
        await h.operator.start()
    finisher = await h.kube.wait_record(namespace, "finisher", has_outcome("Succeeded"))
    doomed = await h.kube.wait_record(namespace, "doomed", has_outcome("DeletedUnobserved"))
    await asyncio.sleep(3)
    steady = await h.kube.record(namespace, "steady")
    return before, steady, finisher, doomed


@plays(operator_restart, exclusive=True)
def test_restart_backfills_without_duplicates(outcome: Any) -> None:
    before, steady, finisher, doomed = outcome
    assert steady["status"]["timeline"] == before["status"]["timeline"], (
        "nothing new, nothing twice"
    )
    for record in (steady, finisher, doomed):
        keys = Counter(timeline_keys(record))
        assert [k for k, n in keys.items() if n > 1] == []
    terminated = entry(finisher, "ContainerTerminated", "app")
    assert terminated["exitCode"] == 0 and terminated["source"] == "status"
    assert entries(doomed, "DeletedUnobserved")
