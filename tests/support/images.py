"""The image the tests' pods run, and putting it on the session's cluster.

By default it is ``podtrail.local/testbox:1``, built here as a docker-archive
(cluster/images/build-images.sh: Debian's busybox-static, a web root /var/www/index.html that
says "testbox") and loaded into the cluster's nodes the way that cluster takes images
(image/load.sh: kind, minikube, k3d, the local cluster); pods use it with imagePullPolicy Never,
so nothing is ever pulled. ``PODTRAIL_TEST_IMAGE=busybox:1.36`` (any image with busybox's
applets) runs a pullable image instead, for a cluster that can pull and has no way to be loaded:
nothing is built or loaded then, and pods use imagePullPolicy IfNotPresent.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILT_TESTBOX = "podtrail.local/testbox:1"
TEST_IMAGE_ENV = "PODTRAIL_TEST_IMAGE"
# The earlier name of the same setting, still read.
OLD_TEST_IMAGE_ENV = "PODTRAIL_TESTBOX_IMAGE"

# A shell prefix that gives any busybox image the built testbox's web root.
TESTBOX_WWW = (
    "[ -f /var/www/index.html ] || { mkdir -p /var/www && echo testbox > /var/www/index.html; }"
)


def chosen_test_image(environ: Mapping[str, str]) -> str | None:
    """The pullable image asked for instead of the built one, if any."""
    for name in (TEST_IMAGE_ENV, OLD_TEST_IMAGE_ENV):
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def pull_policy(image: str) -> str:
    """Never for the built test image (it is loaded, never pulled), else IfNotPresent."""
    return "Never" if image == BUILT_TESTBOX else "IfNotPresent"


TESTBOX = chosen_test_image(os.environ) or BUILT_TESTBOX
TESTBOX_PULL_POLICY = pull_policy(TESTBOX)


class ImageLoadError(RuntimeError):
    """The tests' images could not be built or loaded; the message says what was said."""


def _run(args: list[str], env: Mapping[str, str], timeout: float) -> str:
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=dict(env),
            cwd=REPO,
        )
    except subprocess.TimeoutExpired as error:
        raise ImageLoadError(f"{' '.join(args[:2])} took over {timeout:g} s") from error
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise ImageLoadError(f"{' '.join(args[:2])} failed ({proc.returncode}):\n{tail}")
    return proc.stdout


def build_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for cluster/images/build-images.sh: its cache where it can write.

    The script keeps the tars in $PODTRAIL_CACHE_DIR/images (default /var/cache/podtrail); a
    user who cannot write there gets ~/.cache/podtrail (XDG_CACHE_HOME) unless they chose one.
    """
    env = dict(environ)
    if env.get("PODTRAIL_CACHE_DIR"):
        return env
    default = Path("/var/cache/podtrail")
    writable = os.access(default, os.W_OK) or (
        not default.exists() and os.access(default.parent, os.W_OK)
    )
    if not writable:
        base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
        env["PODTRAIL_CACHE_DIR"] = str(Path(base) / "podtrail")
    return env


def built_archives(environ: Mapping[str, str]) -> list[str]:
    """The tests' images as docker-archive tars (built when missing), the pod sandbox's left out."""
    out = _run(
        ["bash", str(REPO / "cluster" / "images" / "build-images.sh")],
        build_env(environ),
        timeout=600,
    )
    return [
        line.strip()
        for line in out.splitlines()
        if line.strip().endswith(".tar") and not Path(line.strip()).name.startswith("pause-")
    ]


def load_test_images(
    kubeconfig: str, kubectl: str, environ: Mapping[str, str]
) -> tuple[list[str], float, str]:
    """Build and load the tests' images into the nodes of the cluster ``kubeconfig`` names.

    Returns the tars, the seconds it took and what the loader said (an image already on every
    node is skipped, so a second load takes about a second).
    """
    started = time.monotonic()
    archives = built_archives(environ)
    if not archives:
        raise ImageLoadError("cluster/images/build-images.sh named no test image")
    env = {**environ, "KUBECONFIG": kubeconfig, "KUBECTL": kubectl}
    try:
        proc = subprocess.run(
            ["bash", str(REPO / "image" / "load.sh"), *archives],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            env=env,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired as error:
        raise ImageLoadError("image/load.sh took over 900 s") from error
    said = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        tail = "\n".join(said.splitlines()[-40:])
        raise ImageLoadError(
            f"image/load.sh could not load the tests' images ({proc.returncode}):\n{tail}\n"
            f"A cluster that can pull can run a public image instead: "
            f"{TEST_IMAGE_ENV}=busybox:1.36"
        )
    return archives, time.monotonic() - started, said
