"""The shipped Deployment's startup probe budget and memory limit, read from its manifest."""

from __future__ import annotations

import pytest

from bench import deployment

MANIFEST = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: podtrail}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: podtrail}
spec:
  template:
    spec:
      containers:
      - name: sidecar
        resources: {limits: {memory: 1Gi}}
      - name: operator
        startupProbe:
          httpGet: {path: /healthz, port: health}
          initialDelaySeconds: 5
          periodSeconds: 2
          failureThreshold: 60
        resources:
          limits: {cpu: "1", memory: 512Mi}
"""


def test_the_probe_budget_and_the_memory_limit() -> None:
    assert deployment.bounds(MANIFEST) == {
        "startup_probe": {
            "initialDelaySeconds": 5,
            "periodSeconds": 2,
            "failureThreshold": 60,
            "budget_seconds": 125,
        },
        "memory_limit_mib": 512.0,
    }


def test_kubernetes_defaults_and_missing_bounds() -> None:
    text = MANIFEST.replace("          periodSeconds: 2\n", "").replace("memory: 512Mi", "x: y")
    found = deployment.bounds(text)
    assert found["startup_probe"]["budget_seconds"] == 5 + 10 * 60  # periodSeconds: 10
    assert found["memory_limit_mib"] is None
    with pytest.raises(LookupError):
        deployment.bounds(MANIFEST, container="manager")


@pytest.mark.parametrize(
    ("quantity", "mib"),
    [("512Mi", 512.0), ("1Gi", 1024.0), ("536870912", 512.0), ("1048576k", 1000.0), (256, 2**-12)],
)
def test_memory_quantities(quantity: str | int, mib: float) -> None:
    assert deployment.mebibytes(quantity) == pytest.approx(mib)


def test_the_shipped_manifest_is_read() -> None:
    # Its values may change: only that both are found.
    found = deployment.read()
    assert found is not None
    assert found["startup_probe"]["budget_seconds"] > 0
    assert found["memory_limit_mib"] > 0
    assert found["source"] == "manifests/manager/deployment.yaml"
