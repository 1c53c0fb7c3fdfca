"""Scenarios played at once: what the e2e and fault suites share to run them.

Real-cluster scenarios mostly wait on Kubernetes, so each test names its scenario with a marker
(``plays(fn)``); at the start of the session every selected scenario is started as a task (each in
its own namespaces) and each test awaits its own. Scenarios marked ``exclusive`` (they restart
the operator, stop the API server) run one at a time after all the others have finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import pytest

from tests.support.kube import Kube

H = TypeVar("H")


def plays_marker(
    marker: str, scenario: Callable[..., Any], exclusive: bool
) -> pytest.MarkDecorator:
    """The marker that names a test's scenario."""
    # with_args: a lone callable given to a mark would be taken as the function to decorate.
    return getattr(pytest.mark, marker).with_args(scenario, exclusive=exclusive)


class ScenarioHarness:
    """What every scenario gets: the API client and namespaces of its own, deleted at the end
    (unless the suite's keep variable is 1)."""

    def __init__(self, kube: Kube, *, prefix: str, keep_env: str) -> None:
        self.kube = kube
        self.prefix = prefix
        self.keep_env = keep_env
        self.namespaces: list[str] = []

    async def namespace(
        self,
        prefix: str,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> str:
        """A fresh namespace, deleted when the suite ends."""
        name = await self.kube.create_namespace(f"{self.prefix}-{prefix}", labels, annotations)
        self.namespaces.append(name)
        return name

    async def clean_up(self) -> None:
        """Delete the scenarios' namespaces (their pods and records go with them)."""
        if os.environ.get(self.keep_env) == "1":
            return
        for name in self.namespaces:
            with contextlib.suppress(Exception):
                await self.kube.delete_namespace(name)


class Scenarios(Generic[H]):
    """The selected scenarios of a session, each a task; the exclusive ones after the others."""

    def __init__(self, harness: H, items: Iterable[pytest.Item], marker: str) -> None:
        self.harness = harness
        shared: dict[Callable[[H], Awaitable[Any]], asyncio.Task[Any]] = {}
        exclusive: list[Callable[[H], Awaitable[Any]]] = []
        for item in items:
            if any(m.name == "skip" for m in item.iter_markers()):
                continue
            for mark in item.iter_markers(marker):
                fn = mark.args[0]
                if mark.kwargs.get("exclusive"):
                    if fn not in exclusive:
                        exclusive.append(fn)
                elif fn not in shared:
                    shared[fn] = asyncio.create_task(fn(harness), name=fn.__name__)

        async def after_the_others(fn: Callable[[H], Awaitable[Any]]) -> Any:
            await asyncio.gather(*shared.values(), return_exceptions=True)
            for earlier in exclusive[: exclusive.index(fn)]:
                await asyncio.gather(self.tasks[earlier], return_exceptions=True)
            return await fn(harness)

        self.tasks = dict(shared)
        for fn in exclusive:
            self.tasks[fn] = asyncio.create_task(after_the_others(fn), name=fn.__name__)

    async def cancel(self) -> None:
        """Cancel whatever still runs and wait for it."""
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


def scenario_of(request: pytest.FixtureRequest, marker: str) -> Callable[..., Any]:
    """The scenario the requesting test names with its marker."""
    mark = request.node.get_closest_marker(marker)
    assert mark is not None, f"the test names its scenario with @plays(fn) ({marker})"
    fn: Callable[..., Any] = mark.args[0]
    return fn
