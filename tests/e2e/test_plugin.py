"""`kubectl podtrail` on a real cluster: a Deployment rolled, one of its pods SIGKILLed after its
grace period, then the plugin run as a user runs it (a subprocess, the installed entry point).

The records must be written by this session's operator alone: another operator tracking the
same namespaces (say one left running by an earlier session) rewrites them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from podtrail.cli import api, main
from podtrail.cli.args import parse
from tests.e2e.conftest import Harness, plays
from tests.e2e.support import container, status_of

pytestmark = [pytest.mark.cluster, pytest.mark.kubelet, pytest.mark.e2e]

PLUGIN = str(Path(sys.executable).with_name("kubectl-podtrail"))
IGNORE_TERM = "while true; do sleep 1; done"  # a PID-1 shell without a trap ignores TERM
GRACE = 2

Obj = dict[str, Any]


def _deployment(name: str) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": GRACE,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [container("app", IGNORE_TERM)],
                },
            },
        },
    }


def _live(record: Obj) -> bool:
    status = status_of(record)
    return status.get("phase") == "Running" and not status.get("outcome")


def _ended(record: Obj) -> bool:
    status = status_of(record)
    return bool(status.get("outcome")) and bool((status.get("times") or {}).get("deleted"))


async def _wait_records(h: Harness, namespace: str, live: int, ended: int) -> list[Obj]:
    records: list[Obj] = []
    for _ in range(360):
        records = await h.kube.records(namespace)
        if sum(map(_live, records)) == live and sum(map(_ended, records)) == ended:
            if len(records) == live + ended:
                return records
        await asyncio.sleep(0.5)
    states = [(r["metadata"]["name"], status_of(r).get("phase"), status_of(r).get("outcome"))
              for r in records]  # fmt: skip
    raise AssertionError(f"{namespace}: wanted {live} live and {ended} ended records: {states}")


async def plugin(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the installed `kubectl-podtrail` as a user would."""
    process = await asyncio.create_subprocess_exec(
        PLUGIN,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or dict(os.environ),
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return await process.wait(), out.decode(), err.decode()


async def rollout_and_kill(h: Harness) -> Obj:
    assert Path(PLUGIN).exists(), f"no {PLUGIN}: install the package (pip install -e .)"
    namespace = await h.namespace("plugin")
    await h.kube.apps.create_namespaced_deployment(namespace, _deployment("shop"))
    first = await _wait_records(h, namespace, live=2, ended=0)
    await h.kube.apps.patch_namespaced_deployment(
        "shop",
        namespace,
        {"spec": {"template": {"metadata": {"annotations": {"podtrail.io/e2e-revision": "2"}}}}},
    )
    rolled = await _wait_records(h, namespace, live=2, ended=2)
    victim = sorted(r["metadata"]["name"] for r in rolled if _live(r))[0]
    await h.kube.delete_pod(namespace, victim)
    final = await _wait_records(h, namespace, live=2, ended=3)
    return {
        "namespace": namespace,
        "first": sorted(r["metadata"]["name"] for r in first),
        "victim": victim,
        "records": final,
        "life": await plugin(victim, "-n", namespace),
        "since": await plugin(victim, "-n", namespace, "--since", "1h"),
        "deploy": await plugin("deploy/shop", "-n", namespace),
        "killed": await plugin("ls", "--outcome", "KilledAfterGrace", "-A"),
        "json": await plugin(f"plr/{victim}", "-n", namespace, "-o", "json"),
        "missing": await plugin("no-such-pod", "-n", namespace),
        "forbidden": await _as_nobody(h, namespace),
    }


async def _as_nobody(h: Harness, namespace: str) -> tuple[int, str, str]:
    """The plugin run with the token of a ServiceAccount that RBAC grants nothing."""
    await h.kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = await h.kube.core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}
    )
    admin = yaml.safe_load(Path(os.environ["KUBECONFIG"].split(os.pathsep)[0]).read_text())
    cluster = admin["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:  # a path: inline it, the file may be relative
        authority = Path(cluster.pop("certificate-authority")).read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(authority).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "nobody", "user": {"token": token.status.token}}],
        "contexts": [{"name": "nobody", "context": {"cluster": "c", "user": "nobody",
                                                    "namespace": namespace}}],
        "current-context": "nobody",
    }  # fmt: skip
    path = Path(tempfile.mkdtemp(prefix="podtrail-plugin-")) / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return await plugin("ls", "--kubeconfig", str(path))


