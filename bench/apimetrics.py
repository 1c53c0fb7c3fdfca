"""API requests by verb and resource, from the API server's own counters (/metrics)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

from bench.kubeapi import Kube

_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


_DURATION = re.compile(
    r"^apiserver_request_duration_seconds_(?P<what>sum|count)\{(?P<labels>[^}]*)\} (?P<value>\S+)$"
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
    counts: Counter[str] = Counter()
    for key, found in _samples(await kube.text("/metrics"), _LINE):
        counts[key] += int(float(found.group("value")))
    return counts


async def request_seconds(kube: Kube) -> Counter[str]:
    """Total seconds and count of requests served, keyed "VERB resource[/sub] sum|count"."""
    totals: Counter[str] = Counter()
    for key, found in _samples(await kube.text("/metrics"), _DURATION):
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
