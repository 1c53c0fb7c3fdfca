import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podtrail.shell.retention import RecordAge, Removal, choose_removals, fair_share

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


def placeholder(
    name: str, seconds_ago: float, namespace: str = "a", ttl: int | None = None
) -> RecordAge:
    """A record a user created for a pod that never appeared."""
    return RecordAge(
        namespace, name, None, ttl, created_at=NOW - timedelta(seconds=seconds_ago), pod_seen=False
    )


def test_a_placeholder_is_kept_for_the_retention_from_its_creation() -> None:
    assert choose([placeholder("young", 99)]) == []
    assert choose([placeholder("old", 100)]) == [Removal("a", "old", "retention")]
    assert choose([placeholder("short", 10, ttl=5)]) == [Removal("a", "short", "retention")]


def test_a_live_pod_is_never_a_placeholder() -> None:
    created_long_ago = RecordAge("a", "p", None, created_at=NOW - timedelta(days=9))
    assert choose([created_long_ago], max_per_namespace=0, max_total=0) == []


def test_placeholders_count_and_go_first_when_oldest() -> None:
    records = [placeholder("p-old", 90), gone("g", 50), placeholder("p-new", 10), live("l")]
    assert choose(records, max_per_namespace=2) == [
        Removal("a", "p-old", "namespace-bound"),
        Removal("a", "g", "namespace-bound"),
    ]


def test_the_cluster_bound_takes_from_the_namespace_over_its_share() -> None:
    """20,000 placeholders in one namespace cannot push out another namespace's records."""
    flood = [placeholder(f"p{i:05}", 50 - i / 1000, "a") for i in range(20_000)]
    others = [gone(f"g{i:03}", 99 - i / 100, "b") for i in range(500)]
    removals = choose(
        flood + others, max_per_namespace=100_000, max_total=20_000, retention_seconds=10**6
    )
    assert {r.namespace for r in removals} == {"a"}
    assert [r.name for r in removals] == [f"p{i:05}" for i in range(500)], "oldest first"
    assert {r.reason for r in removals} == {"cluster-bound"}


def test_a_namespace_at_its_share_is_untouched_even_when_the_bound_is_missed() -> None:
    records = [live(f"l{i}", "a") for i in range(8)] + [gone(f"g{i}", i, "b") for i in range(3)]
    # Share of 6 between a (8 records, all live) and b (3): s = 3, b is at it.
    assert choose(records, max_total=6) == []


def test_the_fair_share_fills_the_small_namespaces_first() -> None:
    assert fair_share({"a": 1, "b": 5, "c": 10}, 16) is None
    assert fair_share({"a": 1, "b": 5, "c": 10}, 11) == 5
    assert fair_share({"a": 1, "b": 5, "c": 10}, 10) == Fraction(9, 2)
    assert fair_share({"a": 3}, 0) == 0


def test_a_fractional_share_trims_the_oldest_next_in_line() -> None:
    records = [gone(f"a{i}", 10 + i, "a") for i in range(3)]
    records += [gone(f"b{i}", 20 + i, "b") for i in range(3)]
    # Share 2.5: both keep at least 2, one keeps 3; b gives up the third (its next is older).
    assert choose(records, max_total=5) == [Removal("b", "b2", "cluster-bound")]


ages = st.builds(
    RecordAge,
    namespace=st.sampled_from(["a", "b", "c"]),
    name=st.text("abcdef", min_size=1, max_size=4),
    pod_gone_at=st.none() | st.integers(0, 500).map(lambda s: NOW - timedelta(seconds=s)),
    ttl_seconds=st.none() | st.integers(0, 400),
    created_at=st.none() | st.integers(0, 900).map(lambda s: NOW - timedelta(seconds=s)),
    pod_seen=st.booleans(),
)
records_strategy = st.lists(ages, max_size=40, unique_by=lambda r: (r.namespace, r.name))


def removed_keys(removals: list[Removal]) -> set[tuple[str, str]]:
    return {(r.namespace, r.name) for r in removals}


