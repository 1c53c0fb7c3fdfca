"""The GitHub Actions workflows: actionlint-clean, made of the make targets and scripts that run
here, and publishing nothing that CI has not passed, by digest, for the repository's owner.

Where a step's script decides something (the kind node image, the image's name, install.yaml,
the chart, the anonymous pull, the release's assets), the test runs that very script, as the
runner does, with its inputs in the environment and stand-ins for the network's tools.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import IMAGE_TOOLING, MANIFESTS, REPO, WORKFLOWS, kubectl_path, render

Obj = dict[str, Any]

KIND_LIB = REPO / "kind" / "lib.sh"
CHART = REPO / "charts" / "podtrail"
CI_WORKFLOW = "./.github/workflows/ci.yaml"
DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
NODE_IMAGE_RE = re.compile(r"kindest/node:(v\d+\.\d+)\.\d+@sha256:[0-9a-f]{64}")
FAKE_DIGEST = "sha256:" + "0123456789abcdef" * 4


def workflow(name: str) -> Obj:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    if True in loaded:
        loaded["on"] = loaded.pop(True)
    return loaded


def all_workflows() -> dict[str, Obj]:
    return {path.name: workflow(path.name) for path in sorted(WORKFLOWS.glob("*.y*ml"))}


def runs(job: Obj) -> list[str]:
    return [step["run"] for step in job.get("steps", []) if "run" in step]


def step(name: str, job: str, step_id: str) -> Obj:
    matching: list[Obj] = [
        s for s in workflow(name)["jobs"][job]["steps"] if s.get("id") == step_id
    ]
    (found,) = matching
    return found


def run_step(
    found: Obj,
    cwd: Path,
    env: Mapping[str, str],
    path: tuple[Path, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """A step's script as the runner runs it (bash -eo pipefail), its inputs in `env`."""
    script: str = found["run"]
    environment = {
        "PATH": os.pathsep.join([*(str(p) for p in path), os.environ.get("PATH", "/usr/bin:/bin")]),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        **env,
    }
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def needs_of(job: Obj) -> set[str]:
    needs = job.get("needs", [])
    return {needs} if isinstance(needs, str) else set(needs)


