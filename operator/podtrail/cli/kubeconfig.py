"""Which kubeconfig, context and namespace the plugin uses: kubectl's rules.

`--kubeconfig`, else every file of $KUBECONFIG (the first file naming a current-context
decides it; the first definition of a context wins), else ~/.kube/config. `--context`, else
the current context. The namespace is `-n`, else the context's, else "default".
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class KubeconfigError(Exception):
    """No usable kubeconfig or context."""


@dataclass(frozen=True, slots=True)
class Choice:
    """The files to load, the context in them and its namespace."""

    files: tuple[str, ...]
    context: str
    namespace: str


def config_files(explicit: str | None, environ: Mapping[str, str], home: str) -> list[str]:
    """The kubeconfig files kubectl would read, in order (those that exist)."""
    if explicit:
        return [os.path.expanduser(explicit)]
    listed = environ.get("KUBECONFIG", "")
    candidates = [p for p in listed.split(os.pathsep) if p] or [
        os.path.join(home, ".kube", "config")
    ]
    return [os.path.expanduser(p) for p in candidates if os.path.isfile(os.path.expanduser(p))]


def choose(documents: Sequence[tuple[str, Mapping[str, Any]]], wanted: str | None) -> Choice:
    """The context to use and its namespace, from (path, parsed kubeconfig) pairs in order.

    Raises:
        KubeconfigError: no current context and none asked for, or the context is not defined.
    """
    files = tuple(path for path, _ in documents)
    current = wanted or next(
        (str(doc["current-context"]) for _, doc in documents if doc.get("current-context")), None
    )
    if not current:
        raise KubeconfigError(
            f"no current context in {', '.join(files) or 'the kubeconfig'}: use --context"
        )
    for _, doc in documents:
        for item in doc.get("contexts") or []:
            if isinstance(item, Mapping) and item.get("name") == current:
                details = item.get("context")
                namespace = details.get("namespace") if isinstance(details, Mapping) else None
                return Choice(files, current, str(namespace or "default"))
    raise KubeconfigError(f"context {current!r} is not defined in {', '.join(files)}")
