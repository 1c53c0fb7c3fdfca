#!/usr/bin/env bash
# Builds the operator image ($IMAGE, default podtrail.local/podtrail:dev); with --wheels-only,
# only prepares the wheels, which is all a multi-platform build (the release's) needs first.
#
# 1. Wheels, on the host, with any Python >= 3.11 (PYTHON; default .venv/bin/python, else
#    python3). They are chosen for the image's interpreter, CPython 3.11 on Debian bookworm
#    (glibc 2.36), not for the host's:
#    - the operator's own wheel (pure Python): `pip wheel --no-deps` of a clean copy of the
#      sources; reproducible (SOURCE_DATE_EPOCH) and built again only when the sources change;
#    - its dependencies, pinned by constraints.txt, as binary wheels for each target platform:
#      `pip download --only-binary=:all: --platform manylinux_2_<glibc>_<machine> ...
#      --python-version 3.11 --implementation cp --abi cp311`, environment markers evaluated
#      for the image too. A dependency without such a wheel stops the preparation, named.
#      Each set is checked complete (every requirement of the image's Python there, each file
#      installable on the platform), and prepared again only when constraints.txt or the
#      operator's requirements change; the downloads are kept in build/wheel-cache/
#      (WHEEL_CACHE), so a set whose pins are all there is assembled without the index;
#    - the pip wheel the image build installs with (the one bundled with PYTHON).
#    Layout (WHEEL_DIR, default build/wheels/; the stamps in it are dot files):
#      build/wheels/pip/pip-*.whl   the installer
#      build/wheels/amd64/*.whl     linux/amd64: the operator's wheel and every dependency
#      build/wheels/arm64/*.whl     linux/arm64: the same, aarch64 builds of the binary ones
# 2. Unless --wheels-only: `docker build --network none` of the Dockerfile for the engine's own
#    platform (TARGETARCH passed for the classic builder), with the local engine and the local
#    base image where no Docker engine runs (see lib.sh), else with the Dockerfile's default
#    base. On the local engine the install stage is kept as $INSTALL_STAGE_IMAGE, so that a
#    rebuild from unchanged wheels takes seconds.
#
# The release, multi-platform with buildx: the Dockerfile installs the wheels of its TARGETARCH
# and needs no network; the context must be this directory (with build/wheels/), not git's.
#   PLATFORMS=linux/amd64,linux/arm64 bash image/build.sh --wheels-only
#   docker buildx build --platform linux/amd64,linux/arm64 --network none \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#     --provenance mode=max --sbom true --tag ghcr.io/podtrail/podtrail:v0.1.0 --push .
#   (a builder of the docker-container driver, and QEMU for the other platform's RUN steps)
#
# Variables: IMAGE, IMAGE_ENGINE=auto|host|local, BASE_IMAGE (overrides the base), VERSION,
# PYTHON, PLATFORMS (comma-separated, of linux/amd64 and linux/arm64; default the engine's
# platform, with --wheels-only both), CONSTRAINTS (default constraints.txt), WHEEL_DIR,
# WHEEL_CACHE, INSTALL_STAGE_IMAGE.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WHEELS_ONLY=0
for arg in "$@"; do
  case $arg in
    --wheels-only) WHEELS_ONLY=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) idie "unknown argument '$arg' (--wheels-only, --help)" ;;
  esac
done

# The image's interpreter: what the wheels are chosen for.
IMAGE_PYTHON=3.11
IMAGE_GLIBC=2.36
# Bump when the wheel preparation below changes what it produces: prepared sets are keyed by it.
WHEELS_RECIPE=w1

