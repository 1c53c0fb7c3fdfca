"""The one rule for the cluster a command acts on (cluster/context.sh), against a real API server.

Variants of the test session's kubeconfig are written to a scratch directory: the same server
reached under another host name (so not recognisably the project's local cluster), contexts
renamed as kind, minikube or k3d name theirs, a server that does not answer.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import KubeCluster

REPO = Path(__file__).resolve().parents[2]
CONTEXT_SH = REPO / "cluster" / "context.sh"
DEAD_SERVER = "https://127.0.0.1:9"  # the discard port: nothing answers

pytestmark = pytest.mark.cluster


def choose(
    *args: str, kubeconfig: str | None = None, home: Path, confirm: bool = False
) -> tuple[int, dict[str, str], str]:
    """Run cluster/context.sh; its exit code, the variables it exports, its stderr."""
    env = {k: v for k, v in os.environ.items() if k not in {"KUBECONFIG", "CONFIRM", "KUBECTL"}}
    env["HOME"] = str(home)
    env["CONTEXT_PROBE_TIMEOUT"] = "3s"
    if kubeconfig is not None:
        env["KUBECONFIG"] = kubeconfig
    if confirm:
        env["CONFIRM"] = "1"
    proc = subprocess.run(
        ["bash", str(CONTEXT_SH), *args], env=env, capture_output=True, text=True, timeout=60
    )
    exported: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", line
        name, _, value = words[1].partition("=")
        exported[name] = value
    return proc.returncode, exported, proc.stderr


def variant(
    cluster: KubeCluster, path: Path, *, context: str | None = None, server: str | None = None
) -> Path:
    """The session's kubeconfig with its current context renamed and/or its server moved."""
    config: dict[str, Any] = yaml.safe_load(cluster.kubeconfig.read_text())
    current = config["current-context"]
    (entry,) = [c for c in config["contexts"] if c["name"] == current]
    cluster_name = entry["context"]["cluster"]
    for item in config["clusters"]:
        if item["name"] == cluster_name:
            original = item["cluster"]["server"]
            item["cluster"]["server"] = server or original.replace("127.0.0.1", "localhost")
    if context is not None:
        entry["name"] = config["current-context"] = context
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def nohome(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def test_an_explicit_kubeconfig_that_answers_is_used(
    kube_cluster: KubeCluster, tmp_path: Path, nohome: Path
) -> None:
    config = variant(kube_cluster, tmp_path / "a.yaml", context="kind-demo")
    rc, chosen, err = choose(kubeconfig=str(config), home=nohome)
    assert rc == 0, err
    assert chosen["KUBECONFIG"] == str(config)
    assert (chosen["KUBE_CONTEXT"], chosen["CLUSTER_FLAVOUR"]) == ("kind-demo", "kind")
    assert chosen["CLUSTER_SOURCE"] == "KUBECONFIG"


def test_a_kubeconfig_list_is_taken_whole(
    kube_cluster: KubeCluster, tmp_path: Path, nohome: Path
) -> None:
    first = variant(kube_cluster, tmp_path / "first.yaml", context="minikube")
    missing = tmp_path / "missing.yaml"  # kubectl skips a listed file that does not exist
    listed = f"{missing}{os.pathsep}{first}"
    rc, chosen, err = choose(kubeconfig=listed, home=nohome)
    assert rc == 0, err
    assert chosen["KUBECONFIG"] == listed
    assert (chosen["KUBE_CONTEXT"], chosen["CLUSTER_FLAVOUR"]) == ("minikube", "minikube")


def test_an_explicit_kubeconfig_that_does_not_answer_stops_the_command(
    kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    variant(kube_cluster, home / ".kube" / "config", context="k3d-ok")  # answers, but not asked
    dead = variant(kube_cluster, tmp_path / "dead.yaml", context="kind-dead", server=DEAD_SERVER)
    rc, chosen, err = choose(kubeconfig=str(dead), home=home)
    assert rc != 0 and chosen == {}
    assert "does not answer" in err and str(dead) in err


def test_home_kubeconfig_is_used_when_it_answers(kube_cluster: KubeCluster, tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = variant(kube_cluster, home / ".kube" / "config", context="k3d-team")
    rc, chosen, err = choose("--changes", "deploy the operator", home=home)
    assert rc == 0, err
    assert chosen["KUBECONFIG"] == str(config)
    assert (chosen["CLUSTER_FLAVOUR"], chosen["CLUSTER_SOURCE"]) == ("k3d", "home")
    assert "deploy the operator on context k3d-team (k3d, from ~/.kube/config)" in err


def test_home_kubeconfig_that_does_not_answer_falls_back_to_the_local_cluster(
    kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    if not kube_cluster.local:
        pytest.skip("the fallback is the project's local cluster, which is not this session's")
    home = tmp_path / "home"
    variant(kube_cluster, home / ".kube" / "config", context="kind-gone", server=DEAD_SERVER)
    rc, chosen, err = choose(home=home)
    assert rc == 0, err
    assert (chosen["CLUSTER_FLAVOUR"], chosen["CLUSTER_SOURCE"]) == ("local", "local")
    assert chosen["KUBECONFIG"] == str(kube_cluster.kubeconfig)
    assert "the project's local cluster" in err


def test_an_unknown_context_needs_confirm_to_change(
    kube_cluster: KubeCluster, tmp_path: Path, nohome: Path
) -> None:
    prod = variant(kube_cluster, tmp_path / "prod.yaml", context="prod-eu-1")
    rc, chosen, err = choose("--changes", "deploy the operator", kubeconfig=str(prod), home=nohome)
    assert rc != 0 and chosen == {}
    assert "prod-eu-1" in err and "CONFIRM=1" in err
    rc, chosen, err = choose(
        "--changes", "deploy the operator", kubeconfig=str(prod), home=nohome, confirm=True
    )
    assert rc == 0, err
    assert (chosen["KUBE_CONTEXT"], chosen["CLUSTER_FLAVOUR"]) == ("prod-eu-1", "other")
    # Reading needs no confirmation.
    rc, chosen, err = choose(kubeconfig=str(prod), home=nohome)
    assert rc == 0 and chosen["CLUSTER_FLAVOUR"] == "other", err


def test_the_project_cluster_is_recognised_by_its_server_whatever_the_context_name(
    kube_cluster: KubeCluster, tmp_path: Path, nohome: Path
) -> None:
    if not kube_cluster.local:
        pytest.skip("needs the project's local cluster")
    config: dict[str, Any] = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    (entry,) = [c for c in config["contexts"] if c["name"] == config["current-context"]]
    entry["name"] = config["current-context"] = "whatever"
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(yaml.safe_dump(config))
    rc, chosen, err = choose("--changes", "deploy", kubeconfig=str(renamed), home=nohome)
    assert rc == 0, err
    assert chosen["CLUSTER_FLAVOUR"] == "local"