@settings(max_examples=150, deadline=None)
@given(records=records_strategy, per_namespace=st.integers(0, 8), total=st.integers(0, 20))
def test_a_live_pods_record_is_never_removed(
    records: list[RecordAge], per_namespace: int, total: int
) -> None:
    removals = choose(records, max_per_namespace=per_namespace, max_total=total)
    assert len(removed_keys(removals)) == len(removals), "a record is removed once"
    for record in records:
        if record.removable_since is None:
            assert (record.namespace, record.name) not in removed_keys(removals)


def survivors_of_namespace_phase(
    records: list[RecordAge], removals: list[Removal]
) -> dict[str, int]:
    before = removed_keys([r for r in removals if r.reason != "cluster-bound"])
    counts: dict[str, int] = {}
    for record in records:
        if (record.namespace, record.name) not in before:
            counts[record.namespace] = counts.get(record.namespace, 0) + 1
    return counts


@settings(max_examples=150, deadline=None)
@given(records=records_strategy, per_namespace=st.integers(0, 8), total=st.integers(0, 20))
def test_the_cluster_bound_touches_only_namespaces_above_their_share(
    records: list[RecordAge], per_namespace: int, total: int
) -> None:
    removals = choose(records, max_per_namespace=per_namespace, max_total=total)
    counts = survivors_of_namespace_phase(records, removals)
    share = fair_share(counts, total)
    cut: dict[str, int] = {}
    for removal in removals:
        if removal.reason == "cluster-bound":
            cut[removal.namespace] = cut.get(removal.namespace, 0) + 1
    if share is None:
        assert cut == {}
        return
    for namespace, removed in cut.items():
        assert counts[namespace] > share, "a namespace at or under its share is untouched"
        assert counts[namespace] - removed >= math.floor(share), "nor trimmed below it"


@settings(max_examples=150, deadline=None)
@given(records=records_strategy, per_namespace=st.integers(0, 8), total=st.integers(0, 20))
def test_the_bounds_are_met_when_enough_records_are_removable(
    records: list[RecordAge], per_namespace: int, total: int
) -> None:
    removals = choose(records, max_per_namespace=per_namespace, max_total=total)
    kept = [r for r in records if (r.namespace, r.name) not in removed_keys(removals)]
    by_namespace: dict[str, list[RecordAge]] = {}
    for record in kept:
        by_namespace.setdefault(record.namespace, []).append(record)
    for items in by_namespace.values():
        unremovable = sum(1 for r in items if r.removable_since is None)
        assert len(items) <= max(per_namespace, unremovable)
    counts = survivors_of_namespace_phase(records, removals)
    share = fair_share(counts, total)
    if share is not None:
        fits = all(
            sum(1 for r in items if r.removable_since is None) <= math.floor(share)
            for items in by_namespace.values()
        )
        if fits:
            assert len(kept) <= total


@settings(max_examples=150, deadline=None)
@given(records=records_strategy, per_namespace=st.integers(0, 8), total=st.integers(0, 20))
def test_the_bounds_remove_the_oldest_first(
    records: list[RecordAge], per_namespace: int, total: int
) -> None:
    removals = choose(records, max_per_namespace=per_namespace, max_total=total)
    by_key = {(r.namespace, r.name): r for r in records}
    for reason in ("retention", "namespace-bound", "cluster-bound"):
        times = [
            by_key[(r.namespace, r.name)].removable_since for r in removals if r.reason == reason
        ]
        assert times == sorted(times), "each kind of removal is listed oldest first"
    removed = removed_keys(removals)
    for namespace in {r.namespace for r in records}:
        bound_cut = [
            by_key[(r.namespace, r.name)]
            for r in removals
            if r.namespace == namespace and r.reason != "retention"
        ]
        kept_removable = [
            r
            for r in records
            if r.namespace == namespace
            and (r.namespace, r.name) not in removed
            and r.removable_since is not None
        ]
        if bound_cut and kept_removable:
            newest_cut = max(r.removable_since for r in bound_cut)
            oldest_kept = min(r.removable_since for r in kept_removable)
            assert newest_cut <= oldest_kept, "no removable record is kept over an older one"
