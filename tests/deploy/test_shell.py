"""The repository's shell scripts: each parses, shellcheck finds nothing, suppressions say why.

The scripts are the tracked files named *.sh (the sourced libraries among them) and those whose
first line runs sh or bash (.ci/run, kind/node/podtrail-cni, ...). shellcheck reads the
repository's .shellcheckrc (sourced files followed, found from each script's folder) and runs in
another folder, so a result never depends on where it runs. The shellcheck of the .venv (the one
make lint runs) is used, else one on PATH; without either that test is skipped.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHEBANG = re.compile(rb"#!\s*/(?:usr/)?bin/(?:env\s+)?(?P<shell>(?:ba)?sh)\b")
# pytest's cache entry: the key of the last run of shellcheck that found nothing.
CLEAN_RUN = "podtrail/shellcheck-clean"
# A directive, and the reason after a second "#" on its line.
DIRECTIVE = re.compile(r"#\s*shellcheck\s+(?P<body>[^#]*?)\s*(?:#\s*(?P<reason>\S.*))?$")


def shell_scripts() -> list[str]:
    """The tracked shell scripts, as paths relative to the repository."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    scripts = []
    for name in listed.decode().split("\0"):
        path = REPO / name
        if not name or not path.is_file():
            continue
        if name.endswith(".sh"):
            scripts.append(name)
            continue
        with path.open("rb") as file:
            if SHEBANG.match(file.readline(200)):
                scripts.append(name)
    return sorted(scripts)


SCRIPTS = shell_scripts()


def shell_of(script: str) -> str:
    """The shell a script is for: its shebang's, else bash (the sourced libraries)."""
    with (REPO / script).open("rb") as file:
        found = SHEBANG.match(file.readline(200))
    return found.group("shell").decode() if found else "bash"


def shellcheck_path() -> str | None:
    own = REPO / ".venv" / "bin" / "shellcheck"
    return str(own) if os.access(own, os.X_OK) else shutil.which("shellcheck")


def test_every_kind_of_script_is_found() -> None:
    if not SCRIPTS:
        pytest.skip("not a git checkout")
    assert {".ci/run", "kind/node/podtrail-cni", "cluster/lib/common.sh"} <= set(SCRIPTS)
    assert not any(script.endswith((".py", ".yaml")) for script in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses(script: str) -> None:
    shell = shell_of(script)
    result = subprocess.run(
        [shell, "-n", str(REPO / script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{shell} -n {script}:\n{result.stderr}"


def clean_key(shellcheck: str) -> str:
    """What a clean run depends on: shellcheck's version, .shellcheckrc and every script."""
    digest = hashlib.sha256(
        subprocess.run(
            [shellcheck, "--version"], capture_output=True, check=True, timeout=60
        ).stdout
    )
    for name in [".shellcheckrc", *SCRIPTS]:
        path = REPO / name
        digest.update(
            name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0"
        )
    return digest.hexdigest()


def test_shellcheck_finds_nothing(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Cached: a run over the very same scripts, settings and shellcheck that passed is not
    repeated (following the sources, shellcheck takes a while)."""
    shellcheck = shellcheck_path()
    if shellcheck is None:
        pytest.skip("no shellcheck (make install puts one into .venv)")
    if not SCRIPTS:
        pytest.skip("not a git checkout")
    cache: pytest.Cache | None = getattr(request.config, "cache", None)
    key = clean_key(shellcheck)
    if cache is not None and cache.get(CLEAN_RUN, None) == key:
        return

    def check(script: str) -> str:
        result = subprocess.run(
            [shellcheck, "--format=gcc", str(REPO / script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode == 0:
            return ""
        return (result.stdout + result.stderr).replace(f"{REPO}/", "") or f"{script}: failed"

    # One script a process, in parallel.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        findings = "".join(pool.map(check, SCRIPTS))
    assert findings == "", f"shellcheck ({shellcheck}) reports:\n{findings}"
    if cache is not None:
        cache.set(CLEAN_RUN, key)


def test_every_suppression_says_why() -> None:
    """A `disable=` (or a source not followed) carries its reason: `# shellcheck ... # why`."""
    missing = []
    for script in SCRIPTS:
        lines = (REPO / script).read_text(errors="replace").splitlines()
        for number, line in enumerate(lines, 1):
            found = DIRECTIVE.search(line)
            if found is None or found.group("reason"):
                continue
            body = found.group("body")
            if "disable=" in body or "source=/dev/null" in body:
                missing.append(f"{script}:{number}: {line.strip()}")
    assert missing == [], "shellcheck directives without a reason:\n" + "\n".join(missing)
