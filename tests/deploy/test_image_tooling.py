"""The Dockerfile and the image tooling (image/): the wheels it prepares, without building images.

The wheel preparation reads the package index (PyPI) unless build/wheel-cache/ already holds
every pinned wheel; its tests are skipped when it needs the index and cannot reach it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from email.parser import HeaderParser
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tests.deploy.helpers import IMAGE_TOOLING, REPO

WRAPPER = IMAGE_TOOLING / "runc-wrapper"
CAP = "CAP_SYS_RESOURCE"
BUILD = IMAGE_TOOLING / "build.sh"

# What the release builds: Docker's architecture name -> the machine of the wheels' tags.
RELEASE_PLATFORMS = {"amd64": "x86_64", "arm64": "aarch64"}
# The image's interpreter (both bases: python:3.11-slim-bookworm, Debian bookworm's python3).
IMAGE_PYTHON = "3.11"
IMAGE_GLIBC = (2, 36)


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


@pytest.mark.parametrize("script", sorted(p.name for p in IMAGE_TOOLING.glob("*.sh")))
def test_scripts_parse(script: str) -> None:
    result = subprocess.run(
        ["bash", "-n", str(IMAGE_TOOLING / script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# --- The Dockerfile, read as instructions -------------------------------------------------------

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions: (KEYWORD, arguments), continuations joined."""
    parsed: list[Instruction] = []
    pending = ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or (not pending and not line.strip()):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        parsed.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    return parsed


