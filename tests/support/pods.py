"""Pod manifests for the cluster suites, as plain dicts: containers running a shell script in the
tests' image (built and loaded into the nodes, never pulled; tests/support/images.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tests.support.images import TESTBOX, pull_policy

Obj = dict[str, Any]


def container(name: str, script: str, *, image: str = TESTBOX, **extra: Any) -> Obj:
    """A container running a shell script in the test image (loaded: never pulled)."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy(image),
        "command": ["sh", "-c", script],
        **extra,
    }


def pod(
    name: str,
    *containers: Obj,
    init: Iterable[Obj] = (),
    grace: int | None = None,
    restart: str = "Always",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    **spec: Any,
) -> Obj:
    """A pod of these containers (no service links, no token), labelled app=NAME by default."""
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {"app": name})},
        "spec": {
            "containers": list(containers),
            "restartPolicy": restart,
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            **spec,
        },
    }
    if annotations:
        body["metadata"]["annotations"] = dict(annotations)
    if init:
        body["spec"]["initContainers"] = list(init)
    if grace is not None:
        body["spec"]["terminationGracePeriodSeconds"] = grace
    return body
