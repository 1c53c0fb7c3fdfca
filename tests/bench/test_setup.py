"""The benchmark's set-up and removal against a fake API: sizes that scale, deletes that retry."""

from __future__ import annotations

import asyncio
from typing import Any

from bench import setup
from bench.kubeapi import ApiError


def test_namespaces_and_nodes_grow_past_the_tested_sizes() -> None:
    # Up to 5,000 pods as before (4 namespaces, 10 nodes); 20,000: 16 and 20.
    assert [setup.namespaces_for(n) for n in (20, 5000, 5001, 20000)] == [4, 4, 5, 16]
    assert [setup.nodes_for(n) for n in (20, 10000, 20000)] == [10, 10, 20]


class RecordsApi:
    """Records in two namespaces; the first collection delete is cut off by the API server."""

    def __init__(self) -> None:
        self.left = {"a": 3, "b": 2}
        self.deletes: list[str] = []

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        namespace = path.split("/namespaces/")[1].split("/")[0]
        if method == "GET":
            return {"items": [{}] * min(1, self.left[namespace])}
        self.deletes.append(namespace)
        if len(self.deletes) == 1:
            self.left[namespace] -= 1  # deleted some before the request timed out
            raise ApiError(504, "Timeout: request did not complete within 1m0s")
        self.left[namespace] = 0
        return {}


async def test_records_deleted_again_after_a_timed_out_request() -> None:
    api, said = RecordsApi(), list[str]()
    await setup.delete_records(api, ["a", "b"], expected=5, log=said.append)  # type: ignore[arg-type]
    assert api.left == {"a": 0, "b": 0}
    assert api.deletes == ["a", "b", "a"]
    assert len(said) == 1 and "asking again" in said[0]


class NamespacesApi:
    """Bench namespaces that take a few polls to go; the first pods delete times out."""

    def __init__(self) -> None:
        self.polls = {"bench-x-0": 2, "bench-x-1": 1}
        self.calls: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        self.calls.append((method, path))
        if path == "/api/v1/namespaces":
            items = [{"metadata": {"name": n, "labels": {}}} for n in self.polls]
            return {"items": items}
        if path == "/api/v1/nodes":
            return {"items": []}
        if method == "DELETE" and path == "/api/v1/namespaces/bench-x-0/pods":
            raise TimeoutError
        name = path.rsplit("/", 1)[1]
        if method == "GET" and name in self.polls:
            self.polls[name] -= 1
            return {"metadata": {"name": name}} if self.polls[name] >= 0 else {}
        return {}


async def test_teardown_removes_each_namespace_and_waits_until_gone(monkeypatch: Any) -> None:
    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    api, said = NamespacesApi(), list[str]()
    await setup.teardown(api, "x", log=said.append)  # type: ignore[arg-type]
    deleted = [path for method, path in api.calls if method == "DELETE"]
    assert "/api/v1/namespaces/bench-x-0" in deleted  # despite its pods' delete timing out
    assert "/api/v1/namespaces/bench-x-1" in deleted
    assert any("deleting the pods of namespace bench-x-0" in line for line in said)
    assert said[-1].startswith("2 namespaces gone")
