"""Golden-output tests: real records in, the plugin's exact output compared with golden/."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from tests.cli.support import NOW, check_golden, every_record, new_format, record, records

from podtrail.cli import life, table, workload
from podtrail.cli.style import Style
from podtrail.cli.workload import Workload

LIVES = ["succeeded", "killed-after-grace", "init-retry", "statefulset-recreated"]


def _life(item: dict, view: life.View = life.View()) -> str:
    return "\n".join(life.describe(item, view)) + "\n"


@pytest.mark.parametrize("name", LIVES)
def test_life(name: str) -> None:
    check_golden(f"life/{name}.txt", _life(record(name)))


@pytest.mark.parametrize("name", LIVES)
def test_life_reads_the_new_record_format_alike(name: str) -> None:
    assert _life(new_format(record(name))) == _life(record(name))


def test_life_since_keeps_the_newer_entries() -> None:
    item = record("killed-after-grace")
    created = life.rec.created(item)
    assert created is not None
    text = _life(item, life.View(since=created + timedelta(seconds=18)))
    check_golden("life/killed-after-grace-since.txt", text)
    assert "Created " not in text and "DeletionRequested" in text


def test_life_in_colour() -> None:
    text = _life(record("killed-after-grace"), life.View(style=Style(color=True)))
    check_golden("life/killed-after-grace-color.txt", text)
    assert "\x1b[31mKilledAfterGrace\x1b[0m" in text
    # Colour never moves a column: without the escapes, the plain output.
    assert re.sub(r"\x1b\[[0-9;]*m", "", text) == _life(record("killed-after-grace"))


WORKLOADS = [
    ("rollout", Workload("Deployment", "web"), "deploy-web"),
    ("rollout", Workload("ReplicaSet", "web-5b6946d6d4"), "rs-web-5b6946d6d4"),
    ("statefulset-recreated", Workload("StatefulSet", "db"), "sts-db"),
]


@pytest.mark.parametrize(("source", "target", "golden"), WORKLOADS)
def test_workload(source: str, target: Workload, golden: str) -> None:
    everything = every_record()
    mine = [r for r in everything if workload.belongs(r, target)]
    assert mine, "the workload's records are found among every record of the namespace"
    text = "\n".join(workload.describe(target, mine)) + "\n"
    check_golden(f"workload/{golden}.txt", text)


def test_workload_reads_the_new_record_format_alike() -> None:
    target = Workload("Deployment", "web")
    old = [r for r in every_record() if workload.belongs(r, target)]
    new = [r for r in map(new_format, every_record()) if workload.belongs(r, target)]
    assert len(new) == len(old) == len(records("rollout"))
    assert workload.describe(target, new) == workload.describe(target, old)


@pytest.mark.parametrize(
    ("golden", "filters", "all_namespaces"),
    [
        ("all", table.Filters(), True),
        ("all-one-namespace", table.Filters(), False),
        ("killed", table.Filters(outcomes=frozenset({"killedaftergrace"})), True),
        ("live", table.Filters(outcomes=frozenset({"live"})), False),
        ("since", table.Filters(since=NOW - timedelta(minutes=6)), False),
    ],
)
def test_ls(golden: str, filters: table.Filters, all_namespaces: bool) -> None:
    kept = table.select(every_record(), filters)
    text = "\n".join(table.describe(kept, NOW, all_namespaces=all_namespaces)) + "\n"
    check_golden(f"ls/{golden}.txt", text)


def test_ls_reads_the_new_record_format_alike() -> None:
    filters = table.Filters(outcomes=frozenset({"killedaftergrace", "live"}), node="podtrail-node")
    old = table.select(every_record(), filters)
    new = table.select(map(new_format, every_record()), filters)
    assert table.describe(new, NOW, all_namespaces=True) == table.describe(
        old, NOW, all_namespaces=True
    )
