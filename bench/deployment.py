"""The shipped Deployment's bounds the figures are set against: startup probe and memory limit.

Read from manifests/manager/deployment.yaml at run time (and kept in the results), so the table
follows the manifest as it changes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "manifests" / "manager" / "deployment.yaml"
CONTAINER = "operator"

# Kubernetes' defaults for a probe's fields left out.
PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "failureThreshold": 3}
_QUANTITY = re.compile(r"^(?P<number>[0-9.]+(?:e[0-9]+)?)(?P<suffix>[KMGT]i?|k|m)?$")
_FACTORS = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "K": 1e3,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def mebibytes(quantity: str | int) -> float:
    """A memory quantity ("512Mi", "1G", "536870912") in MiB."""
    found = _QUANTITY.match(str(quantity).strip())
    if found is None:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return float(found.group("number")) * _FACTORS[found.group("suffix")] / 2**20


def bounds(text: str, container: str = CONTAINER) -> dict[str, Any]:
    """The startup probe's budget (s) and the memory limit (MiB) of `container` in a manifest.

    The budget is the time the kubelet gives the startup probe before it restarts the container:
    initialDelaySeconds + periodSeconds × failureThreshold. None where the manifest sets none.
    """
    spec = _container(text, container)
    found: dict[str, Any] = {"startup_probe": None, "memory_limit_mib": None}
    probe = spec.get("startupProbe")
    if probe:
        fields = {key: int(probe.get(key, default)) for key, default in PROBE_DEFAULTS.items()}
        budget = (
            fields["initialDelaySeconds"] + fields["periodSeconds"] * fields["failureThreshold"]
        )
        found["startup_probe"] = {**fields, "budget_seconds": budget}
    limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
    if limit is not None:
        found["memory_limit_mib"] = mebibytes(limit)
    return found


def _container(text: str, name: str) -> dict[str, Any]:
    for document in yaml.safe_load_all(text):
        if not isinstance(document, dict) or document.get("kind") != "Deployment":
            continue
        for container in document["spec"]["template"]["spec"].get("containers") or []:
            if container.get("name") == name:
                return dict(container)
    raise LookupError(f"no Deployment with a container {name!r}")


def read(path: Path = MANIFEST) -> dict[str, Any] | None:
    """The bounds of the shipped Deployment, with where they came from; None if unreadable."""
    try:
        found = bounds(path.read_text())
    except (OSError, yaml.YAMLError, LookupError, KeyError, TypeError, ValueError):
        return None
    source = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return {**found, "source": str(source)}