if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $REPO_ROOT/.venv/bin/python ]]; then PYTHON=$REPO_ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || idie "PYTHON=$PYTHON: no such command"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  idie "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'): the wheels are prepared with Python 3.11 or later"
"$PYTHON" -m pip --version >/dev/null 2>&1 || idie "$PYTHON has no pip (python -m ensurepip)"
CONSTRAINTS=${CONSTRAINTS:-$REPO_ROOT/constraints.txt}
WHEEL_CACHE=${WHEEL_CACHE:-$BUILD_DIR/wheel-cache}
INSTALL_STAGE_IMAGE=${INSTALL_STAGE_IMAGE:-podtrail.local/podtrail-install-stage:latest}
[[ -f $CONSTRAINTS ]] || idie "no constraints file $CONSTRAINTS"

build_args=()
if ((WHEELS_ONLY)); then
  PLATFORMS=${PLATFORMS:-linux/amd64,linux/arm64}
else
  select_engine
  if [[ $ENGINE_KIND == local ]]; then
    bash "$IMAGE_TOOLING_DIR/engine-up.sh"
    bash "$IMAGE_TOOLING_DIR/base.sh"
    build_args+=(--build-arg "BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE_IMAGE}")
  elif [[ -n ${BASE_IMAGE:-} ]]; then
    build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  fi
  engine_arch=$("${DOCKER[@]}" version --format '{{.Server.Arch}}') || idie "the Docker engine does not answer"
  engine_platform=linux/$engine_arch
  PLATFORMS=${PLATFORMS:-$engine_platform}
  [[ ,$PLATFORMS, == *,"$engine_platform",* ]] ||
    idie "PLATFORMS=$PLATFORMS lacks $engine_platform, the platform the engine builds for"
  # BuildKit sets TARGETARCH itself; the classic builder does not.
  build_args+=(--build-arg "TARGETARCH=$engine_arch")
fi

mkdir -p "$WHEEL_DIR" "$WHEEL_CACHE"
# One preparation at a time per cache and per wheel directory (held through the image build,
# which reads the wheels).
if command -v flock >/dev/null 2>&1; then
  exec 8>"$WHEEL_CACHE/.lock" 9>"$WHEEL_DIR/.lock"
  flock 8
  flock 9
fi

ilog "preparing wheels for $PLATFORMS into ${WHEEL_DIR#"$REPO_ROOT"/} (with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])'))"
"$PYTHON" - "$REPO_ROOT" "$WHEEL_DIR" "$WHEEL_CACHE" "$CONSTRAINTS" "$PLATFORMS" "$IMAGE_PYTHON" \
  "$IMAGE_GLIBC" "$WHEELS_RECIPE" <<'PY' || exit 1
"""The image's wheels: the operator's own, its dependencies for each platform, pip."""

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.tags import compatible_tags, cpython_tags
from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

repo, wheel_dir, cache, constraints = (Path(arg) for arg in sys.argv[1:5])
platforms = [p for p in sys.argv[5].split(",") if p]
py_version, glibc, recipe = sys.argv[6:9]
py_tuple = tuple(int(part) for part in py_version.split("."))
abi = "cp" + "".join(map(str, py_tuple))
ARCHES = {"linux/amd64": ("amd64", "x86_64"), "linux/arm64": ("arm64", "aarch64")}
# The oldest release of the series the bases carry (Debian bookworm's 3.11.2).
FULL_VERSION = f"{py_version}.2"
# pip with environment markers evaluated for the image, not for this interpreter: pip's
# --python-version and --platform choose files only, markers would still see the host.
PIP_FOR_TARGET = """\
import json, sys
from pip._vendor.packaging import markers
target = json.loads(sys.argv[1])
host = markers.default_environment
markers.default_environment = lambda: {**host(), **target}
from pip._internal.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


class Failure(Exception):
    pass


def log(message):
    print(time.strftime("%H:%M:%S") + " [image] " + message, file=sys.stderr, flush=True)


def platform_tags(machine):
    """manylinux tags of glibc versions up to the image's, most specific first."""
    newest = int(glibc.split(".")[1])
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(newest, 4, -1)]
    legacy = {"x86_64": ["2014", "2010", "1"], "aarch64": ["2014"]}[machine]
    return tags + [f"manylinux{name}_{machine}" for name in legacy]


