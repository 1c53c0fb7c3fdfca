"""The harness's figures from what it counted, and the API server's counters (no cluster)."""

from __future__ import annotations

import asyncio
from collections import Counter

from bench import apimetrics, harness, observe

PUT = 'resource="podlifecyclerecords",subresource="status",verb="PUT"'
METRICS = f"""\
# HELP apiserver_request_total Counter of apiserver requests
apiserver_request_total{{code="200",resource="pods",subresource="status",verb="PATCH"}} 7
apiserver_request_total{{code="409",resource="pods",subresource="status",verb="PATCH"}} 2
apiserver_request_total{{resource="podlifecyclerecords",verb="POST"}} 3
apiserver_request_duration_seconds_sum{{{PUT}}} 1.5
apiserver_request_duration_seconds_count{{{PUT}}} 6
"""


class FakeKube:
    async def text(self, path: str) -> str:
        assert path == "/metrics"
        return METRICS


def test_api_server_counters_by_verb_and_resource() -> None:
    counts = asyncio.run(apimetrics.request_counts(FakeKube()))  # type: ignore[arg-type]
    assert counts == Counter({"PATCH pods/status": 9, "POST podlifecyclerecords": 3})
    seconds = asyncio.run(apimetrics.request_seconds(FakeKube()))  # type: ignore[arg-type]
    assert seconds == Counter(
        {"PUT podlifecyclerecords/status sum": 1.5, "PUT podlifecyclerecords/status count": 6}
    )
    latency = apimetrics.mean_latency(Counter(), seconds, "PUT podlifecyclerecords/status")
    assert latency == {"PUT podlifecyclerecords/status": 0.25}


def mark(**counts: dict[tuple[str, str], int]) -> harness.Mark:
    return harness.Mark(
        t0=100.0,
        transitions=0,
        errors=0,
        cpu={},
        harness_cpu=0.0,
        busy=(0.0, 0.0),
        api=Counter(),
        api_seconds=Counter(),
        operator_metrics="",
        expects=0,
        arrivals=0,
        writes=counts.get("writes", {}),
        bare=counts.get("bare", {}),
    )


def test_status_writes_per_record_in_the_window() -> None:
    watch = observe.RecordWatch(None, "run")  # type: ignore[arg-type]
    watch.views[("ns", "a")] = observe.RecordView(writes=[99.0, 100.5, 101.0, 103.0], bare_writes=3)
    watch.views[("ns", "b")] = observe.RecordView(writes=[99.5], bare_writes=1)
    figures = harness._record_writes(
        watch, mark(writes={("ns", "a"): 1}, bare={("ns", "a"): 1}), 1.0
    )
    assert figures == {
        "records_written": 1,
        "status_writes_per_record": {"mean": 3.0, "max": 3},
        "writes_closer_than_window": 1,  # 100.5 → 101.0
        "writes_without_new_fact": 3,  # a: 2 since the mark; b: 1 (no count at the mark)
        "record_updates_seen": 3,
    }


def test_record_requests_per_transition() -> None:
    api = {
        "POST podlifecyclerecords": 5,
        "PUT podlifecyclerecords/status": 15,
        "LIST podlifecyclerecords": 1,
        "PATCH pods/status": 40,
    }
    figures = harness._api_figures(api, {}, played=40)
    assert figures["record_requests"] == {
        "POST podlifecyclerecords": 5,
        "PUT podlifecyclerecords/status": 15,
        "LIST podlifecyclerecords": 1,
    }
    assert (figures["record_status_writes"], figures["record_writes_per_1000"]) == (15, 500.0)


def test_the_operators_own_counters_between_two_scrapes() -> None:
    before = 'podtrail_status_writes_total{kind="status",result="ok"} 4\npodtrail_facts_total 10\n'
    after = (
        'podtrail_status_writes_total{kind="status",result="ok"} 9\n'
        'podtrail_status_writes_total{kind="status",result="conflict"} 2\n'
        "podtrail_facts_total 25\n"
        'podtrail_write_lag_seconds_bucket{le="1.0"} 8\n'
        'podtrail_write_lag_seconds_bucket{le="5.0"} 10\n'
        'podtrail_write_lag_seconds_bucket{le="+Inf"} 10\n'
    )
    assert harness._operator_figures(before, after) == {
        "status_writes_ok": 5.0,
        "conflicts": 2.0,
        "facts": 15.0,
        "write_lag": {"n": 10.0, "p50": 1.0, "p99": 5.0},
    }


def test_quiet_counts_idle_samples_once_the_process_has_worked() -> None:
    quiet = harness._Quiet()
    assert [quiet.sample(cpu) for cpu in (0.0, 0.01, 0.5, 0.505, 0.51, 0.6, 0.6)] == [
        0,
        0,
        0,
        1,
        2,
        0,
        1,
    ]


BODY = "apiserver_request_body_size_bytes"
PLR = 'group="podtrail.io",resource="podlifecyclerecords"'
BODIES = f"""\
{BODY}_sum{{{PLR},verb="create"}} 1700
{BODY}_count{{{PLR},verb="create"}} 5
{BODY}_sum{{{PLR},verb="update"}} 7.5e+04
{BODY}_count{{{PLR},verb="update"}} 15
{BODY}_sum{{group="",resource="pods",verb="patch"}} 9e+05
{BODY}_bucket{{group="",resource="pods",verb="patch",le="50000"}} 12
"""


def test_record_bytes_sent_from_the_api_servers_body_sizes() -> None:
    before = apimetrics.body_bytes_in(
        'apiserver_request_body_size_bytes_sum{resource="podlifecyclerecords",verb="update"} 5000\n'
        'apiserver_request_body_size_bytes_count{resource="podlifecyclerecords",verb="update"} 5\n'
    )
    after = apimetrics.body_bytes_in(BODIES)
    assert after["patch pods sum"] == 9e5
    figures = apimetrics.record_body_figures(before, after, played=40)
    assert figures == {
        "record_body_bytes": {
            "create": {"bytes": 1700.0, "requests": 5.0},
            "update": {"bytes": 70000.0, "requests": 10.0},
            "patch": {"bytes": 0.0, "requests": 0.0},
        },
        "record_status_bytes_per_transition": 1750.0,  # the status PUTs' 70,000 bytes / 40
        "record_status_put_mean_bytes": 7000.0,
    }


def test_no_body_size_metric_no_bytes() -> None:
    figures = apimetrics.record_body_figures(Counter(), Counter(), played=40)
    assert figures == {
        "record_body_bytes": None,
        "record_status_bytes_per_transition": None,
        "record_status_put_mean_bytes": None,
    }


def test_api_server_and_etcd_cpu_per_transition() -> None:
    figures = harness._control_plane_figures({"kube-apiserver": 2.5, "etcd": None}, played=500)
    assert figures["control_plane_cpu_per_1000"] == {"kube-apiserver": 5.0, "etcd": None}
