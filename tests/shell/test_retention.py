from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podtrail.shell.retention import RecordAge, Removal, choose_removals

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def gone(name: str, seconds_ago: float, namespace: str = "a", ttl: int | None = None) -> RecordAge:
    return RecordAge(namespace, name, NOW - timedelta(seconds=seconds_ago), ttl)


def live(name: str, namespace: str = "a") -> RecordAge:
    return RecordAge(namespace, name, None)


def choose(records: list[RecordAge], **bounds: int) -> list[Removal]:
    options = {"retention_seconds": 100, "max_per_namespace": 10, "max_total": 100} | bounds
    return choose_removals(records, now=NOW, **options)


@pytest.mark.parametrize(
    ("record", "removed"),
    [
        (gone("old", 100), True),
        (gone("young", 99), False),
        (gone("override-short", 10, ttl=5), True),
        (gone("override-long", 1000, ttl=5000), False),
        (gone("override-zero", 0, ttl=0), True),
        (live("running"), False),
    ],
)
def test_retention_after_the_pod_is_gone(record: RecordAge, removed: bool) -> None:
    assert (choose([record]) == [Removal("a", record.name, "retention")]) is removed


def test_namespace_bound_removes_oldest_gone_first() -> None:
    records = [live("l1"), gone("g-new", 1), gone("g-old", 50), gone("g-mid", 20), live("l2")]
    assert choose(records, max_per_namespace=3) == [
        Removal("a", "g-old", "namespace-bound"),
        Removal("a", "g-mid", "namespace-bound"),
    ]


def test_cluster_bound_spans_namespaces() -> None:
    records = [gone("x", 5, "n1"), gone("y", 9, "n2"), live("z", "n3")]
    assert choose(records, max_total=2) == [Removal("n2", "y", "cluster-bound")]


def test_live_pods_are_kept_even_over_the_bounds() -> None:
    records = [live(f"p{i}") for i in range(5)]
    assert choose(records, max_per_namespace=1, max_total=1) == []


ages = st.builds(
    RecordAge,
    namespace=st.sampled_from(["a", "b", "c"]),
    name=st.text("abcdef", min_size=1, max_size=4),
    pod_gone_at=st.none() | st.integers(0, 500).map(lambda s: NOW - timedelta(seconds=s)),
    ttl_seconds=st.none() | st.integers(0, 400),
)


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(ages, max_size=30, unique_by=lambda r: (r.namespace, r.name)),
    per_namespace=st.integers(1, 8),
    total=st.integers(1, 20),
)
def test_bounds_hold_whenever_gone_records_allow(
    records: list[RecordAge], per_namespace: int, total: int
) -> None:
    removals = choose(records, max_per_namespace=per_namespace, max_total=total)
    removed = {(r.namespace, r.name) for r in removals}
    assert len(removed) == len(removals), "a record is removed once"
    kept = [r for r in records if (r.namespace, r.name) not in removed]
    for record in records:
        if record.pod_gone_at is None:
            assert (record.namespace, record.name) not in removed
    kept_gone = [r for r in kept if r.pod_gone_at is not None]
    if kept_gone:
        assert len(kept) <= total
        for namespace in {r.namespace for r in kept_gone}:
            assert sum(1 for r in kept if r.namespace == namespace) <= per_namespace
