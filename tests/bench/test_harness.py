"""The benchmark harness runs end to end at a tiny size and fills its table.

No figure is asserted: timings depend on the machine. This only checks that `python -m bench`
works against the cluster (kwok, kube-state-metrics, the operator, the raw watch, the load)
and that every column of its table is filled where the figure applies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
ALL_THREE = ("CPU s per 1,000 transitions", "start CPU, ms per pod", "RSS steady", "RSS peak")
WITH_RAW = ("lag p50", "lag p95", "lag p99", "lag max")
# Read from /proc: '-' where the API server is not a process of this machine (kind).
HOST_PROCESSES = ("kube-apiserver CPU", "etcd CPU", "kube-apiserver / etcd CPU")
NEW_ROWS = (
    *HOST_PROCESSES,
    "record status bytes sent per transition",
    "record status PUT, mean body",
    "start to all pods held vs the Deployment's startup probe budget",
    "RSS steady / peak vs the Deployment's memory limit",
)


def median_of(cell: str) -> float:
    """The median a cell shows first: "12", or "12 (10-14)" with the spread of the repeats."""
    return float(cell.split()[0])


def test_tiny_run_fills_the_table(kube_cluster: Any, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--tiny",
            "--kubeconfig",
            str(kube_cluster.kubeconfig),
            "--kubectl",
            kube_cluster.kubectl,
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "| where | figure | operator | raw watch | kube-state-metrics |" in proc.stdout

    (result_file,) = tmp_path.glob("tiny-*.json")
    result = json.loads(result_file.read_text())
    header, rows = result["table"]["header"], result["table"]["rows"]
    assert len(header) == 7
    figures = [row[1] for row in rows]
    for wanted in (
        *ALL_THREE,
        *WITH_RAW,
        *NEW_ROWS,
        "restart catch-up, s",
        "record size",
        "status writes",
    ):
        assert any(f.startswith(wanted) for f in figures), f"no row for {wanted!r}"
    for row in rows:
        assert len(row) == 7
        if row[1].startswith(HOST_PROCESSES) and not kube_cluster.local:
            continue
        assert row[2] not in ("", "-"), f"operator column empty in {row}"
        if row[1].startswith(ALL_THREE):
            assert "-" not in (row[3], row[4]), row
        if row[1].startswith(WITH_RAW):
            assert row[3] != "-", row
            # The ratio to the raw watch's lag: undefined when that lag is 0 ms (a fast cluster).
            if median_of(row[3]) >= 1:
                assert row[5] != "-", row
    assert list(tmp_path.glob("tiny-*-lag.png")), "no lag plot"
