"""Golden-output tests: real records in, the plugin's exact output compared with golden/."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from podtrail.cli import life, table, workload
from podtrail.cli.style import Style
from podtrail.cli.workload import Workload
from tests.cli.support import (
    FORMATS,
    NOW,
    check_golden,
    every_record,
    new_format,
    record,
    records,
)

LIVES = ["succeeded", "killed-after-grace", "init-retry", "statefulset-recreated"]
EACH = [(fmt, name) for fmt in FORMATS for name in LIVES]


def _life(item: dict, view: life.View = life.View()) -> str:
    return "\n".join(life.describe(item, view)) + "\n"


@pytest.mark.parametrize(("fmt", "name"), EACH)
def test_life(fmt: str, name: str) -> None:
    check_golden(f"{fmt}/life/{name}.txt", _life(record(name, fmt)))


@pytest.mark.parametrize(("fmt", "name"), EACH)
def test_life_reads_records_with_only_labels_alike(fmt: str, name: str) -> None:
    assert _life(new_format(record(name, fmt))) == _life(record(name, fmt))


@pytest.mark.parametrize("fmt", FORMATS)
def test_life_since_keeps_the_newer_entries(fmt: str) -> None:
    item = record("killed-after-grace", fmt)
    created = life.rec.created(item)
    assert created is not None
    text = _life(item, life.View(since=created + timedelta(seconds=13)))
    check_golden(f"{fmt}/life/killed-after-grace-since.txt", text)
    assert "Created " not in text and "DeletionRequested" in text


def test_life_in_colour() -> None:
    text = _life(record("killed-after-grace"), life.View(style=Style(color=True)))
    check_golden("earlier/life/killed-after-grace-color.txt", text)
    assert "\x1b[31mKilledAfterGrace\x1b[0m" in text
    # Colour never moves a column: without the escapes, the plain output.
    assert re.sub(r"\x1b\[[0-9;]*m", "", text) == _life(record("killed-after-grace"))


WORKLOADS = [
    (Workload("Deployment", "web"), "deploy-web", 5),
    (Workload("ReplicaSet", "web-5b6946d6d4"), "rs-web-5b6946d6d4", 3),
    (Workload("StatefulSet", "db"), "sts-db", 1),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("target", "golden", "count"), WORKLOADS)
def test_workload(fmt: str, target: Workload, golden: str, count: int) -> None:
    mine = [r for r in every_record(fmt) if workload.belongs(r, target)]
    assert len(mine) == count, "the workload's records among every record of the namespace"
    text = "\n".join(workload.describe(target, mine)) + "\n"
    check_golden(f"{fmt}/workload/{golden}.txt", text)


@pytest.mark.parametrize("fmt", FORMATS)
def test_workload_reads_records_with_only_labels_alike(fmt: str) -> None:
    target = Workload("Deployment", "web")
    old = [r for r in every_record(fmt) if workload.belongs(r, target)]
    new = [r for r in map(new_format, every_record(fmt)) if workload.belongs(r, target)]
    assert len(new) == len(old) == len(records("rollout", fmt))
    assert workload.describe(target, new) == workload.describe(target, old)


LISTINGS = [
    ("all", table.Filters(), True),
    ("all-one-namespace", table.Filters(), False),
    ("killed", table.Filters(outcomes=frozenset({"killedaftergrace"})), True),
    ("live", table.Filters(outcomes=frozenset({"live"})), False),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("golden", "filters", "all_namespaces"), LISTINGS)
def test_ls(fmt: str, golden: str, filters: table.Filters, all_namespaces: bool) -> None:
    kept = table.select(every_record(fmt), filters)
    text = "\n".join(table.describe(kept, NOW[fmt], all_namespaces=all_namespaces)) + "\n"
    check_golden(f"{fmt}/ls/{golden}.txt", text)


def test_ls_since() -> None:
    kept = table.select(every_record(), table.Filters(since=NOW["earlier"] - timedelta(minutes=6)))
    assert [r["metadata"]["name"] for r in kept] == ["db-0"]
    text = "\n".join(table.describe(kept, NOW["earlier"], all_namespaces=False)) + "\n"
    check_golden("earlier/ls/since.txt", text)


@pytest.mark.parametrize("fmt", FORMATS)
def test_ls_reads_records_with_only_labels_alike(fmt: str) -> None:
    filters = table.Filters(outcomes=frozenset({"killedaftergrace", "live"}))
    old = table.select(every_record(fmt), filters)
    new = table.select(map(new_format, every_record(fmt)), filters)
    assert table.describe(new, NOW[fmt], all_namespaces=True) == table.describe(
        old, NOW[fmt], all_namespaces=True
    )