def marker_env(machine):
    return {
        "implementation_name": "cpython",
        "implementation_version": FULL_VERSION,
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": FULL_VERSION,
        "python_version": py_version,
        "sys_platform": "linux",
    }


def digest(*parts):
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part if isinstance(part, bytes) else str(part).encode())
        hasher.update(b"\0")
    return hasher.hexdigest()


def run(args, env=None):
    result = subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return result.returncode, result.stdout + result.stderr


def source_files():
    names = ["pyproject.toml"] + [
        p.name for p in sorted(repo.iterdir()) if re.match(r"(README|LICENSE|NOTICE)", p.name)
    ]
    files = [repo / name for name in names if (repo / name).is_file()]
    for path in sorted((repo / "operator").rglob("*")):
        parts = path.relative_to(repo).parts
        skipped = any(p == "__pycache__" or p.endswith(".egg-info") for p in parts)
        if path.is_file() and not skipped and path.suffix != ".pyc":
            files.append(path)
    return files


def operator_wheel():
    """The operator's wheel, built again only when its sources change."""
    files = source_files()
    key = digest(
        recipe,
        *(x for f in files for x in (f.relative_to(repo), os.access(f, os.X_OK), f.read_bytes())),
    )
    built_dir = cache / "operator"
    built = sorted(built_dir.glob("*.whl"))
    if len(built) == 1 and (built_dir / "key").is_file() and (built_dir / "key").read_text() == key:
        log(f"operator: {built[0].name}, sources unchanged")
        return built[0]
    with tempfile.TemporaryDirectory() as tmp:
        # A clean copy: no stale build/ or egg-info of an in-tree build ends up in the wheel.
        for f in files:
            target = Path(tmp, "src", f.relative_to(repo))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
        code, output = run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
             "--quiet", "--wheel-dir", f"{tmp}/out", f"{tmp}/src"],
            # Reproducible: the same sources give the same bytes (zip timestamps).
            env={"SOURCE_DATE_EPOCH": "315532800"},
        )
        made = sorted(Path(tmp, "out").glob("*.whl"))
        if code != 0 or len(made) != 1:
            raise Failure("building the operator's wheel failed:\n" + output[-3000:])
        shutil.rmtree(built_dir, ignore_errors=True)
        built_dir.mkdir(parents=True)
        shutil.copy2(made[0], built_dir / made[0].name)
    (built_dir / "key").write_text(key)
    log(f"operator: {made[0].name} built")
    return built_dir / made[0].name


def pip_wheel():
    """The pip the image build installs with: the one bundled with this Python."""
    import ensurepip

    target = wheel_dir / "pip"
    bundled = sorted(
        glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl"))
    )
    if bundled:
        if not (target / Path(bundled[-1]).name).is_file():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            shutil.copy2(bundled[-1], target)
        return
    shutil.rmtree(target, ignore_errors=True)
    code, output = run(
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
         "--no-deps", "--only-binary=:all:", "--python-version", py_version,
         "--dest", str(target), "pip"]
    )
    if code != 0:
        raise Failure("downloading the pip wheel failed:\n" + output[-3000:])


def metadata(path):
    with zipfile.ZipFile(path) as archive:
        (name,) = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        return HeaderParser().parsestr(archive.read(name).decode())


def pins():
    """constraints.txt: name -> specifier."""
    pinned = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            pinned[canonicalize_name(req.name)] = req.specifier
    return pinned


def exactly_pinned(name, pinned):
    return name in pinned and any(spec.operator in ("==", "===") for spec in pinned[name])


