"""The labels the operator puts on a record, merged with the pod's and with a user's own.

A record carries the pod's labels and four of its own, so records can be selected by workload,
node and outcome (``kubectl get plr -l podtrail.io/outcome=OOMKilled``):

- ``podtrail.io/owner-kind``, ``podtrail.io/owner-name``: the pod's workload: a ReplicaSet
  named ``<deployment>-<pod-template-hash>`` stands for its Deployment; otherwise the pod's
  controller as it is (Job, StatefulSet, DaemonSet, a ReplicaSet of its own, Node for a static
  pod's mirror); absent for a pod without a controller;
- ``podtrail.io/node``: the node the pod was scheduled to;
- ``podtrail.io/outcome``: how the pod's life ended, once it has.

A value that is not a valid label value (longer than 63 characters, or other characters than
letters, digits, ``-``, ``_`` and ``.``) is left out: the status keeps the whole value.

A label a user put on the record is never changed: the operator keeps, in the record's status,
a mark (a short digest) of every label it wrote, key and value. A label is the operator's while
it still has a value the operator gave it; a label the user added, or whose value the user
changed, is the user's, and a label the operator would write under the same key is left out.
A record that no version keeping these marks has written yet (one an earlier version, or a user,
created) takes as the operator's every label whose value is the one the operator would write.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from .conclude import analyse_record
from .limits import Limits
from .model import Record

PREFIX = "podtrail.io/"
OWNER_KIND = PREFIX + "owner-kind"
OWNER_NAME = PREFIX + "owner-name"
NODE = PREFIX + "node"
OUTCOME = PREFIX + "outcome"
OWN_KEYS = (OWNER_KIND, OWNER_NAME, NODE, OUTCOME)
MARK_LENGTH = 12
MAX_MARKS = 64
"""Labels the operator keeps marks of; a pod's labels beyond these are not copied."""
_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_MARK = re.compile(f"[0-9a-f]{{{MARK_LENGTH}}}")


def valid_value(value: str) -> bool:
    """Whether a string is a valid label value (63 characters at most, the label charset)."""
    return _VALUE.fullmatch(value) is not None


def workload(record: Record) -> tuple[str, str] | None:
    """The pod's workload (kind, name): a ReplicaSet's Deployment, else its controller."""
    owner = record.owner
    if owner is None:
        return None
    if owner.deployment:
        return "Deployment", owner.deployment
    return owner.kind, owner.name


def operator_labels(record: Record, limits: Limits) -> dict[str, str]:
    """The labels the operator sets from what the record knows (invalid values left out)."""
    wanted: dict[str, str | None] = {NODE: record.node_name}
    owner = workload(record)
    if owner is not None:
        wanted[OWNER_KIND], wanted[OWNER_NAME] = owner
    if record.removal is not None or record.phase in ("Succeeded", "Failed") or record.deletion:
        outcome = analyse_record(record, limits).outcome
        wanted[OUTCOME] = str(outcome) if outcome is not None else None
    return {key: value for key, value in wanted.items() if value and valid_value(value)}


def mark(key: str, value: str) -> str:
    """The mark of one label as the operator wrote it."""
    digest = hashlib.sha256(f"{key}={value}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:MARK_LENGTH]


def clean_marks(marks: object) -> tuple[str, ...] | None:
    """Marks as stored (a list of hex digests), or None when there are none stored."""
    if not isinstance(marks, list):
        return None
    kept = [m for m in marks[:MAX_MARKS] if isinstance(m, str) and _MARK.fullmatch(m)]
    return tuple(dict.fromkeys(kept))


def merge_labels(
    stored: Mapping[str, str],
    marks: tuple[str, ...] | None,
    pod: Mapping[str, str] | None,
    own: Mapping[str, str],
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The record's labels and the operator's marks after merging.

    Args:
        stored: The record's labels as the API has them.
        marks: The marks of the labels the operator wrote (None: never kept, see above).
        pod: The pod's labels, or None when not known (the operator's pod labels then stay).
        own: The operator's own labels (``operator_labels``); they win over the pod's and
            come first within the bound on marks.

    Returns:
        The labels to have (the user's kept as they are) and the marks of the operator's.
    """
    held = set(marks or ())
    if pod is None:  # keep the pod's labels as written: those the operator wrote are its own
        pod = {k: v for k, v in stored.items() if mark(k, v) in held and k not in OWN_KEYS}
    wanted = {**own, **{k: v for k, v in pod.items() if k not in OWN_KEYS}}
    if marks is None:  # never kept: a label with the value the operator would write is its own
        held = {mark(k, v) for k, v in stored.items() if wanted.get(k) == v}
    users = {k: v for k, v in stored.items() if mark(k, v) not in held}
    labels = dict(users)
    written: list[str] = []
    for key, value in wanted.items():
        if key in users or len(written) >= MAX_MARKS:
            continue
        labels[key] = value
        written.append(mark(key, value))
    return labels, tuple(written)
