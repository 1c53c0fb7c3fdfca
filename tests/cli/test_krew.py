"""The krew manifest and the launcher its archive ships."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "plugins" / "krew" / "podtrail.yaml"
LAUNCHER = REPO / "plugins" / "krew" / "kubectl-podtrail"


def _manifest() -> dict:
    data: dict = yaml.safe_load(MANIFEST.read_text())
    return data


def test_the_manifest_is_a_krew_plugin_naming_the_binary() -> None:
    plugin = _manifest()
    assert plugin["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert plugin["kind"] == "Plugin"
    assert plugin["metadata"]["name"] == "podtrail"
    spec = plugin["spec"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", spec["version"])
    assert spec["shortDescription"] and len(spec["shortDescription"]) <= 50
    assert spec["homepage"].startswith("https://")
    for platform in spec["platforms"]:
        assert platform["bin"] == "kubectl-podtrail"
        assert platform["uri"].startswith("https://") and platform["uri"].endswith(".tar.gz")
        assert spec["version"] in platform["uri"], "the release replaces the version everywhere"
        assert re.fullmatch(r"[0-9a-f]{64}", platform["sha256"])
        expressions = platform["selector"]["matchExpressions"]
        assert all(e["key"] == "os" and e["operator"] == "In" for e in expressions)
        sources = [item["from"] for item in platform["files"]]
        assert "kubectl-podtrail" in sources and any(s.endswith(".whl") for s in sources)


def test_the_version_placeholder_follows_the_package() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version is not None
    assert _manifest()["spec"]["version"] == f"v{version.group(1)}"


def test_the_package_installs_the_plugin_binary() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'kubectl-podtrail = "podtrail.cli.main:main"' in pyproject


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """The archive as krew unpacks it, linked from a bin directory as krew links it."""
    store = tmp_path / "store" / "podtrail" / "v0.1.0"
    store.mkdir(parents=True)
    shutil.copy2(LAUNCHER, store / "kubectl-podtrail")
    (store / "podtrail-0.1.0-py3-none-any.whl").write_bytes(b"")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(os.path.relpath(store / "kubectl-podtrail", bin_dir), bin_dir / "kubectl-podtrail")
    return tmp_path


def test_the_launcher_runs_the_plugin_of_its_own_environment(archive: Path) -> None:
    home = archive / "home"
    venv = home / "podtrail-0.1.0-py3-none-any"
    (venv / "bin").mkdir(parents=True)
    plugin = venv / "bin" / "kubectl-podtrail"
    plugin.write_text('#!/bin/sh\necho "plugin:$*"\n')
    plugin.chmod(0o755)
    (venv / ".installed").touch()
    result = subprocess.run(
        [str(archive / "bin" / "kubectl-podtrail"), "ls", "-A"],
        capture_output=True,
        text=True,
        env={**os.environ, "PODTRAIL_PLUGIN_HOME": str(home)},
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "plugin:ls -A\n", "")


def test_the_launcher_needs_a_recent_python(archive: Path) -> None:
    result = subprocess.run(
        [str(archive / "bin" / "kubectl-podtrail"), "ls"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PODTRAIL_PLUGIN_HOME": str(archive / "home"),
            "PODTRAIL_PYTHON": "false",
        },
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "needs Python 3.11 or newer as 'false'" in result.stderr


def test_the_launcher_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("no shellcheck on PATH")
    subprocess.run([shellcheck, str(LAUNCHER)], check=True, timeout=60)
