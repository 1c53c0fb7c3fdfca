"""The pod predicates read a pod in either form the client returns: the API's JSON or a model."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.support.kube import (
    container_status,
    container_terminated,
    pod_phase,
    pod_ready,
    pod_running,
    restarted,
)

AS_JSON: dict[str, Any] = {
    "metadata": {"name": "p"},
    "status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "initContainerStatuses": [{"name": "init", "restartCount": 0}],
        "containerStatuses": [
            {"name": "app", "restartCount": 2, "state": {"terminated": {"exitCode": 1}}},
            {"name": "side", "restartCount": 0, "state": {"running": {}}},
        ],
    },
}

AS_MODEL = client.V1Pod(
    metadata=client.V1ObjectMeta(name="p"),
    status=client.V1PodStatus(
        phase="Running",
        conditions=[client.V1PodCondition(type="Ready", status="True")],
        init_container_statuses=[
            client.V1ContainerStatus(
                name="init", image="i", image_id="", ready=True, restart_count=0
            )
        ],
        container_statuses=[
            client.V1ContainerStatus(
                name="app",
                image="i",
                image_id="",
                ready=False,
                restart_count=2,
                state=client.V1ContainerState(
                    terminated=client.V1ContainerStateTerminated(exit_code=1)
                ),
            ),
            client.V1ContainerStatus(
                name="side",
                image="i",
                image_id="",
                ready=True,
                restart_count=0,
                state=client.V1ContainerState(running=client.V1ContainerStateRunning()),
            ),
        ],
    ),
)


@pytest.mark.parametrize("pod", [AS_JSON, AS_MODEL], ids=["json", "model"])
def test_predicates_read_either_form(pod: Any) -> None:
    assert pod_phase("Pending", "Running")(pod)
    assert not pod_phase("Failed")(pod)
    assert pod_running(pod)
    assert pod_ready(pod)
    assert container_terminated("app")(pod)
    assert not container_terminated("side")(pod)
    assert restarted("app", 2)(pod)
    assert not restarted("app", 3)(pod)
    assert not restarted("missing")(pod)
    assert container_status(pod, "init", init=True) is not None
    assert container_status(pod, "init") is None


@pytest.mark.parametrize(
    "pod", [{}, {"status": None}, client.V1Pod()], ids=["empty", "none", "bare"]
)
def test_a_pod_without_status_matches_nothing(pod: Any) -> None:
    assert not pod_phase("Running")(pod)
    assert not pod_ready(pod)
    assert not pod_running(pod)
    assert not container_terminated("app")(pod)
    assert container_status(pod, "app") is None