def check(directory, platform, root):
    """The set fits the platform and is complete: every wheel, every requirement. -> names"""
    machine = ARCHES[platform][1]
    tags = platform_tags(machine)
    supported = set(cpython_tags(py_tuple, [abi], tags)) | set(compatible_tags(py_tuple, abi, tags))
    wheels = {}
    for path in sorted(directory.glob("*.whl")):
        name, version, _, file_tags = parse_wheel_filename(path.name)
        if not file_tags & supported:
            raise Failure(f"{platform}: {path.name} is not for CPython {py_version} on {machine}")
        if name in wheels:
            raise Failure(f"{platform}: two wheels of {name}: {wheels[name][1].name}, {path.name}")
        wheels[name] = (version, path)
    if root not in wheels:
        raise Failure(f"{platform}: no wheel of {root} in {directory}")
    pinned = pins()
    for name, (version, path) in wheels.items():
        if name in pinned and not pinned[name].contains(version, prereleases=True):
            raise Failure(f"{platform}: {path.name}, but {constraints.name} pins {name}{pinned[name]}")
    env = marker_env(machine)
    needed, seen, queue = {root}, set(), [(root, frozenset())]
    while queue:
        name, extras = queue.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for line in metadata(wheels[name][1]).get_all("Requires-Dist") or []:
            req = Requirement(line)
            if req.marker and not any(
                req.marker.evaluate({**env, "extra": extra}) for extra in ("", *extras)
            ):
                continue
            dep = canonicalize_name(req.name)
            if dep not in wheels:
                raise Failure(f"{platform}: no wheel of {req} (required by {name}) in the set")
            if not req.specifier.contains(wheels[dep][0], prereleases=True):
                raise Failure(f"{platform}: {wheels[dep][1].name} does not satisfy {req} ({name})")
            needed.add(dep)
            queue.append((dep, frozenset(canonicalize_name(e) for e in req.extras)))
    unused = sorted(set(wheels) - needed)
    if unused:
        log(f"{platform}: wheels no requirement needs on the target: {', '.join(unused)}")
    return set(wheels)


def pip_download(platform, requirements, dest, offline=False, deps=True):
    machine = ARCHES[platform][1]
    args = ["download", "--disable-pip-version-check", "--only-binary=:all:",
            "--python-version", py_version, "--implementation", "cp", "--abi", abi]
    for tag in platform_tags(machine):
        args += ["--platform", tag]
    if offline:
        args += ["--no-index", "--find-links", str(cache / "pypi")]
    if not deps:
        args += ["--no-deps"]
    args += ["--constraint", str(constraints), "--dest", str(dest), *map(str, requirements)]
    shutil.rmtree(dest, ignore_errors=True)
    return run([sys.executable, "-c", PIP_FOR_TARGET, json.dumps(marker_env(machine)), *args])


def without_wheel(platform, output):
    """The requirements pip's failure names that have no wheel for the platform."""
    named = re.findall(r"No matching distribution found for (\S+)", output)
    if named:
        return named
    # A pin without a wheel shows as a conflict: try each constraint the message names alone.
    lacking = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in dict.fromkeys(re.findall(r"\(constraint\) (\S+)", output)):
            code, _ = pip_download(platform, [spec], Path(tmp, "probe"), deps=False)
            if code != 0:
                lacking.append(spec)
    return lacking


