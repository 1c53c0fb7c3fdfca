"""The cluster a test session acts on, by the project's one rule (cluster/context.sh).

``choose_cluster`` runs ``cluster/context.sh`` (KUBECONFIG, else ~/.kube/config when it answers,
else the project's local cluster, brought up with ``ensure``) and returns what it exported;
``find_kubectl`` is the same script's way to find kubectl, for the tests that only render
manifests; ``run_kubectl`` runs the chosen one against a kubeconfig. ``single_kubeconfig`` turns
a KUBECONFIG list into one file (the clients and the operator take one path). ``plan_skips``
decides which collected tests cannot run on the chosen cluster: those marked ``local_node`` (they
act on the local cluster's host processes) anywhere but on the local cluster, those marked
``beside_local`` (they use the local cluster next to the session's one) unless asked for.
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTEXT_SH = REPO / "cluster" / "context.sh"
SUITE_CHANGES = "run the test suite"
FLAVOURS = frozenset({"kind", "minikube", "k3d", "docker-desktop", "local", "other"})
EXPORTED = ("KUBECONFIG", "KUBECTL", "KUBE_CONTEXT", "CLUSTER_FLAVOUR", "CLUSTER_SOURCE")

LOCAL_NODE = "local_node"
LOCAL_NODE_REASON = "needs the project's local cluster (its host processes): make cluster"
BESIDE_LOCAL = "beside_local"
BESIDE_LOCAL_ENV = "PODTRAIL_BESIDE_LOCAL_TESTS"
BESIDE_LOCAL_REASON = (
    f"uses the project's local cluster next to the session's: set {BESIDE_LOCAL_ENV}=1"
)


class ClusterChoiceError(RuntimeError):
    """cluster/context.sh chose no cluster; the message is what it said (why, and what to do)."""


@dataclass(frozen=True)
class ClusterChoice:
    """What cluster/context.sh exported.

    Attributes:
        kubeconfig: KUBECONFIG as chosen: one file, or a list (os.pathsep between files).
        kubectl: the kubectl to use (the one built for the local cluster when there is one).
        context: the kubeconfig's current context.
        flavour: kind, minikube, k3d, docker-desktop, local (the project's own) or other.
        source: where the choice came from: KUBECONFIG, home (~/.kube/config) or local.
        said: what the script said about its choice (its stderr).
    """

    kubeconfig: str
    kubectl: str
    context: str
    flavour: str
    source: str
    said: str = ""

    @property
    def local(self) -> bool:
        """Whether this is the project's own local cluster (make cluster)."""
        return self.flavour == "local"

    def describe(self) -> str:
        """The choice in a line, as the test log shows it."""
        where = {"home": "~/.kube/config", "local": "the project's local cluster"}
        return (
            f"context {self.context} ({self.flavour}, from {where.get(self.source, self.source)}"
            f"; KUBECONFIG={self.kubeconfig})"
        )


def parse_exports(text: str) -> dict[str, str]:
    """``export NAME=VALUE`` lines (values shell-quoted) -> {NAME: VALUE}."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        words = shlex.split(line)
        if len(words) != 2 or words[0] != "export" or "=" not in words[1]:
            raise ValueError(f"not an export line: {line!r}")
        name, _, value = words[1].partition("=")
        found[name] = value
    return found


def choice_from_exports(exports: Mapping[str, str], said: str = "") -> ClusterChoice:
    """The choice the exported variables describe; ValueError when one is missing or odd."""
    missing = [name for name in EXPORTED if not exports.get(name)]
    if missing:
        raise ValueError(f"cluster/context.sh exported no {', '.join(missing)}")
    flavour = exports["CLUSTER_FLAVOUR"]
    if flavour not in FLAVOURS:
        raise ValueError(f"cluster/context.sh named an unknown flavour {flavour!r}")
    return ClusterChoice(
        kubeconfig=exports["KUBECONFIG"],
        kubectl=exports["KUBECTL"],
        context=exports["KUBE_CONTEXT"],
        flavour=flavour,
        source=exports["CLUSTER_SOURCE"],
        said=said.strip(),
    )


def choose_cluster(
    *,
    ensure: bool = True,
    changes: str | None = SUITE_CHANGES,
    env: Mapping[str, str] | None = None,
    script: Path | None = None,
    timeout: float = 45 * 60,
) -> ClusterChoice:
    """Run cluster/context.sh and return its choice; ClusterChoiceError with its words if none.

    ``ensure`` brings the local cluster up when it is the choice (cluster/up.sh: root, and up
    to half an hour on first use while Kubernetes is built); ``changes`` says what the caller
    does there (refused on a flavour "other" unless CONFIRM=1).
    """
    args = ["bash", str(script or CONTEXT_SH)]
    if ensure:
        args.append("--ensure")
    if changes:
        args += ["--changes", changes]
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=dict(os.environ if env is None else env),
            cwd=REPO,
        )
    except subprocess.TimeoutExpired as error:
        raise ClusterChoiceError(f"cluster/context.sh took over {timeout:g} s") from error
    said = _tail(proc.stderr)
    if proc.returncode != 0:
        raise ClusterChoiceError(f"cluster/context.sh chose no cluster:\n{said}")
    try:
        return choice_from_exports(parse_exports(proc.stdout), proc.stderr)
    except ValueError as error:
        raise ClusterChoiceError(f"{error}\n{proc.stdout}{said}") from error


@functools.cache
def find_kubectl() -> str | None:
    """The kubectl cluster/context.sh would use (KUBECTL, the one built here, else PATH's)."""
    proc = subprocess.run(
        ["bash", "-c", 'source "$1" && find_kubectl', "find_kubectl", str(CONTEXT_SH)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=REPO,
    )
    found = proc.stdout.strip().splitlines()
    return found[-1] if proc.returncode == 0 and found else None


def run_kubectl(
    kubectl: str, kubeconfig: str, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """kubectl against the kubeconfig's cluster; the completed process (text output)."""
    return subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def single_kubeconfig(choice: ClusterChoice, directory: Path) -> Path:
    """One kubeconfig file for the choice: its own file, or a KUBECONFIG list merged into one.

    A list is flattened (credentials inline) and minified to its current context, as kubectl
    sees it, into ``directory/kubeconfig`` (mode 0600): the API clients, the operator and
    ``--kubeconfig`` take a single path.
    """
    files = [part for part in choice.kubeconfig.split(os.pathsep) if part]
    if len(files) == 1:
        return Path(files[0])
    merged = subprocess.run(
        [choice.kubectl, "config", "view", "--flatten", "--minify", "--raw"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBECONFIG": choice.kubeconfig},
    )
    if merged.returncode != 0 or not merged.stdout.strip():
        raise ClusterChoiceError(
            f"kubectl config view could not merge KUBECONFIG={choice.kubeconfig}:\n{merged.stderr}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "kubeconfig"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(merged.stdout)
    return path


@dataclass(frozen=True)
class Collected:
    """What the skip planning needs of a collected test: its markers' names, and whether a
    skip marker already applies to it."""

    markers: frozenset[str]
    skipped: bool = False


def plan_skips(
    items: Sequence[Collected],
    choose: Callable[[], ClusterChoice | None],
    environ: Mapping[str, str],
) -> dict[int, str]:
    """Index -> skip reason, for the tests that cannot run on the session's cluster.

    ``choose`` is called only when some test that is not skipped already is marked
    ``local_node``; None (no cluster chosen yet: the session's fixture will say why) skips
    nothing on that account.
    """
    skips: dict[int, str] = {}
    for index, item in enumerate(items):
        if (
            not item.skipped
            and BESIDE_LOCAL in item.markers
            and environ.get(BESIDE_LOCAL_ENV) != "1"
        ):
            skips[index] = BESIDE_LOCAL_REASON
    pending = [
        index
        for index, item in enumerate(items)
        if LOCAL_NODE in item.markers and not item.skipped and index not in skips
    ]
    if not pending:
        return skips
    choice = choose()
    if choice is not None and not choice.local:
        skips.update(dict.fromkeys(pending, LOCAL_NODE_REASON))
    return skips


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
