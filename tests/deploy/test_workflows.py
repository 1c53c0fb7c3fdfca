"""The GitHub Actions workflows: actionlint-clean, and made of the make targets that run here."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.deploy.helpers import IMAGE_TOOLING, MANIFESTS, REPO, WORKFLOWS

Obj = dict[str, Any]


def workflow(name: str) -> Obj:
    loaded: Obj = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    if True in loaded:
        loaded["on"] = loaded.pop(True)
    return loaded


def runs(job: Obj) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


@pytest.fixture(scope="module")
def actionlint() -> str:
    if shutil.which("go") is None and not list(
        Path("/var/cache/podtrail/bin").glob("actionlint-*/actionlint")
    ):
        pytest.skip("actionlint cannot be built here: no Go toolchain and no cached actionlint")
    result = subprocess.run(
        ["bash", str(IMAGE_TOOLING / "actionlint.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"actionlint could not be built from its Go module:\n{result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


def test_actionlint_passes(actionlint: str) -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))
    assert len(files) == 2
    result = subprocess.run(
        [actionlint, "-no-color", *files], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_lint_and_unit_tests_on_push_and_pull_requests() -> None:
    ci = workflow("ci.yaml")
    assert set(ci["on"]) == {"push", "pull_request"}
    commands = runs(ci["jobs"]["lint-unit"])
    assert any(c.startswith("make lint") for c in commands)
    assert any(c.startswith("make unit") for c in commands)


def test_ci_kind_job_calls_the_make_targets_in_order() -> None:
    job = workflow("ci.yaml")["jobs"]["kind"]
    assert job["needs"] == "lint-unit"
    make_steps = [c for c in runs(job) if c.startswith("make ")]
    targets = [c.split()[1] for c in make_steps]
    expected = ["image", "kind", "image-load", "deploy", "e2e"]
    assert [t for t in targets if t in expected] == expected


def test_ci_dumps_cluster_state_on_failure() -> None:
    job = workflow("ci.yaml")["jobs"]["kind"]
    dumps = "\n".join(
        step["run"] for step in job["steps"] if step.get("if") == "failure()" and "run" in step
    )
    assert "kubectl get all -A" in dumps
    assert "kubectl get events -A" in dumps
    assert "logs deployment/podtrail" in dumps


def test_release_pushes_the_tagged_image_the_manifests_reference() -> None:
    release = workflow("release.yaml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    job = release["jobs"]["image"]
    assert job["env"]["IMAGE"] == "ghcr.io/podtrail/podtrail:${{ github.ref_name }}"
    assert release["permissions"]["packages"] == "write"
    commands = "\n".join(runs(job))
    assert "make image" in commands and 'docker push "$IMAGE"' in commands
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert image["name"] == "ghcr.io/podtrail/podtrail"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", image["newTag"]), "a versioned tag, not latest"


def test_workflow_make_targets_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    defined = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.MULTILINE))
    used: set[str] = set()
    for name in ("ci.yaml", "release.yaml"):
        for job in workflow(name)["jobs"].values():
            used |= {c.split()[1] for c in runs(job) if c.startswith("make ")}
    assert used - defined == set(), "targets the workflows call but the Makefile lacks"
