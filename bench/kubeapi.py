"""A small asyncio client for the API server, used by the harness itself (not measured).

Plain aiohttp over the kubeconfig's credentials, bodies as dicts: the harness plays thousands of
writes a second and watches pods and records, so it keeps its own overhead low.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config

Raw = dict[str, Any]


class ApiError(Exception):
    """A request the API server refused."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class Kube:
    """REST calls as dicts, plus list-then-watch streams."""

    def __init__(self, session: aiohttp.ClientSession, host: str) -> None:
        self._session = session
        self.host = host.rstrip("/")

    @classmethod
    async def connect(cls, kubeconfig: str, *, connections: int = 64) -> Kube:
        """Log in with the kubeconfig's client certificate (or token)."""
        configuration = client.Configuration()
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        headers = {"Accept": "application/json"}
        token = (configuration.api_key or {}).get("authorization")
        if token:
            headers["Authorization"] = token
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=connections),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return cls(session, configuration.host)

    async def close(self) -> None:
        """Release the connections."""
        await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (),
        timeout: float = 60.0,
    ) -> Raw:
        """One call; raises ApiError unless 2xx (or a status in `ok`, which returns {})."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else None
        async with self._session.request(
            method,
            self.host + path,
            params=params,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.text()
            if response.status >= 300:
                if response.status in ok:
                    return {}
                raise ApiError(response.status, text)
            return json.loads(text) if text else {}

    async def text(self, path: str) -> str:
        """A plain-text GET (the API server's /metrics)."""
        async with self._session.get(self.host + path, headers={"Accept": "text/plain"}) as r:
            body = await r.text()
            if r.status >= 300:
                raise ApiError(r.status, body)
            return body

    async def list_all(self, path: str, params: Mapping[str, str] | None = None) -> Raw:
        """A list, page by page; returns {'items': [...], 'resourceVersion': rv}."""
        items: list[Raw] = []
        query = dict(params or {})
        query["limit"] = "500"
        while True:
            page = await self.request("GET", path, params=query, timeout=300)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return {"items": items, "resourceVersion": meta.get("resourceVersion", "")}
            query["continue"] = token

    async def watch(
        self, path: str, params: Mapping[str, str] | None = None, *, resource_version: str
    ) -> AsyncIterator[tuple[str, Raw, float]]:
        """Watch events from a resourceVersion: (type, object, monotonic time seen), forever.

        Reconnects on timeouts; on 410 Gone it yields ("RELIST", {}, t) and stops.
        """
        rv = resource_version
        while True:
            query = dict(params or {})
            query.update(
                watch="1",
                resourceVersion=rv,
                allowWatchBookmarks="true",
                timeoutSeconds="240",
            )
            try:
                async with self._session.get(
                    self.host + path,
                    params=query,
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=300),
                ) as response:
                    if response.status == 410:
                        yield "RELIST", {}, time.monotonic()
                        return
                    if response.status >= 300:
                        raise ApiError(response.status, await response.text())
                    async for line in response.content:
                        seen = time.monotonic()
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        kind = event.get("type", "")
                        obj = event.get("object") or {}
                        if kind == "ERROR":
                            if obj.get("code") == 410:
                                yield "RELIST", {}, seen
                                return
                            raise ApiError(int(obj.get("code") or 500), json.dumps(obj))
                        new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                        if new_rv:
                            rv = new_rv
                        if kind != "BOOKMARK":
                            yield kind, obj, seen
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.5)


async def wait_for_apiserver(kube: Kube, *, timeout: float = 600.0, log: Any = print) -> None:
    """Wait until the API server answers /readyz (another engineer may be restarting it)."""
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        try:
            await kube.text("/readyz")
            return
        except (TimeoutError, aiohttp.ClientError, ApiError, OSError) as error:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"API server not ready after {timeout:.0f} s: {error}"
                ) from error
            if not warned:
                log(f"API server not answering ({error!r}); waiting")
                warned = True
            await asyncio.sleep(3)
