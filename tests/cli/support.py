"""Recorded records and golden output files for the plugin's tests.

The records in records/ are real ones, saved from the project's local clusters with `kubectl
get plr -o json`. A golden file holds the output a formatter gave for them when it was last
reviewed: run with PODTRAIL_UPDATE_GOLDEN=1 to write them anew, then read the diff before
committing it.
"""

from __future__ import annotations

import copy
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RECORDS = HERE / "records"
GOLDEN = HERE / "golden"

# Records of two formats: "earlier" as the operator wrote them before the format changed
# (durations without units, entry keys and the Event ledger in the entries and seenEvents),
# "current" as it writes them now (durations in seconds, bookkeeping in status.tracking,
# podtrail's own labels, causal order among equal times). Saved from the project's local
# clusters with `kubectl get plr -o json`.
FORMATS = ("earlier", "current")

# The moment each set's ls goldens are rendered at: minutes after the recorded pods' lives.
NOW = {
    "earlier": datetime(2026, 11, 28, 20, 10, 0, tzinfo=UTC),
    "current": datetime(2026, 11, 28, 20, 45, 0, tzinfo=UTC),
}

Raw = dict[str, Any]


def record(name: str, fmt: str = "earlier") -> Raw:
    """A recorded record (or List: see `records`)."""
    data: Raw = json.loads((RECORDS / fmt / f"{name}.json").read_text())
    return data


def records(name: str, fmt: str = "earlier") -> list[Raw]:
    """The items of a recorded List, or the one recorded record."""
    data = record(name, fmt)
    return list(data["items"]) if data.get("kind") == "List" else [data]


def every_record(fmt: str = "earlier") -> list[Raw]:
    """All recorded records of one format, as one namespace's listing would return them."""
    found: list[Raw] = []
    for path in sorted((RECORDS / fmt).glob("*.json")):
        found.extend(records(path.stem, fmt))
    return found


def check_golden(name: str, text: str) -> None:
    """Compare with golden/<name> (or write it, with PODTRAIL_UPDATE_GOLDEN=1)."""
    path = GOLDEN / name
    if os.environ.get("PODTRAIL_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"no golden file {path}: run with PODTRAIL_UPDATE_GOLDEN=1"
    expected = path.read_text()
    assert text == expected, f"output differs from {path} (PODTRAIL_UPDATE_GOLDEN=1 rewrites it)"


_DURATION_NAMES = {
    "timeToSchedule": "timeToScheduleSeconds",
    "init": "initSeconds",
    "timeToReady": "timeToReadySeconds",
    "termination": "terminationSeconds",
}


def new_format(original: Raw) -> Raw:
    """The record as a newer operator may write it, with nothing but labels to tell the owner.

    Durations carry their unit (initSeconds); owner (the workload: a ReplicaSet's Deployment),
    node and outcome are only labels, no longer status fields; the timeline is kept newest
    first, a count of one is left out, and the bookkeeping (entry keys, the Event ledger) moved
    to status.tracking.
    """
    item = copy.deepcopy(original)
    status = item.get("status") or {}
    labels = item["metadata"].setdefault("labels", {})
    owner = status.pop("owner", None)
    if owner:  # the workload: a Deployment's ReplicaSet stands for the Deployment
        kind, name = (
            ("Deployment", owner["deployment"])
            if owner.get("deployment")
            else (
                owner["kind"],
                owner["name"],
            )
        )
        labels["podtrail.io/owner-kind"], labels["podtrail.io/owner-name"] = kind, name
    if "nodeName" in status:
        labels["podtrail.io/node"] = status.pop("nodeName")
    if "outcome" in status:
        labels["podtrail.io/outcome"] = status.pop("outcome")
    status["durations"] = {
        _DURATION_NAMES.get(key, key): value
        for key, value in (status.get("durations") or {}).items()
    }
    status["tracking"] = {
        "events": status.pop("seenEvents", []),
        "timelineKeys": [entry.get("key") for entry in status.get("timeline") or []],
    }
    timeline = [
        {k: v for k, v in entry.items() if k != "key" and (k, v) != ("count", 1)}
        for entry in status.get("timeline") or []
    ]
    status["timeline"] = list(reversed(timeline))
    return item
