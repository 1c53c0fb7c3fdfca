"""The operator with changes applied at run time, to measure them before making them.

    python -m bench.variants --variant pods-only -- <operator options>

Each variant is a small monkeypatch of one behaviour; the operator's own code is unchanged.
`python -m bench --variant ...` runs the operator this way.

- pods-only: no Events and no EndpointSlices streams, only pods and records: the figure to set
  beside kube-state-metrics, which watches pods only (the product needs the Events: probes,
  scheduling, pulls, hooks).
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


@variant("pods-only")
def _pods_only() -> None:
    import asyncio

    from podtrail.shell import handlers

    async def idle(*_: Any, **__: Any) -> None:
        await asyncio.Event().wait()  # stands in for the stream, so the task list stays the same

    handlers.follow_pod_events = idle  # type: ignore[assignment]
    handlers.follow_endpoint_slices = idle  # type: ignore[assignment]


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