def transitive_needs(jobs: Obj, name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(needs_of(jobs[name]))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(needs_of(jobs[current]))
    return seen


def every_step() -> Iterator[tuple[str, str, Obj]]:
    for name, loaded in all_workflows().items():
        for job_name, job in loaded["jobs"].items():
            for found in job.get("steps", []):
                yield name, job_name, found


def kind_node_images() -> dict[str, str]:
    """KIND_NODE_IMAGES as kind/lib.sh defines it: minor -> node image."""
    result = subprocess.run(
        [
            "bash",
            "-c",
            'source "$1"; for minor in "${!KIND_NODE_IMAGES[@]}"; do'
            ' printf "%s %s\\n" "$minor" "${KIND_NODE_IMAGES[$minor]}"; done',
            "-",
            str(KIND_LIB),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(line.split(" ", 1) for line in result.stdout.splitlines())


def kind_lib_value(name: str, env: Mapping[str, str]) -> str:
    result = subprocess.run(
        ["bash", "-c", f'source "$1"; printf "%s" "${name}"', "-", str(KIND_LIB)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


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


# Lint: the workflows as GitHub reads them.


def test_actionlint_passes(actionlint: str) -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))
    assert {Path(f).name for f in files} >= {"ci.yaml", "release.yaml"}
    result = subprocess.run(
        [actionlint, "-no-color", *files], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_take_their_inputs_from_the_environment() -> None:
    """No ${{ }} inside a script: a tag or a name can never become shell code."""
    injected = [
        f"{name}: {job}: {found.get('name', found.get('id'))}"
        for name, job, found in every_step()
        if "${{" in found.get("run", "")
    ]
    assert injected == []


def test_actions_are_pinned_by_commit() -> None:
    """A moved tag of an action cannot change what runs with the release's write access."""
    loose = [
        f"{name}: {found['uses']}"
        for name, _, found in every_step()
        if "uses" in found
        and not found["uses"].startswith("./")
        and not re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", found["uses"])
    ]
    assert loose == []


def image_references() -> list[str]:
    """Every container image the workflows and kind/lib.sh name."""
    references: list[str] = []
    for name, loaded in all_workflows().items():
        for job in loaded["jobs"].values():
            container = job.get("container")
            if container is not None:
                references.append(container if isinstance(container, str) else container["image"])
            references += [service["image"] for service in job.get("services", {}).values()]
            for found in job.get("steps", []):
                uses = found.get("uses", "")
                if uses.startswith("docker://"):
                    references.append(uses.removeprefix("docker://"))
                for key, value in found.get("with", {}).items():
                    if key == "image":
                        references.append(str(value))
                    references += re.findall(r"\bimage=(\S+)", str(value))
        references += re.findall(r"kindest/node[:@][^\s\"'`]+", (WORKFLOWS / name).read_text())
    references += re.findall(r"kindest/node[:@][^\s\"'`)]+", KIND_LIB.read_text())
    return references


def test_every_image_reference_is_pinned_by_digest() -> None:
    references = image_references()
    assert any(r.startswith("kindest/node") for r in references)
    assert [r for r in references if not DIGEST_RE.search(r)] == []


# kind: the node images of the release notes of the project's kind.


def test_kind_node_images_are_those_of_the_kind_release_by_digest() -> None:
    images = kind_node_images()
    assert images, "kind/lib.sh defines no KIND_NODE_IMAGES"
    for minor, image in images.items():
        match = NODE_IMAGE_RE.fullmatch(image)
        assert match, image
        assert match.group(1) == minor, f"{image} filed under {minor}"


def test_online_node_image_follows_the_kubernetes_minor() -> None:
    images = kind_node_images()
    minor = min(images, key=lambda m: tuple(int(p) for p in m[1:].split(".")))
    assert kind_lib_value("KIND_ONLINE_NODE_IMAGE", {"K8S_VERSION": f"{minor}.99"}) == images[minor]
    assert kind_lib_value("KIND_ONLINE_NODE_IMAGE", {"K8S_VERSION": "v1.1.0"}) == ""
    mine = "registry.example/node:v1@sha256:" + "ab" * 32
    assert (
        kind_lib_value("KIND_ONLINE_NODE_IMAGE", {"K8S_VERSION": "v1.1.0", "KIND_NODE_IMAGE": mine})
        == mine
    )


def test_kind_default_node_image_is_in_the_table() -> None:
    """kind's own default (pkg/apis/config/defaults/image.go of its module) is listed as is."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).is_file():
        pytest.skip("no Go toolchain to find the kind module with")
    version = kind_lib_value("KIND_VERSION", {})
    modcache = subprocess.run(
        [go, "env", "GOMODCACHE"], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    source = Path(modcache) / f"sigs.k8s.io/kind@{version}/pkg/apis/config/defaults/image.go"
    if not source.is_file():
        pytest.skip(f"the kind module {version} is not in the module cache")
    (default,) = re.findall(r'const Image = "([^"]+)"', source.read_text())
    match = NODE_IMAGE_RE.fullmatch(default)
    assert match, default
    assert kind_node_images().get(match.group(1)) == default


# ci.yaml


def test_ci_runs_on_push_pull_requests_and_for_the_release() -> None:
    ci = workflow("ci.yaml")
    assert set(ci["on"]) == {"push", "pull_request", "workflow_call"}
    commands = runs(ci["jobs"]["lint-unit"])
    assert any(c.startswith("make lint") for c in commands)
    assert any(c.startswith("make unit") for c in commands)


def test_ci_runs_actionlint_on_the_workflows(actionlint: str) -> None:
    result = run_step(step("ci.yaml", "workflows-scripts", "actionlint"), REPO, {})
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_lints_every_workflow_with_the_actionlint_the_repository_builds(
    tmp_path: Path,
) -> None:
    """The step against a stand-in image/actionlint.sh whose actionlint lists what it checks."""
    calls = tmp_path / "calls"
    fake = executable(tmp_path / "actionlint", f'#!/bin/sh\nprintf "%s\\n" "$*" >>"{calls}"\n')
    workspace = tmp_path / "workspace"
    (workspace / "image").mkdir(parents=True)
    executable(workspace / "image" / "actionlint.sh", f"#!/bin/sh\necho {fake}\n")
    copy = workspace / ".github" / "workflows"
    shutil.copytree(WORKFLOWS, copy)
    result = run_step(step("ci.yaml", "workflows-scripts", "actionlint"), workspace, {})
    assert result.returncode == 0, result.stdout + result.stderr
    checked = [line.split() for line in calls.read_text().splitlines()]
    linted = [args for args in checked if args != ["-version"]]
    assert len(linted) == 1, checked
    expected = {f".github/workflows/{p.name}" for p in WORKFLOWS.glob("*.y*ml")}
    assert set(linted[0]) == expected
    # The stand-in's failure fails the step.
    executable(fake, "#!/bin/sh\nexit 1\n")
    assert run_step(step("ci.yaml", "workflows-scripts", "actionlint"), workspace, {}).returncode


def test_ci_runs_shellcheck_on_every_script(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(
        bin_dir / "shellcheck",
        f'#!/bin/sh\nfor f in "$@"; do printf "%s\\n" "$f"; done >>"{calls}"\n',
    )
    result = run_step(step("ci.yaml", "workflows-scripts", "shellcheck"), REPO, {}, (bin_dir,))
    assert result.returncode == 0, result.stderr
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    expected = {f for f in tracked if f.endswith(".sh")} | {".ci/run"}
    assert set(calls.read_text().splitlines()) == expected


def test_ci_kind_job_calls_the_make_targets_in_order() -> None:
    job = workflow("ci.yaml")["jobs"]["kind"]
    assert job["needs"] == "lint-unit"
    make_steps = [c for c in runs(job) if c.startswith("make ")]
    targets = [c.split()[1] for c in make_steps]
    expected = ["image", "kind", "image-load", "deploy", "e2e"]
    assert [t for t in targets if t in expected] == expected


def test_ci_kind_matrix_runs_only_node_images_of_the_kind_release(tmp_path: Path) -> None:
    job = workflow("ci.yaml")["jobs"]["kind"]
    versions: list[str] = job["strategy"]["matrix"]["kubernetes"]
    images = kind_node_images()
    minors = sorted(images, key=lambda m: tuple(int(p) for p in m[1:].split(".")))
    assert {v.rsplit(".", 1)[0] for v in versions} == {minors[0], minors[-1]}, (
        "the oldest and the newest minor of the kind release"
    )
    resolve = step("ci.yaml", "kind", "node-image")
    for version in versions:
        github_env = tmp_path / f"env-{version}"
        result = run_step(resolve, REPO, {"K8S_VERSION": version, "GITHUB_ENV": str(github_env)})
        assert result.returncode == 0, result.stdout + result.stderr
        assert github_env.read_text() == f"KIND_NODE_IMAGE={images[version.rsplit('.', 1)[0]]}\n"
    # A version the kind release has no image for fails the job rather than pulling a bare tag.
    github_env = tmp_path / "env-old"
    result = run_step(resolve, REPO, {"K8S_VERSION": "v1.30.13", "GITHUB_ENV": str(github_env)})
    assert result.returncode != 0
    assert not github_env.exists()


def test_ci_uploads_the_cluster_logs_on_failure(tmp_path: Path) -> None:
    job = workflow("ci.yaml")["jobs"]["kind"]
    collect = step("ci.yaml", "kind", "cluster-logs")
    assert collect["if"] == "failure()"
    # The step against a kubectl and a kind that answer with their arguments.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "kubectl", '#!/bin/sh\necho "kubectl $*"\n')
    workspace = tmp_path / "workspace"
    (workspace / "kind").mkdir(parents=True)
    executable(
        workspace / "kind" / "kind.sh",
        '#!/bin/sh\n[ "$1 $2" = "export logs" ] && mkdir -p "$3" && echo "$*" >"$3/args"\n',
    )
    logs = tmp_path / "cluster-logs"
    result = run_step(
        collect,
        tmp_path,
        {"CLUSTER_LOGS": str(logs), "GITHUB_WORKSPACE": str(workspace), "KIND_CLUSTER": "podtrail"},
        (bin_dir,),
    )
    assert result.returncode == 0, result.stderr
    collected = "\n".join(p.read_text() for p in sorted(logs.rglob("*")) if p.is_file())
    for command in (
        "kubectl get events -A",
        "kubectl -n podtrail-system logs deployment/podtrail",
        "kubectl get podlifecyclerecords -A",
    ):
        assert command in collected
    assert (logs / "kind" / "args").read_text().split() == [
        "export",
        "logs",
        str(logs / "kind"),
        "--name",
        "podtrail",
    ]
    # ... and uploaded from there.
    (upload,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert upload["if"] == "failure()"
    assert upload["with"]["path"] == "${{ env.CLUSTER_LOGS }}"
    assert "CLUSTER_LOGS" in job["env"]


# release.yaml


def test_release_runs_on_version_tags_and_publishes_only_after_ci() -> None:
    release = workflow("release.yaml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    (ci_job,) = [name for name, job in jobs.items() if job.get("uses") == CI_WORKFLOW]
    assert release["permissions"] == {}
    writers = {
        name for name, job in jobs.items() if "write" in (job.get("permissions") or {}).values()
    }
    assert writers == {"image", "release"}
    for name in writers:
        assert ci_job in transitive_needs(jobs, name), f"{name} runs before CI passed"
    assert jobs["image"]["permissions"] == {"contents": "read", "packages": "write"}
    assert jobs["release"]["permissions"] == {"contents": "write"}
    # The GitHub release waits for the check that anyone can pull the image.
    assert "public" in transitive_needs(jobs, "release")


def test_release_builds_both_platforms_with_provenance_and_publishes_the_digest() -> None:
    job = workflow("release.yaml")["jobs"]["image"]
    (build,) = [s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action")]
    options = build["with"]
    assert set(options["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert options["provenance"] == "mode=max"
    assert options["sbom"] is True
    assert options["push"] is True
    assert options["context"] == "."
    assert options["tags"] == "${{ steps.name.outputs.name }}:${{ github.ref_name }}"
    assert job["outputs"]["digest"] == "${{ steps." + build["id"] + ".outputs.digest }}"
    labels = dict(line.split("=", 1) for line in options["labels"].splitlines() if line.strip())
    assert labels["org.opencontainers.image.source"] == "${{ steps.meta.outputs.source }}"
    # The wheels for both platforms exist before the build: the Dockerfile installs them.
    ids = [s.get("id") for s in job["steps"]]
    assert ids.index("wheels") < ids.index(build["id"])
    assert options["network"] == "none"
    assert ids.index("qemu") < ids.index(build["id"])


def test_release_prepares_the_wheels_of_the_platforms_it_builds(tmp_path: Path) -> None:
    """The wheels step against a stand-in image/build.sh that tells how it was called."""
    job = workflow("release.yaml")["jobs"]["image"]
    (build,) = [s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action")]
    (tmp_path / "image").mkdir()
    executable(
        tmp_path / "image" / "build.sh",
        '#!/bin/sh\nprintf "%s\\n" "$PLATFORMS" "$*" >"$(dirname "$0")/called"\n',
    )
    result = run_step(step("release.yaml", "image", "wheels"), tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr
    platforms, args = (tmp_path / "image" / "called").read_text().splitlines()
    assert args == "--wheels-only", "wheels only: the image is built by the next steps"
    assert set(platforms.split(",")) == set(build["with"]["platforms"].split(","))


def test_release_image_metadata_names_the_publishing_repository(tmp_path: Path) -> None:
    output = tmp_path / "output"
    env = {
        "GITHUB_REF_NAME": "v1.2.3",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "some-fork/podtrail",
        "GITHUB_OUTPUT": str(output),
    }
    result = run_step(step("release.yaml", "image", "meta"), REPO, env)
    assert result.returncode == 0, result.stdout + result.stderr
    values = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert values["version"] == "1.2.3"
    assert values["source"] == "https://github.com/some-fork/podtrail"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", values["created"])


def test_release_image_name_follows_the_repository_owner(tmp_path: Path) -> None:
    output = tmp_path / "output"
    result = run_step(
        step("release.yaml", "image", "name"),
        tmp_path,
        {"GITHUB_REPOSITORY_OWNER": "Some-Fork", "GITHUB_OUTPUT": str(output)},
    )
    assert result.returncode == 0, result.stderr
    assert output.read_text() == "name=ghcr.io/some-fork/podtrail\n"
    # No image name with a fixed owner anywhere in the workflow (its scripts, inputs and
    # settings; comments aside): every one is built from the owner, as the step above does.
    fixed = [
        value
        for value in strings(workflow("release.yaml"))
        if re.search(r"ghcr\.io/[\w.-]+/podtrail", value)
    ]
    assert fixed == [], "an image name fixed in the workflow, not the owner's"


def strings(value: Any) -> Iterator[str]:
    """Every string in a loaded YAML document, keys and values."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def copy_into(tmp_path: Path, *relative: str) -> None:
    for name in relative:
        source = REPO / name
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)


def release_env(**extra: str) -> dict[str, str]:
    return {
        "GITHUB_REF_NAME": "v" + project_version(),
        "GITHUB_SHA": "f" * 40,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "some-fork/podtrail",
        "IMAGE_NAME": "ghcr.io/some-fork/podtrail",
        "IMAGE_DIGEST": FAKE_DIGEST,
        **extra,
    }


def project_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def test_release_preflight_refuses_a_tag_the_sources_do_not_name(tmp_path: Path) -> None:
    if not (CHART / "Chart.yaml").is_file():
        pytest.skip("no charts/podtrail yet")
    copy_into(
        tmp_path, "pyproject.toml", "manifests/kustomization.yaml", "charts/podtrail/Chart.yaml"
    )
    preflight = step("release.yaml", "preflight", "versions")
    good = run_step(preflight, tmp_path, {"GITHUB_REF_NAME": "v" + project_version()})
    assert good.returncode == 0, good.stdout + good.stderr
    for tag in ("v99.0.0", project_version(), "v1.2"):
        bad = run_step(preflight, tmp_path, {"GITHUB_REF_NAME": tag})
        assert bad.returncode != 0, tag
        assert "::error::" in bad.stdout


def test_release_install_yaml_is_the_manifests_with_the_image_by_digest(tmp_path: Path) -> None:
    kubectl = kubectl_path()
    if kubectl is None:
        pytest.skip("no kubectl to render with")
    copy_into(tmp_path, "manifests", "crds")
    result = run_step(
        step("release.yaml", "release", "install-yaml"),
        tmp_path,
        release_env(),
        (Path(kubectl).parent,),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    released = [
        d for d in yaml.safe_load_all((tmp_path / "dist" / "install.yaml").read_text()) if d
    ]
    expected = render(kubectl, MANIFESTS)
    for obj in expected:
        if obj["kind"] == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                container["image"] = f"ghcr.io/some-fork/podtrail@{FAKE_DIGEST}"
    assert released == expected


def test_release_chart_is_packaged_with_the_image_by_digest(tmp_path: Path) -> None:
    if not (CHART / "Chart.yaml").is_file():
        pytest.skip("no charts/podtrail yet")
    helm = subprocess.run(
        ["bash", str(IMAGE_TOOLING / "helm.sh")], capture_output=True, text=True, check=False
    )
    if helm.returncode != 0:
        pytest.skip(f"no helm:\n{helm.stderr[-1000:]}")
    copy_into(tmp_path, "charts/podtrail", "image", "cluster")
    env = release_env()
    result = run_step(step("release.yaml", "release", "chart"), tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    package = tmp_path / "dist" / f"podtrail-{project_version()}.tgz"

    def show(what: str) -> str:
        return subprocess.run(
            [helm.stdout.strip(), "show", what, str(package)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    chart = yaml.safe_load(show("chart"))
    assert chart["version"] == project_version()
    assert chart["appVersion"] == env["GITHUB_REF_NAME"]
    with tarfile.open(package) as archive:
        member = archive.extractfile("podtrail/values.yaml")
        assert member is not None
        values_text = member.read().decode()
    values = yaml.safe_load(values_text)
    assert values["image"]["repository"] == env["IMAGE_NAME"]
    assert values["image"]["digest"] == FAKE_DIGEST
    # Every other line of values.yaml, its comments too, as the chart has it.
    original = (CHART / "values.yaml").read_text().splitlines()
    packaged = values_text.splitlines()
    assert len(packaged) == len(original)
    changed = [(a, b) for a, b in zip(original, packaged, strict=True) if a != b]
    assert [b.strip() for _, b in changed] == [
        f"repository: {env['IMAGE_NAME']}",
        f'digest: "{FAKE_DIGEST}"',
    ]


def fake_curl(bin_dir: Path, index: Path, status: int) -> None:
    """curl for ghcr.io: an anonymous token, then the index (status 200) or a refusal."""
    executable(
        bin_dir / "curl",
        f"""#!{sys.executable}
import shutil, sys
args = sys.argv[1:]
url = args[-1]
if "/token?" in url:
    print('{{"token": "anonymous"}}')
    sys.exit(0)
out = args[args.index("-o") + 1]
if {status} == 200:
    shutil.copyfile({str(index)!r}, out)
else:
    open(out, "w").write('{{"errors": [{{"code": "DENIED"}}]}}')
sys.stdout.write("{status}")
""",
    )


@pytest.mark.parametrize("public", [True, False])
def test_release_checks_that_anyone_can_pull_the_image(tmp_path: Path, public: bool) -> None:
    index = tmp_path / "index-source.json"
    index.write_text('{"schemaVersion": 2, "manifests": []}')
    digest = "sha256:" + hashlib.sha256(index.read_bytes()).hexdigest()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_curl(bin_dir, index, 200 if public else 401)
    # No waiting between attempts in the test.
    executable(bin_dir / "sleep", "#!/bin/sh\nexit 0\n")
    work = tmp_path / "work"
    work.mkdir()
    result = run_step(
        step("release.yaml", "public", "anonymous-pull"),
        work,
        release_env(IMAGE_DIGEST=digest, OWNER_TYPE="Organization"),
        (bin_dir,),
    )
    if public:
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        assert result.returncode != 0
        assert "Change visibility" in result.stdout
        assert "Package creation" in result.stdout
        assert "docs/release.md" in result.stdout


@pytest.mark.parametrize("exists", [False, True])
def test_release_attaches_install_yaml_and_the_chart(tmp_path: Path, exists: bool) -> None:
    calls = tmp_path / "gh-calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(
        bin_dir / "gh",
        f"""#!{sys.executable}
import json, sys
with open({str(calls)!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(({0 if exists else 1}) if sys.argv[1:3] == ["release", "view"] else 0)
""",
    )
    work = tmp_path / "work"
    (work / "dist").mkdir(parents=True)
    version = project_version()
    (work / "dist" / "install.yaml").write_text("kind: Namespace\n")
    (work / "dist" / f"podtrail-{version}.tgz").write_bytes(b"chart")
    (work / "dist" / f"kubectl-podtrail-v{version}.tar.gz").write_bytes(b"plugin")
    (work / "dist" / "podtrail-krew.yaml").write_text("kind: Plugin\n")
    result = run_step(step("release.yaml", "release", "publish"), work, release_env(), (bin_dir,))
    assert result.returncode == 0, result.stdout + result.stderr
    called = [json.loads(line) for line in calls.read_text().splitlines()]
    tag = "v" + version
    assets = {"dist/install.yaml", f"dist/podtrail-{version}.tgz", "dist/SHA256SUMS"}
    assets |= {f"dist/kubectl-podtrail-{tag}.tar.gz", "dist/podtrail-krew.yaml"}
    if exists:
        (published,) = [c for c in called if c[:3] == ["release", "upload", tag]]
        assert "--clobber" in published
        (edited,) = [c for c in called if c[:3] == ["release", "edit", tag]]
        notes_given = edited
    else:
        (published,) = [c for c in called if c[:3] == ["release", "create", tag]]
        assert "--verify-tag" in published
        notes_given = published
    assert assets <= set(published)
    notes = (work / notes_given[notes_given.index("--notes-file") + 1]).read_text()
    assert f"ghcr.io/some-fork/podtrail@{FAKE_DIGEST}" in notes
    assert f"/releases/download/{tag}/install.yaml" in notes
    sums = (work / "dist" / "SHA256SUMS").read_text()
    assert hashlib.sha256(b"chart").hexdigest() in sums
    assert hashlib.sha256(b"plugin").hexdigest() in sums


def test_workflow_make_targets_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    defined = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.MULTILINE))
    used: set[str] = set()
    for loaded in all_workflows().values():
        for job in loaded["jobs"].values():
            used |= {c.split()[1] for c in runs(job) if c.startswith("make ")}
    assert used - defined == set(), "targets the workflows call but the Makefile lacks"
