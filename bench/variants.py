"""The operator with proposed changes applied at run time, to measure them before making them.

    python -m bench.variants --variant no-diffbase,pending-count -- <operator options>

Each variant is a small monkeypatch of one behaviour that the benchmark showed to cost; the
operator's own code is unchanged. `python -m bench --variant ...` runs the operator this way.

- no-diffbase: Kopf builds a "diff base" (a deep copy of every object, minus a few fields) for
  every watch event, for on.create/on.update handlers; podtrail has none (on.event only), so
  a storage that builds nothing is enough.
- pending-count: the writer's "records pending" gauge counts pending records incrementally
  instead of scanning every record on each observation.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

VARIANTS: dict[str, Callable[[], None]] = {}


def variant(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Register a variant under a name."""

    def register(patch: Callable[[], None]) -> Callable[[], None]:
        VARIANTS[name] = patch
        return patch

    return register


@variant("no-diffbase")
def _no_diffbase() -> None:
    import kopf

    from podtrail.shell import handlers

    class NoDiffBase(kopf.AnnotationsDiffBaseStorage):  # type: ignore[misc]
        def build(self, *, body: Any, extra_fields: Any = None) -> Any:
            return None

        def fetch(self, *, body: Any) -> Any:
            return None

        def store(self, *, body: Any, patch: Any, essence: Any) -> None:
            return None

    original = handlers._tune_kopf

    def tune(settings: Any) -> None:
        original(settings)
        settings.persistence.diffbase_storage = NoDiffBase(
            prefix="podtrail.io", key="last-handled-configuration"
        )

    handlers._tune_kopf = tune


@variant("pending-count")
def _pending_count() -> None:
    from podtrail.shell import persist

    def pending_count(self: Any) -> int:
        # Records with facts not written are exactly those with a write scheduled or in
        # flight; both sets are small next to all records.
        due = {key for _, _, key in self._queue}
        return len(due | set(self._in_flight))

    persist.RecordWriter.pending_count = pending_count


def main() -> None:
    """Apply the variants asked for, then run the operator with the remaining options."""
    parser = argparse.ArgumentParser(prog="python -m bench.variants", description=__doc__)
    parser.add_argument("--variant", default="", help="comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    for name in filter(None, args.variant.split(",")):
        VARIANTS[name]()
    from podtrail.__main__ import main as operator_main

    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    operator_main(rest)


if __name__ == "__main__":
    sys.exit(main())
