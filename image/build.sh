#!/usr/bin/env bash
# Builds the operator image ($IMAGE, default podtrail.local/podtrail:dev):
# 1. wheels of the operator and of its pinned dependencies (constraints.txt) into build/wheels/,
#    built on the host from a clean copy of the sources (PYTHON must be a Python 3.11, the
#    image's Python), plus the pip wheel the image build installs them with;
# 2. `docker build` of the Dockerfile, with the local engine and the local base image where no
#    Docker engine runs (see lib.sh), else with the Dockerfile's default base.
# Variables: IMAGE, IMAGE_ENGINE=auto|host|local, BASE_IMAGE (overrides the base), VERSION,
# PYTHON.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $REPO_ROOT/.venv/bin/python ]]; then PYTHON=$REPO_ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  idie "$PYTHON is not Python 3.11: the wheels must match the image's Python"

select_engine
build_args=()
if [[ $ENGINE_KIND == local ]]; then
  bash "$IMAGE_TOOLING_DIR/engine-up.sh"
  bash "$IMAGE_TOOLING_DIR/base.sh"
  build_args+=(--build-arg "BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE_IMAGE}")
elif [[ -n ${BASE_IMAGE:-} ]]; then
  build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
fi

VERSION=${VERSION:-$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("'"$REPO_ROOT"'/pyproject.toml", "rb"))["project"]["version"])')}
REVISION=$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)

ilog "building wheels into ${WHEEL_DIR#"$REPO_ROOT"/}"
source_copy=$(mktemp -d)
trap 'rm -rf "$source_copy"' EXIT
# A clean copy: no stale build/lib or egg-info of an in-tree build ends up in the wheel.
tar -C "$REPO_ROOT" --exclude='__pycache__' --exclude='*.egg-info' --exclude='*.pyc' \
  -cf - pyproject.toml operator $(cd "$REPO_ROOT" && ls -d README* LICENSE* NOTICE* 2>/dev/null) |
  tar -C "$source_copy" -xf -
rm -rf "$WHEEL_DIR"
mkdir -p "$WHEEL_DIR/pip"
constraints=()
[[ -f $REPO_ROOT/constraints.txt ]] && constraints=(--constraint "$REPO_ROOT/constraints.txt")
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$WHEEL_DIR" \
  "${constraints[@]}" "$source_copy" >&2
# The pip that installs them inside the build: the one bundled with this Python.
pip_wheel=$("$PYTHON" -c 'import ensurepip, glob, os; print(sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")))[-1])' 2>/dev/null) ||
  pip_wheel=
if [[ -n $pip_wheel ]]; then
  cp "$pip_wheel" "$WHEEL_DIR/pip/"
else
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$WHEEL_DIR/pip" pip >&2
fi
ls "$WHEEL_DIR"/podtrail-*.whl >/dev/null 2>&1 || idie "no podtrail wheel was built"

ilog "building $IMAGE (engine: $ENGINE_KIND)"
"${DOCKER[@]}" build --file "$REPO_ROOT/Dockerfile" --tag "$IMAGE" \
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "CREATED=$CREATED" \
  "${build_args[@]}" "$REPO_ROOT" >&2
# The engine of our own keeps no superseded builds (the host's engine is left alone).
[[ $ENGINE_KIND == local ]] && "${DOCKER[@]}" image prune --force >/dev/null
size=$("${DOCKER[@]}" image inspect --format '{{.Size}}' "$IMAGE")
ilog "built $IMAGE: $((size / 1000 / 1000)) MB ($size bytes)"
