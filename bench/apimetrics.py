"""API requests by verb and resource, from the API server's own counters (/metrics)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from bench.kubeapi import Kube

_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


_DURATION = re.compile(
    r"^apiserver_request_duration_seconds_(?P<what>sum|count)\{(?P<labels>[^}]*)\} (?P<value>\S+)$"
)
_BODY = re.compile(
    r"^apiserver_request_body_size_bytes_(?P<what>sum|count)\{(?P<labels>[^}]*)\} (?P<value>\S+)$"
)


def _samples(text: str, pattern: re.Pattern[str]) -> Iterator[tuple[str, re.Match[str]]]:
    """The lines of /metrics that match `pattern`, each keyed "VERB resource[/subresource]"."""
    for line in text.splitlines():
        found = pattern.match(line)
        if found is None:
            continue
        labels = dict(_LABEL.findall(found.group("labels")))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        yield f"{labels.get('verb', '?')} {resource}", found


async def request_counts(kube: Kube) -> Counter[str]:
    """Every request the API server has served, keyed "VERB resource[/subresource]"."""
    return counts_in(await kube.text("/metrics"))


async def request_seconds(kube: Kube) -> Counter[str]:
    """Total seconds and count of requests served, keyed "VERB resource[/sub] sum|count"."""
    return _sums_in(await kube.text("/metrics"), _DURATION)


def counts_in(text: str) -> Counter[str]:
    """The requests served, keyed "VERB resource[/subresource]", from a scrape of /metrics."""
    counts: Counter[str] = Counter()
    for key, found in _samples(text, _LINE):
        counts[key] += int(float(found.group("value")))
    return counts


def seconds_in(text: str) -> Counter[str]:
    """Seconds and count of the requests served, keyed "VERB resource[/sub] sum|count"."""
    return _sums_in(text, _DURATION)


def body_bytes_in(text: str) -> Counter[str]:
    """Request body bytes and count, keyed "verb resource sum|count" (apiserver 1.x, alpha).

    Its verbs are create, update, patch...; it has no subresource label: a status PUT counts
    as an update of its resource.
    """
    return _sums_in(text, _BODY)


def _sums_in(text: str, pattern: re.Pattern[str]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for key, found in _samples(text, pattern):
        totals[f"{key} {found.group('what')}"] += float(found.group("value"))  # type: ignore[assignment]
    return totals


def mean_latency(before: Counter[str], after: Counter[str], *keys: str) -> dict[str, float | None]:
    """Mean server-side latency (s) of each "VERB resource" in between."""
    out: dict[str, float | None] = {}
    for key in keys:
        count = after[f"{key} count"] - before.get(f"{key} count", 0)
        total = after[f"{key} sum"] - before.get(f"{key} sum", 0)
        out[key] = total / count if count else None
    return out


def delta(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    """What was served in between (only non-zero)."""
    return {
        key: after[key] - before.get(key, 0)
        for key in sorted(after)
        if after[key] - before.get(key, 0) > 0
    }


RECORD_RESOURCE = "podlifecyclerecords"


def record_requests(counts: dict[str, int]) -> dict[str, int]:
    """The requests on records: the operator's (the harness only lists and watches them)."""
    return {key: value for key, value in counts.items() if RECORD_RESOURCE in key}


RECORD_WRITE_VERBS = ("create", "update", "patch")


def record_body_figures(before: Counter[str], after: Counter[str], played: int) -> dict[str, Any]:
    """The bytes of the record writes the API server received in between (its body histogram).

    The operator writes a record's status with a PUT of the whole status (an "update"); it only
    creates records and patches their labels otherwise. None where the metric is missing.
    """
    sent = {
        verb: {
            "bytes": after[f"{verb} {RECORD_RESOURCE} sum"]
            - before.get(f"{verb} {RECORD_RESOURCE} sum", 0),
            "requests": after[f"{verb} {RECORD_RESOURCE} count"]
            - before.get(f"{verb} {RECORD_RESOURCE} count", 0),
        }
        for verb in RECORD_WRITE_VERBS
    }
    known = any(key.endswith(" sum") for key in after)  # the API server has the metric at all
    updates = sent["update"]
    return {
        "record_body_bytes": sent if known else None,
        "record_status_bytes_per_transition": updates["bytes"] / max(1, played) if known else None,
        "record_status_put_mean_bytes": (
            updates["bytes"] / updates["requests"] if updates["requests"] else None
        ),
    }
