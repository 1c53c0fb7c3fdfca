"""The Dockerfile and the image tooling (image/), without building anything."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from tests.deploy.helpers import IMAGE_TOOLING, REPO

WRAPPER = IMAGE_TOOLING / "runc-wrapper"
CAP = "CAP_SYS_RESOURCE"


def host_lacks_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return not (int(line.split()[1], 16) >> 24) & 1
    return True


def all_caps() -> dict[str, list[str]]:
    names = ["CAP_CHOWN", CAP, "CAP_SYS_ADMIN"]
    return {kind: list(names) for kind in ("bounding", "effective", "permitted", "inheritable")}


def run_wrapper(tmp_path: Path, *args: str, cwd: Path | None = None) -> list[str]:
    """Run the wrapper with a fake runc that records its arguments."""
    fake = tmp_path / "fake-runc"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/runc-args\n')
    fake.chmod(0o755)
    subprocess.run(
        [str(WRAPPER), *args],
        env={"PODTRAIL_REAL_RUNC": str(fake)},
        cwd=cwd or tmp_path,
        check=True,
        timeout=30,
    )
    return (tmp_path / "runc-args").read_text().splitlines()


@pytest.mark.parametrize("form", ["--bundle", "-b", "--bundle=", "cwd"])
def test_runc_wrapper_strips_missing_capability_on_create(tmp_path: Path, form: str) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    config = {"ociVersion": "1.0.2", "process": {"capabilities": all_caps(), "args": ["sh"]}}
    (bundle / "config.json").write_text(json.dumps(config))
    globals_ = [
        "--root",
        "/run/x",
        "--log",
        "/run/x/log.json",
        "--log-format",
        "json",
        "--systemd-cgroup",
    ]
    if form == "cwd":
        command = ["create", "--pid-file", "p", "ctr1"]
    elif form == "--bundle=":
        command = ["create", f"--bundle={bundle}", "ctr1"]
    else:
        command = ["create", form, str(bundle), "ctr1"]
    passed = run_wrapper(tmp_path, *globals_, *command, cwd=bundle)
    assert passed == [*globals_, *command], "runc gets the arguments unchanged"
    written = json.loads((bundle / "config.json").read_text())
    for kind, names in written["process"]["capabilities"].items():
        assert (CAP in names) is not host_lacks_sys_resource(), kind
        assert "CAP_SYS_ADMIN" in names and "CAP_CHOWN" in names
    assert written["process"]["args"] == ["sh"]


def test_runc_wrapper_strips_missing_capability_on_exec(tmp_path: Path) -> None:
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh"], "capabilities": all_caps()}))
    args = ["--root", "/run/x", "exec", "--process", str(process), "--detach", "ctr1"]
    assert run_wrapper(tmp_path, *args) == args
    written = json.loads(process.read_text())
    for names in written["capabilities"].values():
        assert (CAP in names) is not host_lacks_sys_resource()


def test_runc_wrapper_passes_other_commands_through(tmp_path: Path) -> None:
    assert run_wrapper(tmp_path, "--root", "/run/x", "state", "ctr1") == [
        "--root",
        "/run/x",
        "state",
        "ctr1",
    ]


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def test_dockerfile_base_is_a_pinned_build_argument() -> None:
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile(), re.MULTILINE)
    assert match, "the base image is a build argument with a default"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", match.group(1))
    froms = re.findall(r"^FROM (\S+)", dockerfile(), re.MULTILINE)
    assert froms == ["${BASE_IMAGE}", "${BASE_IMAGE}"], "two stages on the same base"


def test_dockerfile_installs_wheels_offline_and_runs_unprivileged() -> None:
    text = dockerfile()
    assert "COPY build/wheels/ /wheels/" in text
    assert "--no-index" in text
    assert "COPY --from=install /opt/podtrail /opt/podtrail" in text
    assert re.search(r"^USER \d+:\d+$", text, re.MULTILINE), "a numeric, non-root user"
    assert not re.search(r"^USER 0", text, re.MULTILINE)
    assert re.search(r"^EXPOSE 8080 9090$", text, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["/opt/podtrail/bin/podtrail"\]$', text, re.MULTILINE)
    for label in ("title", "source", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text
    # The final stage carries no wheels and no pip.
    final = text.split("\nFROM ${BASE_IMAGE}\n", 1)[1]
    assert "/wheels" not in final and "pip" not in final


def test_dockerignore_sends_only_the_wheels() -> None:
    lines = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == ["*", "!build/wheels/"]


@pytest.mark.parametrize("script", sorted(p.name for p in IMAGE_TOOLING.glob("*.sh")))
def test_scripts_parse(script: str) -> None:
    result = subprocess.run(
        ["bash", "-n", str(IMAGE_TOOLING / script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
