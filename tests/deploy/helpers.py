"""What the deployment tests share: rendering the kustomizations, running the image tooling."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cluster import find_kubectl

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
EXAMPLE_OVERLAY = REPO / "examples" / "overlay-options"
IMAGE_TOOLING = REPO / "image"
WORKFLOWS = REPO / ".github" / "workflows"

Obj = dict[str, Any]

# A kubectl for rendering: the one cluster/context.sh uses (the local cluster's, built for its
# version, when there is one; else the one on PATH), under the name the deploy tests import.
kubectl_path = find_kubectl


def render(kubectl: str, path: Path) -> list[Obj]:
    """`kubectl kustomize PATH` as a list of objects; fails the test on any error or warning."""
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    assert result.stderr.strip() == "", f"kubectl kustomize {path} warned:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: Iterable[Obj], kind: str, name: str) -> Obj:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind}/{name} in the rendered manifests")


def rule_set(role: Obj) -> set[tuple[str, str, str]]:
    """A role's rules as (apiGroup, resource, verb) triples."""
    triples: set[tuple[str, str, str]] = set()
    for rule in role.get("rules") or []:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    triples.add((group, resource, verb))
    return triples


def run_tool(script: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Run one of image/*.sh; returns its output, fails the test with its tail on error."""
    result = subprocess.run(
        ["bash", str(IMAGE_TOOLING / script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-60:])
        pytest.fail(f"image/{script} failed ({result.returncode}):\n{tail}", pytrace=False)
    return output
