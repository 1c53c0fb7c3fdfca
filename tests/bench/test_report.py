"""The benchmark's table from saved results: every row, without a cluster."""

from __future__ import annotations

from typing import Any

from bench import report

CONSUMERS = ("operator", "raw watch", "kube-state-metrics")


def window(repeat: int, scale: float) -> dict[str, Any]:
    return {
        "size": 20,
        "rate": 10.0,
        "repeat": repeat,
        "achieved_rate": 9.6 * scale,
        "machine_busy": 0.5 * scale,
        "lag": {
            "operator": {"p50": 0.5 * scale, "p95": 1.0, "p99": 1.2, "max": 1.5},
            "raw watch": {"p50": 0.01, "p95": -0.001, "p99": None, "max": 0.05},
        },
        "cpu_per_1000": {"operator": 2.0 * scale, "raw watch": 0.4, "kube-state-metrics": 0.5},
        "status_writes_per_record": {"mean": 3.0},
        "record_writes_per_1000": 480.0 * scale,
        "writes_closer_than_window": 7,
        "writes_without_new_fact": 6,
        "facts_missing": 0,
        "facts_expected": 100 + repeat,
        "apiserver_mean_latency_s": {
            "PUT podlifecyclerecords/status": 0.1,
            "PATCH pods/status": None,
        },
        "operator_metrics": {"write_lag": {"p50": 1.0, "p99": 5.0}},
        "record_requests": {
            "POST podlifecyclerecords": 20 + repeat,
            "PUT podlifecyclerecords/status": 90,
        },
        # etcd not found in the second run (restarted, say): its figure is the first run's
        "control_plane_cpu_per_1000": {
            "kube-apiserver": 3.0 * scale,
            "etcd": 0.5 if repeat == 1 else None,
        },
        "control_plane_idle_cores": {"kube-apiserver": 0.04 * scale, "etcd": 0.01},
        "record_status_bytes_per_transition": 2400.0 * scale,
        "record_status_put_mean_bytes": 5120.0,
    }


RESULTS: dict[str, Any] = {
    "windows": [window(1, 1.0), window(2, 1.2)],
    "starts": [
        {
            "size": 20,
            "repeat": repeat,
            "events_present": 45,
            "start": {
                c: {"seconds": seconds * repeat, "cpu_ms_per_pod": 4.0}
                for c, seconds in zip(CONSUMERS, (3.0, 1.0, 0.5), strict=True)
            },
            "memory": {
                c: {"steady_rss_mib": 100.0, "peak_rss_mib": 110.0 + repeat} for c in CONSUMERS
            },
        }
        for repeat in (1, 2)
    ],
    "catchups": [
        {
            "size": 20,
            "repeat": repeat,
            "changes_while_down": 30,
            "seconds": None if repeat == 2 else 4.0,
            "cpu_ms_per_pod": 5.0,
            "duplicate_keys": 0,
            "duplicate_facts": 0,
            "record_size_kib": {"p50": 6.0, "max": 9.0, "status_p50": 5.0, "status_max": 8.0},
        }
        for repeat in (1, 2)
    ],
    "deployment": {
        "startup_probe": {"periodSeconds": 2, "failureThreshold": 60, "budget_seconds": 120},
        "memory_limit_mib": 512.0,
    },
    "worst_case_record": {
        "probe_failures": 3000,
        "restarts": 60,
        "size_kib": 35.8,
        "status_kib": 34.4,
        "timeline_entries": 157,
        "timeline_dropped": 0,
    },
}

W, P = "20 pods, 10/s", "20 pods"


def note(where: str, figure: str, text: str) -> list[str]:
    """A row with its text in the operator's column and nothing in the others."""
    return [where, figure, text, "", "", "", ""]


def operator_only(where: str, figure: str, text: str) -> list[str]:
    """A figure of the operator alone: '-' for the others and the ratios."""
    return [where, figure, text, "-", "-", "-", "-"]


