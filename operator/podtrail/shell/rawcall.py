"""Requests straight through the API client's HTTP session, for the hot calls of shell.kube.

The generated client always asks for whole objects (it overwrites any Accept header) and
re-encodes every body with the standard library after walking it. Record writes and the
records' watch need neither: the body is encoded once with orjson, and the answer can be the
object's metadata alone (`PartialObjectMetadata`), all that the writer reads back.
Authentication, TLS, proxy and headers stay the client's: the same session, the same auth hook.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from kubernetes_asyncio import client

METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
"""Ask for an object's metadata only (a list or watch answers PartialObjectMetadata items)."""
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
"""Custom resources take no strategic merge patch."""

# The keyword arguments a list-then-watch stream passes, as query parameters.
_QUERY_NAMES = {
    "watch": "watch",
    "resource_version": "resourceVersion",
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "timeout_seconds": "timeoutSeconds",
    "limit": "limit",
    "_continue": "continue",
}


def path_of(*segments: str) -> str:
    """An API path from its segments, each quoted."""
    return "/" + "/".join(quote(segment, safe="") for segment in segments)


def encode(body: Mapping[str, Any]) -> bytes:
    """A request body as JSON bytes."""
    return orjson.dumps(body)


class RawCaller:
    """Sends requests through an `ApiClient`'s session and answers the raw aiohttp response.

    The response is not checked: a status other than 2xx is the caller's to raise (as the
    generated client's raw calls, `_preload_content=False`, leave it).
    """

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api

    async def request(
        self,
        method: str,
        path: str,
        *,
        timeout: aiohttp.ClientTimeout,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = JSON,
        accept: str = JSON,
    ) -> aiohttp.ClientResponse:
        """One request; `path` is the API path (see path_of), `query` its parameters."""
        headers = {**self._api.default_headers, "Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        await self._api.update_params_for_auth(headers, [], ["BearerToken"])
        configuration = self._api.configuration
        url = str(configuration.host) + path
        if query:
            url += "?" + urlencode(query)
        extra: dict[str, Any] = {}
        if configuration.proxy:
            extra["proxy"] = configuration.proxy
            if configuration.proxy_headers:
                extra["proxy_headers"] = configuration.proxy_headers
        if configuration.tls_server_name:
            extra["server_hostname"] = configuration.tls_server_name
        session: aiohttp.ClientSession = self._api.rest_client.pool_manager
        return await session.request(
            method, url, data=body, headers=headers, timeout=timeout, **extra
        )

    def lister(self, path: str, *, metadata_only: bool = False) -> Callable[..., Awaitable[Any]]:
        """A list (or, with watch=True, watch) call shaped like the generated client's."""

        def call(**kwargs: Any) -> Awaitable[aiohttp.ClientResponse]:
            accept = JSON
            if metadata_only:
                accept = METADATA if kwargs.get("watch") else METADATA_LIST
            query = {
                _QUERY_NAMES[key]: _query_value(value)
                for key, value in kwargs.items()
                if key in _QUERY_NAMES and value is not None
            }
            return self.request(
                "GET",
                path,
                query=query,
                timeout=kwargs.get("_request_timeout") or aiohttp.ClientTimeout(),
                accept=accept,
            )

        return call


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
