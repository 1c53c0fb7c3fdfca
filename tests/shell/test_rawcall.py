"""Record writes and the records' watch, sent straight through the client's session.

Against a local HTTP server: the path, the method, the body as JSON, the client's own headers
and credentials, and metadata asked for instead of whole objects.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client

from podtrail.shell import kube, rawcall
from podtrail.shell.kube import Kube

RECORDS = "/apis/podtrail.io/v1alpha1/namespaces/team-a/podlifecyclerecords"


class Seen:
    """What the server was sent, and what it answers next."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": json.loads(body) if body else None,
            }
        )
        answer = {"metadata": {"name": "web-1", "resourceVersion": "7", "labels": {"a": "b"}}}
        return web.json_response(answer, status=self.status)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Seen, Kube]]:
    seen = Seen()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", seen.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    configuration = client.Configuration(
        host=f"http://127.0.0.1:{port}", api_key={"BearerToken": "token-1"}
    )
    configuration.api_key_prefix["BearerToken"] = "Bearer"
    api = Kube(client.ApiClient(configuration))
    try:
        yield seen, api
    finally:
        await api.close()
        await runner.cleanup()


async def test_a_status_write_sends_json_with_the_clients_credentials(
    served: tuple[Seen, Kube],
) -> None:
    seen, api = served
    answer = await api.replace_record_status("team-a", "web-1", "6", {"phase": "Running", "n": 1})

    assert answer["metadata"]["resourceVersion"] == "7"
    (request,) = seen.requests
    assert (request["method"], request["path"]) == ("PUT", f"{RECORDS}/web-1/status")
    assert request["body"]["status"] == {"phase": "Running", "n": 1}
    assert request["body"]["metadata"]["resourceVersion"] == "6"
    headers = request["headers"]
    assert headers["Authorization"] == "Bearer token-1"
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == rawcall.METADATA, "only the metadata is read back"
    assert "as=PartialObjectMetadata;" in headers["Accept"]
    assert headers["User-Agent"].startswith("OpenAPI-Generator"), "the client's field manager"


async def test_a_record_is_created_and_its_labels_merge_patched(
    served: tuple[Seen, Kube],
) -> None:
    seen, api = served
    await api.create_record("team-a", "web-1", {"app": "web"})
    await api.patch_record_labels("team-a", "web-1", {"app": None, "tier": "1"}, "7")

    create, patch = seen.requests
    assert (create["method"], create["path"]) == ("POST", RECORDS)
    assert create["body"]["metadata"]["labels"] == {"app": "web"}
    assert (patch["method"], patch["path"]) == ("PATCH", f"{RECORDS}/web-1")
    assert patch["headers"]["Content-Type"] == "application/merge-patch+json"
    assert patch["body"] == {
        "metadata": {"labels": {"app": None, "tier": "1"}, "resourceVersion": "7"}
    }


async def test_a_refused_write_raises_the_callers_error(served: tuple[Seen, Kube]) -> None:
    seen, api = served
    seen.status = 409
    with pytest.raises(kube.ConflictError):
        await api.replace_record_status("team-a", "web-1", "6", {})
    seen.status = 404
    with pytest.raises(kube.NotFoundError):
        await api.replace_record_status("team-a", "web-1", "6", {})


async def test_the_records_watch_and_its_listing_ask_for_metadata_only(
    served: tuple[Seen, Kube],
) -> None:
    seen, api = served
    caller = rawcall.RawCaller(api._api)  # noqa: SLF001 (the same session as the Kube's)
    call = caller.lister(RECORDS, metadata_only=True)
    (await call(limit=500, _continue="abc")).release()
    (await call(watch=True, resource_version="9", allow_watch_bookmarks=True)).release()

    listing, watch = seen.requests
    assert listing["query"] == {"limit": "500", "continue": "abc"}
    list_of = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    assert listing["headers"]["Accept"] == list_of
    assert watch["query"] == {
        "watch": "true",
        "resourceVersion": "9",
        "allowWatchBookmarks": "true",
    }
    assert (
        watch["headers"]["Accept"] == "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
    )


def test_paths_quote_each_segment() -> None:
    assert rawcall.path_of("apis", "g", "a/b c") == "/apis/g/a%2Fb%20c"
