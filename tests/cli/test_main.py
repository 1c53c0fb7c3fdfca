"""The plugin's shell with a fake cluster: what it prints, what it says on errors, exit codes."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from podtrail.cli import api, main
from podtrail.cli.args import parse
from tests.cli.support import every_record, record

Raw = dict[str, Any]


class FakeCluster:
    namespace = "ptcli-fix"
    context = "test"

    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    stored = {r["metadata"]["name"]: r for r in every_record()}
    calls: list[tuple[str, Any]] = []

    async def connect(*args: Any) -> FakeCluster:
        return fake

    async def get_record(_: Any, namespace: str, name: str) -> Raw:
        calls.append(("get", (namespace, name)))
        if namespace == "ptcli-fix" and name in stored:
            return stored[name]
        raise api.RecordMissingError(f'podlifecyclerecords.podtrail.io "{name}" not found')

    async def list_records(_: Any, namespace: str | None, **selectors: Any) -> list[Raw]:
        calls.append(("list", (namespace, selectors)))
        items = list(stored.values()) if namespace in (None, "ptcli-fix") else []
        wanted = selectors.get("field_selector")
        if wanted:
            items = [r for r in items if f"metadata.name={r['metadata']['name']}" == wanted]
        return items

    async def pod_exists(_: Any, namespace: str, name: str) -> bool:
        return name == "fresh"

    monkeypatch.setattr(api, "connect", connect)
    monkeypatch.setattr(api, "get_record", get_record)
    monkeypatch.setattr(api, "list_records", list_records)
    monkeypatch.setattr(api, "pod_exists", pod_exists)
    fake.calls = calls  # type: ignore[attr-defined]
    return fake


async def _run(
    argv: list[str], *, out_factory: Callable[[], io.StringIO] = io.StringIO, **environ: str
) -> tuple[int, str, str]:
    out, err = out_factory(), io.StringIO()
    code = await main.run(parse(argv), out, err, environ)
    return code, out.getvalue(), err.getvalue()


async def test_a_pod_s_life(cluster: FakeCluster) -> None:
    code, out, err = await _run(["stubborn"])
    assert (code, err) == (0, "")
    assert "KilledAfterGrace" in out and "\x1b[" not in out, "no colour when not a terminal"
    assert cluster.closed


async def test_colour_on_a_terminal_unless_told_otherwise(cluster: FakeCluster) -> None:
    assert "\x1b[" in (await _run(["stubborn"], out_factory=Tty))[1]
    assert "\x1b[" not in (await _run(["stubborn"], out_factory=Tty, NO_COLOR="1"))[1]
    assert "\x1b[" not in (await _run(["stubborn", "--no-color"], out_factory=Tty))[1]
    assert "\x1b[" in (await _run(["stubborn", "--color", "always"]))[1]


async def test_output_json_and_yaml_are_the_record(cluster: FakeCluster) -> None:
    original = record("killed-after-grace")
    code, out, _ = await _run(["plr/stubborn", "-o", "json"])
    assert code == 0 and json.loads(out) == original
    code, out, _ = await _run(["stubborn", "-o", "yaml"])
    assert code == 0 and yaml.safe_load(out) == original


async def test_a_workload(cluster: FakeCluster) -> None:
    code, out, _ = await _run(["deploy/web"])
    assert code == 0
    assert "web-5b6946d6d4-qsxrg   replaced   web-5b6946d6d4-5226q" in out
    code, out, _ = await _run(["deployment", "web", "-o", "json"])
    listing = json.loads(out)
    assert listing["kind"] == "List" and len(listing["items"]) == 5


async def test_ls(cluster: FakeCluster) -> None:
    code, out, _ = await _run(["ls", "-A", "--outcome", "KilledAfterGrace"])
    assert code == 0
    assert out.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["stubborn"]
    code, out, err = await _run(["ls", "--outcome", "OOMKilled"])
    assert (code, out, err) == (0, "", "No records found in namespace ptcli-fix.\n")


async def test_a_pod_by_name_in_any_namespace(cluster: FakeCluster) -> None:
    code, out, _ = await _run(["done", "-A"])
    assert code == 0 and "Outcome:  Succeeded" in out
    code, _, err = await _run(["nothing", "-A"])
    assert code == 1 and "no record of a pod named nothing in any namespace" in err


async def test_no_record(cluster: FakeCluster) -> None:
    code, out, err = await _run(["gone"])
    assert (code, out) == (1, "")
    assert err.startswith("error: no record of pod gone in namespace ptcli-fix")
    code, _, err = await _run(["fresh", "-n", "ptcli-fix"])
    assert code == 1 and "pod ptcli-fix/fresh exists but has no record" in err


async def test_no_workload_records(cluster: FakeCluster) -> None:
    code, _, err = await _run(["sts/nothing"])
    assert code == 1 and "no records of StatefulSet nothing in namespace ptcli-fix" in err


async def test_api_errors_are_said_once(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(*args: Any, **kwargs: Any) -> Raw:
        raise api.CliError("forbidden: RBAC does not allow you to get ...")

    monkeypatch.setattr(api, "get_record", refused)
    code, out, err = await _run(["stubborn"])
    assert (code, out) == (1, "")
    assert err == "error: forbidden: RBAC does not allow you to get ...\n"
    assert cluster.closed


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["ls", "extra"]) == 2
    assert "error: ls takes options" in capsys.readouterr().err
    assert main.main(["stubborn", "--outcome", "Failed"]) == 2
    assert main.main(["cm/thing"]) == 2
    assert "unknown kind 'cm'" in capsys.readouterr().err