def stages() -> list[list[Instruction]]:
    """The build stages, each from its FROM on (the global ARGs before the first are left out)."""
    result: list[list[Instruction]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def expand(word: str, values: dict[str, str]) -> str:
    """A Dockerfile word with $NAME, ${NAME} and ${NAME:-default} replaced, as both builders do."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        value = values.get(name, "")
        if match.group(2) is not None and not value:
            return match.group(2)
        return value

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", one, word)


def copy_sources(stage: list[Instruction]) -> list[str]:
    """The build-context sources of a stage's COPY instructions (not those --from a stage)."""
    sources: list[str] = []
    for keyword, args in stage:
        if keyword in ("COPY", "ADD"):
            words = args.split()
            if any(w.startswith("--from=") for w in words):
                continue
            sources += [w for w in words if not w.startswith("--")][:-1]
    return sources


def declared_args(stage: list[Instruction]) -> dict[str, str | None]:
    declared: dict[str, str | None] = {}
    for keyword, args in stage:
        if keyword == "ARG":
            name, eq, default = args.partition("=")
            declared[name] = default if eq else None
    return declared


def commands(run: str) -> list[list[str]]:
    """The commands of a RUN's shell form, as argument lists (split at &&, || and ;)."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    result: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";"):
            result.append([])
        else:
            result[-1].append(token)
    return [command for command in result if command]


def runs_of(stage: list[Instruction]) -> list[list[str]]:
    return [command for keyword, args in stage if keyword == "RUN" for command in commands(args)]


def entrypoint() -> list[str]:
    (args,) = [a for k, a in stages()[-1] if k == "ENTRYPOINT"]
    command: list[str] = json.loads(args)
    return command


def test_dockerfile_base_is_a_pinned_build_argument() -> None:
    (global_arg,) = [a for k, a in instructions()[:1] if k == "ARG"]
    name, _, default = global_arg.partition("=")
    assert name == "BASE_IMAGE", "the base image is a build argument with a default"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", default)
    froms = [expand(stage[0][1].split()[0], {"BASE_IMAGE": default}) for stage in stages()]
    assert froms == [default, default], "two stages on the same base, the build argument's"
    assert expand(stages()[0][0][1].split()[0], {"BASE_IMAGE": "mine:1"}) == "mine:1"


def test_dockerfile_needs_no_network() -> None:
    """Every step works offline: pip installs from the copied wheels only, nothing is fetched."""
    fetchers = {"curl", "wget", "apt-get", "apt", "apk", "git"}
    pip_installs = 0
    for keyword, args in instructions():
        assert keyword != "ADD", f"ADD may fetch URLs; COPY instead: {args}"
        if keyword != "RUN":
            continue
        for command in commands(args):
            assert Path(command[0]).name not in fetchers, command
            if any(Path(word).name == "pip" for word in command):
                verb = next(w for w in command if w in ("install", "download", "wheel"))
                assert verb == "install", command
                pip_installs += 1
                assert "--no-index" in command and "--find-links" in command, command
                assert not any(w.startswith(("--index-url", "--extra-index-url")) for w in command)
    assert pip_installs == 1


def test_dockerfile_picks_the_wheels_of_the_target_platform() -> None:
    install, final = stages()
    # A default on the ARG would replace BuildKit's value: the fallback is in the expansion.
    assert declared_args(install).get("TARGETARCH", "missing") is None
    for arch in RELEASE_PLATFORMS:
        sources = [expand(s, {"TARGETARCH": arch}) for s in copy_sources(install)]
        assert f"build/wheels/{arch}/" in sources
        other = {a for a in RELEASE_PLATFORMS if a != arch}
        assert not [s for s in sources if any(f"/{o}/" in s for o in other)], sources
    # The classic builder leaves TARGETARCH unset: amd64.
    classic = [expand(s, {}) for s in copy_sources(install)]
    assert "build/wheels/amd64/" in classic
    assert all(s.startswith("build/wheels/") for s in classic)
    assert copy_sources(final) == [], "the final stage takes nothing from the build context"


def test_dockerfile_final_stage_runs_unprivileged_with_precompiled_code() -> None:
    install, final = stages()
    # The entry point is the operator's script in a virtual environment ...
    (program,) = entrypoint()
    assert Path(program).name == "podtrail" and Path(program).parent.name == "bin"
    venv = str(Path(program).parents[1])
    # ... made in the install stage, without pip, with bytecode that is never re-checked ...
    install_name = install[0][1].split()[-1]
    assert install[0][1].split()[1:] == ["AS", install_name]
    install_runs = runs_of(install)
    assert ["python3", "-m", "venv", "--without-pip", venv] in install_runs, install_runs
    (compile_all,) = [c for c in install_runs if c[1:3] == ["-m", "compileall"]]
    assert compile_all[0] == f"{venv}/bin/python"
    mode = compile_all[compile_all.index("--invalidation-mode") + 1]
    assert mode == "unchecked-hash"
    assert compile_all[-1].startswith(venv + "/")
    # ... and all the final stage takes of it: no wheels, no pip, nothing from the context.
    (copied,) = [a.split() for k, a in final if k == "COPY"]
    assert copied == [f"--from={install_name}", venv, venv]
    keywords = dict(final)
    user = re.fullmatch(r"(\d+):(\d+)", keywords["USER"])
    assert user and int(user.group(1)) != 0, "a numeric, non-root user"
    assert keywords["EXPOSE"].split() == ["8080", "9090"]


def labels_of(stage: list[Instruction]) -> dict[str, str]:
    """A stage's LABEL instructions as key -> value (quotes removed, unexpanded)."""
    pairs = [w for k, a in stage if k == "LABEL" for w in shlex.split(a)]
    return dict(pair.split("=", 1) for pair in pairs)


def test_dockerfile_labels_come_last_so_rebuilds_reuse_every_layer() -> None:
    _, final = stages()
    labels = labels_of(final)
    build = {"VERSION": "1.2.3", "REVISION": "f" * 40, "CREATED": "2026-01-01T00:00:00Z"}
    build["BASE_IMAGE"] = "base:1"
    image = {
        key.removeprefix("org.opencontainers.image."): expand(value, build)
        for key, value in labels.items()
    }
    # What the build arguments say, the image says.
    assert image["version"] == "1.2.3"
    assert image["revision"] == "f" * 40
    assert image["created"] == "2026-01-01T00:00:00Z"
    assert image["base.name"] == "base:1"
    assert image["title"] == "podtrail" and image["licenses"] and image["source"]
    first_arg = next(i for i, (k, _) in enumerate(final) if k == "ARG")
    # Only metadata after them: no instruction that makes a filesystem layer.
    assert {k for k, _ in final[first_arg:]} <= {"ARG", "ENV", "LABEL"}, final[first_arg:]


def dockerignore_sends(path: str) -> bool:
    """Whether the engine gets PATH, by .dockerignore's rules (the last match wins; a pattern
    matching a parent directory matches what is inside)."""
    sent = True
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = "".join(
            ".*"
            if part == "**"
            else "[^/]*"
            if part == "*"
            else "[^/]"
            if part == "?"
            else re.escape(part)
            for part in re.split(r"(\*\*|\*|\?)", pattern)
        )
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            sent = include
    return sent


def test_dockerignore_sends_only_the_wheels() -> None:
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    wheels = [
        f"build/wheels/{d}/{n}"
        for d in (*RELEASE_PLATFORMS, "pip")
        for n in ("x-1-py3-none-any.whl", ".prepared")
    ]
    others = ["build/wheels/.lock", "build/wheel-cache/pypi/x-1-py3-none-any.whl", ".venv/x"]
    sent = {p for p in [*tracked, *wheels, *others] if dockerignore_sends(p)}
    assert sent == {p for p in wheels if p.endswith(".whl")}


# --- The wheel preparation (image/build.sh --wheels-only) ----------------------------------------


@functools.cache
def index_unreachable() -> str | None:
    """Why the package index cannot be reached, or None when it answers."""
    url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/pip/", timeout=10):
            return None
    except (urllib.error.URLError, OSError) as error:
        return f"{url} is unreachable: {error}"


def prepare(wheel_dir: Path, python: str, **env: str) -> subprocess.CompletedProcess[str]:
    if index_unreachable():
        # Only the cache can serve: fail fast instead of pip's retries.
        env = {"PIP_RETRIES": "0", "PIP_DEFAULT_TIMEOUT": "5", **env}
    return subprocess.run(
        ["bash", str(BUILD), "--wheels-only"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "WHEEL_DIR": str(wheel_dir), "PYTHON": python, **env},
        cwd=REPO,
    )


def prepared_or_skip(wheel_dir: Path, python: str, **env: str) -> Path:
    """The wheels prepared into WHEEL_DIR; skips when that needs the index and it is away."""
    result = prepare(wheel_dir, python, **env)
    if result.returncode != 0:
        reason = index_unreachable()
        if reason:
            pytest.skip(f"the wheels need the package index: {reason}")
        pytest.fail(f"build.sh --wheels-only failed:\n{result.stderr[-4000:]}", pytrace=False)
    return wheel_dir


@pytest.fixture(scope="module")
def release_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release's preparation, with the tests' own (3.11) Python."""
    return prepared_or_skip(
        tmp_path_factory.mktemp("wheels"),
        sys.executable,
        PLATFORMS="linux/amd64,linux/arm64",
    )


def wheel_metadata(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        (name,) = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        return HeaderParser().parsestr(archive.read(name).decode()).get_all("Requires-Dist") or []


def pins() -> dict[str, Version]:
    pinned: dict[str, Version] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"constraints.txt pins exact versions: {line}"
            pinned[canonicalize_name(req.name)] = Version(spec.version)
    return pinned


def target_environment(machine: str) -> dict[str, str]:
    return {
        "implementation_name": "cpython",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_system": "Linux",
        "python_full_version": IMAGE_PYTHON + ".2",
        "python_version": IMAGE_PYTHON,
        "sys_platform": "linux",
    }


def closure(wheels: dict[str, Path], root: str, machine: str) -> Iterator[tuple[str, Requirement]]:
    """Every (distribution, requirement) the image's Python on MACHINE installs, from ROOT."""
    environment = target_environment(machine)
    seen: set[tuple[str, frozenset[str]]] = set()
    queue = [(root, frozenset[str]())]
    while queue:
        name, extras = queue.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        assert name in wheels, f"no wheel of {name}"
        for line in wheel_metadata(wheels[name]):
            req = Requirement(line)
            marker: Marker | None = req.marker
            wanted = marker is None or any(
                marker.evaluate({**environment, "extra": extra}) for extra in ("", *extras)
            )
            if wanted:
                dep = canonicalize_name(req.name)
                yield dep, req
                queue.append((dep, frozenset(canonicalize_name(e) for e in req.extras)))


def fits(filename: str, machine: str) -> bool:
    """A wheel the image's CPython 3.11 (glibc 2.36) on MACHINE installs."""
    _, _, _, tags = parse_wheel_filename(filename)
    for tag in tags:
        interpreter_ok = tag.interpreter in ("py3", "cp311")
        # A stable-ABI wheel (cp310-abi3) installs on its CPython and every later one.
        stable = re.fullmatch(r"cp3(\d+)", tag.interpreter)
        if tag.abi == "abi3" and stable and int(stable.group(1)) <= 11:
            interpreter_ok = True
        abi_ok = tag.abi in ("none", "abi3", "cp311")
        if tag.platform == "any":
            platform_ok = True
        else:
            legacy = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}
            match = re.fullmatch(rf"manylinux_(\d+)_(\d+)_{machine}", tag.platform)
            glibc = (int(match.group(1)), int(match.group(2))) if match else None
            name, _, arch = tag.platform.partition("_")
            if glibc is None and arch == machine:
                glibc = legacy.get(name)
            platform_ok = glibc is not None and glibc <= IMAGE_GLIBC
        if interpreter_ok and abi_ok and platform_ok:
            return True
    return False


