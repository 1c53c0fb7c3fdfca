"""Which pods get a record: the chosen namespaces, opt-out annotations, the opt-in mode."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TRACK_ANNOTATION = "podtrail.io/track"


def _annotation(obj: Mapping[str, Any]) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(TRACK_ANNOTATION) if isinstance(annotations, Mapping) else None
    return value.strip().lower() if isinstance(value, str) else None


class Scope:
    """Decides whether a pod is tracked, knowing the namespaces' annotations."""

    def __init__(self, *, namespaces: tuple[str, ...], opt_in: bool) -> None:
        self._namespaces = frozenset(namespaces)
        self._opt_in = opt_in
        self._namespace_choice: dict[str, str | None] = {}

    def learn_namespace(self, namespace: Mapping[str, Any], *, deleted: bool = False) -> None:
        """Remember a namespace's `podtrail.io/track` annotation."""
        name = (namespace.get("metadata") or {}).get("name")
        if not isinstance(name, str):
            return
        if deleted:
            self._namespace_choice.pop(name, None)
        else:
            self._namespace_choice[name] = _annotation(namespace)

    def knows(self, namespace: str) -> bool:
        """Whether the namespace's annotations have been seen."""
        return namespace in self._namespace_choice

    def watches(self, namespace: str) -> bool:
        """Whether the namespace is among those the operator was told to watch."""
        return not self._namespaces or namespace in self._namespaces

    def tracks(self, pod: Mapping[str, Any], *, has_record: bool = False) -> bool:
        """Whether this pod should have a record.

        An opt-out (`"false"`) on the pod, or on its namespace without an opt-in on the pod, always
        wins. In opt-in mode a pod needs `"true"` on itself or its namespace, or a record that a
        user created for it.
        """
        namespace = (pod.get("metadata") or {}).get("namespace")
        if not isinstance(namespace, str) or not self.watches(namespace):
            return False
        on_pod = _annotation(pod)
        on_namespace = self._namespace_choice.get(namespace)
        if on_pod == "false" or (on_namespace == "false" and on_pod != "true"):
            return False
        if not self._opt_in:
            return True
        return on_pod == "true" or on_namespace == "true" or has_record
