"""The operator with changes applied at run time, to measure them before making them.

    python -m bench.variants --variant pods-only -- <operator options>

Each variant is a small monkeypatch of one behaviour; the operator's own code is unchanged.
`python -m bench --variant ...` runs the operator this way.

- pods-only: no Events and no EndpointSlices streams, only pods and records: the figure to set
  beside kube-state-metrics, which watches pods only (the product needs the Events: probes,
  scheduling, pulls, hooks).
- kopf-pod-stream: pods through a Kopf `on.event` handler instead of the operator's own watch
  (Kopf hands over only the latest of the changes queued for one pod, so brief states such as an
  init container's failed first run can be missed); the records of pods gone while the operator
  was away are closed at start-up from a listing of the pods' identities. The operator had this
  as `--pod-stream kopf`; it is kept here to measure the two side by side.
"""

from __future__ import annotations

import argparse
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

    handlers.follow_pod_events = idle  # type: ignore[attr-defined]
    handlers.follow_endpoint_slices = idle  # type: ignore[attr-defined]


@variant("kopf-pod-stream")
def _kopf_pod_stream() -> None:
    import asyncio

    import kopf

    from podtrail.shell import handlers, kube, rawcall

    async def no_pod_watch(*_: Any, **__: Any) -> None:
        await asyncio.Event().wait()  # stands in for the stream, so the task list stays the same

    operator_registry = handlers.build_registry

    def build_registry(*args: Any, **kwargs: Any) -> kopf.OperatorRegistry:
        registry = operator_registry(*args, **kwargs)

        @kopf.on.event("", "v1", "pods", registry=registry)
        async def pod_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
            runtime: handlers.Runtime | None = getattr(memo, "runtime", None)
            if runtime is None:
                return  # standing by: the leader records this pod
            raw = dict(event["object"])
            await runtime.intake.pod(raw, deleted=event.get("type") == "DELETED")

        return registry

    async def pod_uids(api: kube.Kube, namespace: str | None) -> list[str]:
        """The uid of every pod that exists now, read as metadata only."""
        where = ("namespaces", namespace) if namespace is not None else ()
        path = rawcall.path_of("api", "v1", *where, "pods")
        # A benchmark patch may reach into the client.
        call = api._rawcall.lister(path, metadata_only=True)
        items = await kube._list_pages(call, policy=api._policy)
        return [str((item.get("metadata") or {}).get("uid", "")) for item in items]

    operator_catch_up = handlers._catch_up

    async def catch_up(runtime: handlers.Runtime) -> dict[str | None, str]:
        # Without the own pod watch, whose first listing closes them, close here the records of
        # pods gone while the operator was away.
        versions = await operator_catch_up(runtime)
        for namespace in handlers._watched_namespaces(runtime.settings):

            async def listing(where: str | None = namespace) -> list[str]:
                return await pod_uids(runtime.kube, where)

            runtime.intake.missing_after_listing(namespace, await runtime.kube.retried(listing))
        return versions

    handlers.follow_pods = no_pod_watch  # type: ignore[attr-defined]
    handlers.build_registry = build_registry
    handlers._catch_up = catch_up


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
    main()
