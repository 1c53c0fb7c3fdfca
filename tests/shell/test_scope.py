from typing import Any

import pytest

from podtrail.shell.scope import Scope


def obj(namespace: str | None, name: str, track: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if track is not None:
        meta["annotations"] = {"podtrail.io/track": track}
    return {"metadata": meta}


def scope_with(namespace_track: str | None, *, opt_in: bool, only: tuple[str, ...] = ()) -> Scope:
    scope = Scope(namespaces=only, opt_in=opt_in)
    scope.learn_namespace(obj(None, "ns", namespace_track))
    return scope


@pytest.mark.parametrize(
    ("opt_in", "on_namespace", "on_pod", "has_record", "tracked"),
    [
        (False, None, None, False, True),
        (False, None, "false", False, False),
        (False, "false", None, False, False),
        (False, "false", "true", False, True),
        (False, None, "False", False, False),
        (True, None, None, False, False),
        (True, None, None, True, True),
        (True, "true", None, False, True),
        (True, None, "true", False, True),
        (True, "true", "false", False, False),
        (True, "false", "true", False, True),
        (True, None, "false", True, False),
    ],
)
def test_tracking_rules(
    opt_in: bool, on_namespace: str | None, on_pod: str | None, has_record: bool, tracked: bool
) -> None:
    scope = scope_with(on_namespace, opt_in=opt_in)
    assert scope.tracks(obj("ns", "p", on_pod), has_record=has_record) is tracked


def test_only_the_chosen_namespaces() -> None:
    scope = Scope(namespaces=("a", "b"), opt_in=False)
    assert scope.tracks(obj("a", "p"))
    assert not scope.tracks(obj("c", "p"))
    assert not scope.tracks(obj(None, "p"))


def test_a_deleted_namespace_forgets_its_choice() -> None:
    scope = scope_with("false", opt_in=False)
    assert scope.knows("ns")
    scope.learn_namespace(obj(None, "ns", "false"), deleted=True)
    assert not scope.knows("ns")
    assert scope.tracks(obj("ns", "p"))


def test_hostile_annotations_do_not_crash() -> None:
    scope = Scope(namespaces=(), opt_in=False)
    assert scope.tracks({"metadata": {"namespace": "x", "annotations": ["not", "a", "map"]}})
    assert scope.tracks({"metadata": {"namespace": "x", "annotations": {"podtrail.io/track": 7}}})