def _section(text: str, title: str) -> list[str]:
    """The lines of one section of `kubectl podtrail POD` (up to the next blank line)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


@plays(rollout_and_kill)
def test_a_pod_s_life_in_order_with_durations_and_the_sigkill(outcome: Any) -> None:
    code, out, err = outcome["life"]
    assert (code, err) == (0, ""), err
    assert f"Pod:      {outcome['namespace']}/{outcome['victim']}" in out
    assert re.search(r"^Outcome:\s+KilledAfterGrace$", out, re.MULTILINE)
    entries = _section(out, "Timeline:")[1:]
    kinds = [line.split()[1] for line in entries]
    order = ["Created", "Scheduled", "ContainerStarted", "DeletionRequested", "KilledAfterGrace",
             "PodDeleted"]  # fmt: skip
    assert [kind for kind in kinds if kind in order] == order, "\n".join(entries)
    offsets = [float(line.split()[0][2:-1]) for line in entries if line.split()[0].endswith("s")
               and "m" not in line.split()[0]]  # fmt: skip
    assert offsets == sorted(offsets), "offsets from creation only grow"
    durations = "\n".join(_section(out, "Durations:"))
    for label in ("to schedule", "to ready", "deletion to exit", "exit to removal"):
        assert label in durations, durations
    exit_gap = re.search(r"deletion to exit\s+(\d+(?:\.\d+)?)s", durations)
    assert exit_gap and float(exit_gap.group(1)) >= GRACE - 1, durations
    story = "\n".join(_section(out, "Termination:"))
    assert "Termination: KilledAfterGrace" in story
    assert f"grace period {GRACE}s" in story
    assert re.search(r"app\s+exit 137 .*signal KILL.*: KilledAfterGrace", story), story
    assert "SIGKILL after the grace period (inferred)" in story, story


@plays(rollout_and_kill)
def test_since_keeps_what_is_newer(outcome: Any) -> None:
    code, out, _ = outcome["since"]
    assert code == 0 and "Timeline since " in out and "(0 older left out)" in out


@plays(rollout_and_kill)
def test_the_deployment_s_pods_and_who_replaced_whom(outcome: Any) -> None:
    code, out, err = outcome["deploy"]
    assert (code, err) == (0, ""), err
    namespace, victim = outcome["namespace"], outcome["victim"]
    assert out.startswith(f"Deployment {namespace}/shop: 5 pods (2 live, 3 ended)")
    rows = out.split("\n\n")[1].splitlines()
    assert rows[0].split()[:3] == ["CREATED", "POD", "REPLICASET"]
    pods = [row.split()[1] for row in rows[1:]]
    assert sorted(pods) == sorted(r["metadata"]["name"] for r in outcome["records"])
    assert sorted(pods[:2]) == outcome["first"], "time order: the first ReplicaSet's pods first"
    for row in rows[1:]:
        if row.split()[1] in outcome["first"] or row.split()[1] == victim:
            assert "KilledAfterGrace" in row and re.search(r"T\+\S+s$", row), row
    assert "Replacements (inferred" in out
    replaced = dict(
        (m.group(2), m.group(1))
        for m in re.finditer(r"^  (\S+)\s+replaced\s+(\S+)", out, re.MULTILINE)
    )
    assert victim in replaced, out
    newest = {r["metadata"]["name"] for r in outcome["records"]} - set(outcome["first"])
    assert replaced[victim] in newest - {victim}
    assert set(outcome["first"]) & set(replaced), "a rollout's pod replaced an old one"


@plays(rollout_and_kill)
def test_ls_by_outcome_across_namespaces(outcome: Any) -> None:
    code, out, err = outcome["killed"]
    assert (code, err) == (0, ""), err
    lines = out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "OWNER", "NODE", "PHASE", "OUTCOME",
                                "RESTARTS", "CREATED", "ENDED"]  # fmt: skip
    mine = [line.split() for line in lines[1:] if line.split()[0] == outcome["namespace"]]
    assert {row[1] for row in mine} == {outcome["victim"], *outcome["first"]}
    assert all(row[5] == "KilledAfterGrace" and row[2].startswith("rs/shop-") for row in mine)
    assert all(line.split()[5] == "KilledAfterGrace" for line in lines[1:])


@plays(rollout_and_kill)
def test_output_json_is_the_record(outcome: Any) -> None:
    code, out, _ = outcome["json"]
    record = json.loads(out)
    assert code == 0 and record["kind"] == "PodLifecycleRecord"
    assert record["metadata"]["name"] == outcome["victim"]
    assert record["status"]["outcome"] == "KilledAfterGrace"


@plays(rollout_and_kill)
def test_errors_are_clear(outcome: Any) -> None:
    code, out, err = outcome["missing"]
    assert (code, out) == (1, "")
    assert f"error: no record of pod no-such-pod in namespace {outcome['namespace']}" in err
    code, out, err = outcome["forbidden"]
    assert (code, out) == (1, "")
    assert err.startswith("error: forbidden: RBAC does not allow you to list"), err


@plays(rollout_and_kill)
def test_kubectl_finds_the_plugin(outcome: Any, kube_cluster: Any) -> None:
    path = os.pathsep.join([str(Path(PLUGIN).parent), os.environ.get("PATH", "")])
    result = subprocess.run(
        [kube_cluster.kubectl, "podtrail", "ls", "-n", outcome["namespace"]],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 + len(outcome["records"])


async def test_a_cluster_without_podtrail(
    kube_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real API server's answer for a group it does not serve, as on a cluster without the CRD.
    monkeypatch.setattr(api, "GROUP", "not-installed.podtrail.io")
    err = io.StringIO()
    code = await main.run(parse(["ls", "-A"]), io.StringIO(), err, dict(os.environ))
    assert code == 1
    assert err.getvalue().startswith("error: podtrail is not installed on this cluster")
