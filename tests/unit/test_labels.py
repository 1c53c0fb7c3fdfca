"""The record's labels: the operator's own, the pod's, and a user's, which are never changed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podtrail import core
from podtrail.core.labels import (
    MAX_MARKS,
    NODE,
    OUTCOME,
    OWNER_KIND,
    OWNER_NAME,
    clean_marks,
    mark,
    merge_labels,
    operator_labels,
    valid_value,
    workload,
)

from .builders import at, pod, running, running_conditions, terminated
from .scenarios import SCENARIOS, play

LIMITS = core.Limits()


def record_of(**fields: object) -> core.Record:
    seen = core.observe_pod(pod(**fields))  # type: ignore[arg-type]
    return core.step(core.Record(), seen, now=at(1), limits=LIMITS).record


# --- the operator's own labels --------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "template_hash", "expected"),
    [
        (("ReplicaSet", "web-7d9f8b6c5d"), "7d9f8b6c5d", ("Deployment", "web")),
        (("ReplicaSet", "web-7d9f8b6c5d"), "0000000000", ("ReplicaSet", "web-7d9f8b6c5d")),
        (("ReplicaSet", "lonely"), "7d9f8b6c5d", ("ReplicaSet", "lonely")),
        (("StatefulSet", "db"), "", ("StatefulSet", "db")),
        (("DaemonSet", "agent"), "", ("DaemonSet", "agent")),
        (("Job", "backup-29384"), "", ("Job", "backup-29384")),
        (("Node", "worker-1"), "", ("Node", "worker-1")),
        (None, "", None),
    ],
)
def test_the_workload_of_a_pod(
    owner: tuple[str, str] | None, template_hash: str, expected: tuple[str, str] | None
) -> None:
    record = record_of(owner=owner, template_hash=template_hash)
    assert workload(record) == expected
    own = operator_labels(record, LIMITS)
    if expected is None:
        assert OWNER_KIND not in own and OWNER_NAME not in own
    else:
        assert (own[OWNER_KIND], own[OWNER_NAME]) == expected


def test_node_once_scheduled_and_outcome_once_ended() -> None:
    assert NODE not in operator_labels(record_of(node=None), LIMITS)
    running_record = record_of(
        phase="Running", statuses=[running()], conditions=running_conditions()
    )
    own = operator_labels(running_record, LIMITS)
    assert own[NODE] == "worker-1" and OUTCOME not in own
    done = record_of(phase="Succeeded", statuses=[terminated(exit_code=0)])
    assert operator_labels(done, LIMITS)[OUTCOME] == "Succeeded"
    for name, steps in SCENARIOS.items():
        status, _ = play(steps())
        record = core.load_record(status)
        assert operator_labels(record, LIMITS).get(OUTCOME) == status.get("outcome"), name


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("worker-1", True),
        ("ip-10-0-0-1.ec2.internal", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("-leading", False),
        ("trailing.", False),
        ("with space", False),
        ("under_score", True),
        ("", True),
        ("é", False),
    ],
)
def test_label_values(value: str, valid: bool) -> None:
    assert valid_value(value) is valid


def test_a_value_that_is_no_label_value_is_left_out() -> None:
    long_node = "node-" + "x" * 70
    own = operator_labels(record_of(node=long_node), LIMITS)
    assert NODE not in own
    own = operator_labels(record_of(owner=("Job", "j" * 64)), LIMITS)
    assert OWNER_NAME not in own and own[OWNER_KIND] == "Job"


# --- merging --------------------------------------------------------------------------------

OWN = {OWNER_KIND: "Deployment", OWNER_NAME: "web", NODE: "worker-1"}
POD_LABELS = {"app": "web", "pod-template-hash": "7d9f8b6c5d"}


def marks_of(labels: dict[str, str]) -> tuple[str, ...]:
    return tuple(mark(k, v) for k, v in labels.items())


def test_a_new_record_gets_the_pods_labels_and_the_operators() -> None:
    labels, marks = merge_labels({}, None, POD_LABELS, OWN)
    assert labels == OWN | POD_LABELS
    assert set(marks) == set(marks_of(labels))


def test_a_users_label_is_kept_and_never_overwritten() -> None:
    stored = OWN | POD_LABELS
    marks = marks_of(stored)
    with_user = stored | {"team": "payments", NODE: "my-own-idea"}  # the user changed ours
    outcome = {**OWN, OUTCOME: "Succeeded", NODE: "worker-2"}
    labels, new_marks = merge_labels(with_user, marks, POD_LABELS | {"app": "web2"}, outcome)
    assert labels["team"] == "payments"
    assert labels[NODE] == "my-own-idea", "the user's value stays, the operator's is left out"
    assert labels[OUTCOME] == "Succeeded" and labels["app"] == "web2"
    assert mark(NODE, "my-own-idea") not in new_marks and mark(NODE, "worker-2") not in new_marks
    again, _ = merge_labels(labels, new_marks, POD_LABELS | {"app": "web2"}, outcome)
    assert again == labels


def test_a_label_the_pod_dropped_goes_and_a_changed_one_follows() -> None:
    stored = OWN | POD_LABELS | {"version": "1"}
    labels, _ = merge_labels(stored, marks_of(stored), POD_LABELS | {"version": "2"}, OWN)
    assert labels["version"] == "2"
    labels, _ = merge_labels(stored, marks_of(stored), POD_LABELS, OWN)
    assert "version" not in labels


def test_without_the_pods_labels_the_operators_copies_stay() -> None:
    stored = OWN | POD_LABELS | {"team": "payments"}
    marks = marks_of(OWN | POD_LABELS)
    labels, new_marks = merge_labels(stored, marks, None, OWN | {OUTCOME: "Deleted"})
    assert labels == stored | {OUTCOME: "Deleted"}
    assert set(new_marks) == set(marks_of(OWN | POD_LABELS | {OUTCOME: "Deleted"}))


def test_a_record_written_before_marks_adopts_only_labels_with_the_operators_values() -> None:
    stored = POD_LABELS | {"team": "payments", NODE: "elsewhere"}
    labels, marks = merge_labels(stored, None, POD_LABELS, OWN)
    assert labels["team"] == "payments" and labels[NODE] == "elsewhere"
    assert labels[OWNER_KIND] == "Deployment"
    assert set(marks) == set(marks_of(POD_LABELS | {OWNER_KIND: "Deployment", OWNER_NAME: "web"}))


def test_a_pods_label_cannot_pass_for_the_operators() -> None:
    labels, _ = merge_labels({}, None, {OUTCOME: "Succeeded", "app": "x"}, {NODE: "n"})
    assert OUTCOME not in labels and labels == {"app": "x", NODE: "n"}


def test_marks_are_bounded_and_the_operators_labels_come_first() -> None:
    many = {f"label-{i}": "v" for i in range(200)}
    labels, marks = merge_labels({}, None, many, OWN)
    assert len(marks) == MAX_MARKS
    assert set(OWN.items()) <= set(labels.items())
    assert len(labels) == MAX_MARKS


def test_stored_marks_are_read_defensively() -> None:
    assert clean_marks(None) is None
    assert clean_marks("abc") is None
    assert clean_marks(["0123456789ab", "nothex!", 5, "0123456789ab"]) == ("0123456789ab",)
    assert clean_marks([]) == ()


# --- the property ----------------------------------------------------------------------------

KEYS = st.sampled_from(["app", "team", "tier", NODE, OUTCOME, OWNER_KIND, OWNER_NAME, "v"])
VALUES = st.sampled_from(["a", "b", "c"])
LABELS = st.dictionaries(KEYS, VALUES, max_size=6)


@settings(max_examples=300, deadline=None)
@given(ours=LABELS, users=LABELS, pod_labels=st.none() | LABELS, own=LABELS, legacy=st.booleans())
def test_users_labels_are_kept_and_merging_again_changes_nothing(
    ours: dict[str, str],
    users: dict[str, str],
    pod_labels: dict[str, str] | None,
    own: dict[str, str],
    legacy: bool,
) -> None:
    marks = None if legacy else marks_of(ours)
    stored = ours | users  # the user's win where both have a key
    user_owned = {k: v for k, v in stored.items() if marks is not None and mark(k, v) not in marks}
    labels, new_marks = merge_labels(stored, marks, pod_labels, own)
    for key, value in user_owned.items():
        assert labels[key] == value, "a user's label is never changed"
    for key, value in labels.items():
        assert key in stored or mark(key, value) in new_marks, "every label written is marked"
    again, marks_again = merge_labels(labels, new_marks, pod_labels, own)
    assert again == labels
    if pod_labels is not None:
        assert set(marks_again) == set(new_marks)