LATENCY = "API server mean latency, ms: record status PUT / pod status PATCH"
WRITE_LAG = "operator's own write lag (podtrail_write_lag_seconds) p50 / p99 bucket, s"
WORST = "record of a pod with 3000 probe failures and 60 restarts, KiB"
APISERVER_CPU = "kube-apiserver CPU s per 1,000 transitions (serving all its clients)"
ETCD_CPU = "etcd CPU s per 1,000 transitions (serving all its clients)"
IDLE = "kube-apiserver / etcd CPU without load, % of a core (in the figures above too)"
BYTES = "record status bytes sent per transition (API server's request body sizes)"
PROBE = "start to all pods held vs the Deployment's startup probe budget (2 s × 60; an upper bound)"
MEMORY = "100 / 112 (111-112) MiB of 512 MiB (20 % / 22 %)"
EXPECTED = [
    note(W, "load achieved, transitions/s (2 runs)", "11 (10-12); machine busy 55 (50-60) %"),
    [W, "lag p50, ms", "550 (500-600)", "10", "-", "55.0×", "-"],
    [W, "lag p95, ms", "1000", "0", "-", "-", "-"],
    [W, "lag p99, ms", "1200", "-", "-", "-", "-"],
    [W, "lag max, ms", "1500", "50", "-", "30.0×", "-"],
    [W, "CPU s per 1,000 transitions", "2.20 (2.00-2.40)", "0.40", "0.50", "5.5×", "4.4×"],
    operator_only(W, "status writes per record written (mean)", "3.00"),
    operator_only(W, "record writes per 1,000 transitions (API server)", "528 (480-576)"),
    operator_only(W, "writes < 1 window apart / without a new fact", "7 / 6"),
    note(W, "facts not seen in the record / expected", "0 / 102 (101-102)"),
    note(W, LATENCY, "100 / -"),
    note(W, WRITE_LAG, "1 / 5"),
    note(W, "API requests on records (1st run)", "POST plr 21, PUT plr/status 90"),
    note(W, APISERVER_CPU, "3.30 (3.00-3.60)"),
    note(W, ETCD_CPU, "0.50"),
    note(W, IDLE, "4.4 (4.0-4.8) / 1.0"),
    operator_only(W, BYTES, "2640 (2400-2880)"),
    operator_only(W, "record status PUT, mean body, KiB", "5.0"),
    [P, "start to all pods held, s (45 Events present)", "4.5 (3.0-6.0)", "1.5 (1.0-2.0)"]
    + ["0.8 (0.5-1.0)", "3.0×", "6.0×"],
    [P, "start CPU, ms per pod", "4.00", "4.00", "4.00", "1.0×", "1.0×"],
    [P, "RSS steady, MiB", "100", "100", "100", "1.0×", "1.0×"],
    [P, "RSS peak, MiB", "112 (111-112)", "112 (111-112)", "112 (111-112)", "1.0×", "1.0×"],
    note(P, PROBE, "4.5 (3.0-6.0) s of 120 s (4 %)"),
    note(P, "RSS steady / peak vs the Deployment's memory limit", MEMORY),
    operator_only(P, "restart catch-up, s (30 changes while down)", "4.0"),
    operator_only(P, "restart catch-up CPU, ms per pod", "5.00"),
    note(P, "duplicate timeline keys / same fact twice", "0 / 0"),
    note(P, "record size p50 / max, KiB (status alone)", "6.0 / 9.0 (5.0 / 8.0)"),
    note("worst case", WORST, "35.8 (status 34.4); 157 entries, 0 dropped"),
]


def test_every_row_of_the_table() -> None:
    assert report.rows(RESULTS) == EXPECTED


def test_the_table_as_markdown() -> None:
    text = report.markdown(report.rows(RESULTS))
    lines = text.splitlines()
    assert lines[0] == "| " + " | ".join(report.HEADER) + " |"
    assert len(lines) == 2 + len(EXPECTED)


def test_spread_and_ratio() -> None:
    assert report.spread([]) == "-"
    assert report.spread([1.0, None, 3.0], "{:.0f}") == "2 (1-3)"
    assert report.spread([1.001, 1.002]) == "1.00"
    assert report.ratio([4.0], [2.0]) == "2.0×"
    assert report.ratio([4.0], [0.0]) == "-"
    assert report.ratio([4.0], [None]) == "-"


def test_without_the_api_servers_process_or_the_deployments_bounds() -> None:
    # A cluster whose API server is not a process of this machine (kind): '-', the run goes on.
    windows = [
        {**w, "control_plane_cpu_per_1000": {}, "control_plane_idle_cores": {}}
        for w in RESULTS["windows"]
    ]
    bounds: dict[str, Any] = {"startup_probe": None, "memory_limit_mib": None}
    table = report.rows({**RESULTS, "windows": windows, "deployment": bounds})
    found = {row[1]: row[2] for row in table}
    assert found[APISERVER_CPU] == found[ETCD_CPU] == "-"
    assert found[IDLE] == "- / -"
    assert found[PROBE.replace("2 s × 60", "- s × -")] == "4.5 (3.0-6.0) s of - (-)"
    assert found["RSS steady / peak vs the Deployment's memory limit"] == (
        "100 / 112 (111-112) MiB of - (- / -)"
    )