def wheel_set(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(directory.glob("*.whl")):
        name = parse_wheel_filename(path.name)[0]
        assert name not in found, f"two wheels of {name} in {directory}"
        found[name] = path
    return found


@pytest.mark.parametrize("arch", sorted(RELEASE_PLATFORMS))
def test_every_pinned_dependency_has_a_wheel_of_the_platform(
    release_wheels: Path, arch: str
) -> None:
    machine = RELEASE_PLATFORMS[arch]
    wheels = wheel_set(release_wheels / arch)
    unfit = [p.name for p in wheels.values() if not fits(p.name, machine)]
    assert not unfit, f"not for CPython {IMAGE_PYTHON} on {machine}: {unfit}"
    pinned = pins()
    needed = {"podtrail"}
    for dep, req in closure(wheels, "podtrail", machine):
        needed.add(dep)
        assert dep in wheels, f"{req} has no wheel for {arch}"
        version = parse_wheel_filename(wheels[dep].name)[1]
        assert req.specifier.contains(version, prereleases=True), (wheels[dep].name, str(req))
        assert version == pinned.get(dep, version), f"{wheels[dep].name}: constraints pin {dep}"
    assert set(wheels) == needed, "the set is exactly what the image's Python installs"
    assert any(not p.name.endswith("-any.whl") for p in wheels.values()), "binary wheels too"


def test_the_platforms_share_the_operator_wheel_and_the_installer(release_wheels: Path) -> None:
    operator = [
        sorted((release_wheels / arch).glob("podtrail-*.whl")) for arch in RELEASE_PLATFORMS
    ]
    assert all(len(found) == 1 for found in operator)
    assert len({found[0].read_bytes() for found in operator}) == 1
    assert operator[0][0].name.endswith("-py3-none-any.whl"), "the operator is pure Python"
    (installer,) = (release_wheels / "pip").glob("pip-*.whl")
    assert fits(installer.name, "x86_64") and fits(installer.name, "aarch64")


def other_pythons() -> list[str]:
    """Interpreters >= 3.12 with pip: PODTRAIL_OTHER_PYTHON, else python3.12.. on PATH."""
    named = os.environ.get("PODTRAIL_OTHER_PYTHON")
    candidates = [named] if named else [f"python3.{minor}" for minor in range(12, 16)]
    found = []
    for candidate in candidates:
        try:
            result = subprocess.run(
                [candidate, "-c", "import sys, pip; print(sys.version_info >= (3, 12))"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except OSError:
            continue
        if result.returncode == 0 and result.stdout.strip() == "True":
            found.append(candidate)
    return found


def test_another_host_python_prepares_the_same_wheels(release_wheels: Path, tmp_path: Path) -> None:
    found = other_pythons()
    if not found:
        pytest.skip("no Python >= 3.12 with pip here (PODTRAIL_OTHER_PYTHON names one)")
    other = prepared_or_skip(tmp_path, found[0], PLATFORMS="linux/amd64,linux/arm64")
    for arch in RELEASE_PLATFORMS:
        assert sorted(p.name for p in (other / arch).glob("*.whl")) == sorted(
            p.name for p in (release_wheels / arch).glob("*.whl")
        ), f"{arch}: the set depends on the host's Python ({found[0]})"


def test_a_pin_without_a_wheel_stops_the_preparation_by_name(tmp_path: Path) -> None:
    # PyYAML 5.3.1 published no wheel for CPython 3.11; kopf accepts any PyYAML.
    reason = index_unreachable()
    if reason:
        pytest.skip(f"the preparation needs the package index: {reason}")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(
        re.sub(r"(?im)^pyyaml==.*$", "PyYAML==5.3.1", (REPO / "constraints.txt").read_text())
    )
    result = prepare(
        tmp_path / "wheels",
        sys.executable,
        PLATFORMS="linux/amd64",
        CONSTRAINTS=str(constraints),
    )
    assert result.returncode != 0
    assert re.search(r"linux/amd64: no binary wheel of pyyaml==5\.3\.1", result.stderr, re.I), (
        result.stderr[-3000:]
    )
    assert not (tmp_path / "wheels" / "amd64").exists()


def test_an_unsupported_platform_is_refused(tmp_path: Path) -> None:
    result = prepare(tmp_path, sys.executable, PLATFORMS="linux/amd64,linux/s390x")
    assert result.returncode != 0
    assert "unsupported platform linux/s390x" in result.stderr
