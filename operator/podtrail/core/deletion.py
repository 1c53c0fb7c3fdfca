"""Which deletion request a record keeps when the pod's deletion metadata changes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from .model import Deletion
from .observe import PodSeen


def next_deletion(current: Deletion | None, pod: PodSeen) -> Deletion | None:
    """The deletion request to keep after seeing `pod`.

    Once every container of a deleted pod has stopped, the kubelet deletes the pod again with
    grace 0 to remove it from the API: that final delete rewrites deletionTimestamp and
    deletionGracePeriodSeconds, but it is not a new request, so the first request stands. A
    shorter grace period while containers still run (a force delete after a graceful one) is a
    new request and replaces it. A first sight that is already that final removal is marked.
    """
    if pod.deletion_timestamp is None:
        return current
    seen = Deletion(pod.deletion_timestamp, pod.deletion_grace_seconds or 0)
    final_removal = seen.grace_seconds == 0 and not any_running(c.state for c in pod.containers)
    if current is None:
        finished = pod.phase in ("Succeeded", "Failed") and pod.node_name is not None
        return replace(seen, at_removal=final_removal and finished)
    if replace(seen, at_removal=current.at_removal) == current:
        return current
    return current if final_removal else seen


def any_running(states: Iterable[str | None]) -> bool:
    """Whether any container still runs: a grace-0 deletion then kills it (a force deletion).

    The API server deletes a pod that has finished, or was never scheduled, with grace 0 as a
    matter of course: that kills nothing and is no force deletion.
    """
    return any(state == "running" for state in states)