def dependencies(platform, op_wheel):
    """The platform's set: the operator's wheel and its dependencies' binary wheels."""
    arch, machine = ARCHES[platform]
    requires = sorted(metadata(op_wheel).get_all("Requires-Dist") or [])
    key = digest(recipe, platform, py_version, glibc, constraints.read_bytes(), *requires)
    directory = wheel_dir / arch
    stamp = directory / ".prepared"
    root = canonicalize_name(parse_wheel_filename(op_wheel.name)[0])
    if stamp.is_file() and stamp.read_text() == key:
        current = directory / op_wheel.name
        if not current.is_file() or current.read_bytes() != op_wheel.read_bytes():
            for old in directory.glob(op_wheel.name.split("-")[0] + "-*.whl"):
                old.unlink()
            shutil.copy2(op_wheel, current)
        try:
            count = len(check(directory, platform, root))
        except Failure as failure:
            log(f"{failure}: preparing the set again")
        else:
            log(f"{platform}: {count} wheels, dependencies unchanged")
            return
    started = time.monotonic()
    staging = wheel_dir / f".{arch}.staging"
    pinned = pins()
    # Every dependency exactly pinned and already downloaded once: no index needed.
    code, _ = pip_download(platform, [op_wheel], staging, offline=True)
    try:
        names = check(staging, platform, root) if code == 0 else {None}
    except Failure:
        names = {None}
    if all(exactly_pinned(name, pinned) for name in names - {root}):
        source = "from the cache"
    else:
        code, output = pip_download(platform, [op_wheel], staging)
        if code != 0:
            tail = "\n".join(output.strip().splitlines()[-12:])
            missing = without_wheel(platform, output)
            if not missing:
                raise Failure(f"{platform}: pip download failed:\n{tail}")
            raise Failure(
                f"{platform}: no binary wheel of {', '.join(missing)} for CPython {py_version} "
                f"on {machine} (manylinux, glibc <= {glibc})"
                + (" (or the index is unreachable)" if "(from versions: none)" in output else "")
                + f". The image installs wheels only: pin a version that has one in"
                f" {constraints.name}.\n{tail}"
            )
        check(staging, platform, root)
        source = "downloaded"
        (cache / "pypi").mkdir(parents=True, exist_ok=True)
        for path in staging.glob("*.whl"):
            if path.name != op_wheel.name and not (cache / "pypi" / path.name).exists():
                shutil.copy2(path, cache / "pypi" / path.name)
        # The cache keeps no version the constraints no longer pin.
        for path in (cache / "pypi").glob("*.whl"):
            name, version, _, _ = parse_wheel_filename(path.name)
            if exactly_pinned(name, pinned) and not pinned[name].contains(version, True):
                path.unlink()
    count = len(check(staging, platform, root))
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    stamp.write_text(key)
    log(f"{platform}: {count} wheels {source} ({time.monotonic() - started:.1f} s)")


try:
    for platform in platforms:
        if platform not in ARCHES:
            raise Failure(f"unsupported platform {platform} (supported: {', '.join(ARCHES)})")
    wheel_dir.mkdir(parents=True, exist_ok=True)
    # The flat layout of earlier builds.
    for stale in wheel_dir.glob("*.whl"):
        stale.unlink()
    op_wheel = operator_wheel()
    pip_wheel()
    for platform in platforms:
        dependencies(platform, op_wheel)
except Failure as failure:
    log(f"ERROR: {failure}")
    sys.exit(1)
PY

if ((WHEELS_ONLY)); then
  IFS=, read -r -a platforms <<<"$PLATFORMS"
  for platform in "${platforms[@]}"; do
    ilog "${platform}: ${WHEEL_DIR#"$REPO_ROOT"/}/${platform#linux/}/"
  done
  exit 0
fi

VERSION=${VERSION:-$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO_ROOT/pyproject.toml")}
REVISION=$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)

ilog "building $IMAGE for $engine_platform (engine: $ENGINE_KIND)"
if [[ $ENGINE_KIND == local ]]; then
  # The install stage under a name of its own: the prune below then keeps its layers, and a
  # build from unchanged wheels installs nothing again.
  "${DOCKER[@]}" build --file "$REPO_ROOT/Dockerfile" --target install --tag "$INSTALL_STAGE_IMAGE" \
    --network none "${build_args[@]}" "$REPO_ROOT" >&2
fi
"${DOCKER[@]}" build --file "$REPO_ROOT/Dockerfile" --tag "$IMAGE" --network none \
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "CREATED=$CREATED" \
  "${build_args[@]}" "$REPO_ROOT" >&2
# The engine of our own keeps no superseded builds (the host's engine is left alone).
[[ $ENGINE_KIND == local ]] && "${DOCKER[@]}" image prune --force >/dev/null
size=$("${DOCKER[@]}" image inspect --format '{{.Size}}' "$IMAGE")
ilog "built $IMAGE: $((size / 1000 / 1000)) MB ($size bytes)"
