"""The only module that talks to the Kubernetes API (through kubernetes_asyncio, as plain dicts)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

GROUP = "podtrail.io"
VERSION = "v1alpha1"
PLURAL = "podlifecyclerecords"
KIND = "PodLifecycleRecord"

_PAGE = 500
_WATCH_SECONDS = 290

Raw = dict[str, Any]


class KubeError(Exception):
    """An API call failed in a way its caller handles."""


class ConflictError(KubeError):
    """The object changed since it was read (HTTP 409)."""


class NotFoundError(KubeError):
    """The object does not exist (HTTP 404)."""


class NamespaceGoneError(KubeError):
    """The namespace is gone or being deleted: no record can be created in it."""


class AlreadyExistsError(KubeError):
    """The object exists already (HTTP 409 on create)."""


_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def retry_after(error: BaseException) -> float | None:
    """The seconds a server asked the client to wait (a Retry-After header), if it said so."""
    headers = getattr(error, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP date: rare from an API server, treated as no hint


def is_transient(error: BaseException) -> bool:
    """Whether trying again later may work: throttling, server errors, time-outs, lost sockets."""
    if isinstance(error, ApiException):
        return error.status in _TRANSIENT_STATUSES or error.status == 0
    return isinstance(error, aiohttp.ClientError | TimeoutError | ConnectionError)


def _body_text(error: ApiException) -> str:
    raw: object = error.body
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")


def _translate(error: ApiException) -> Exception:
    if error.status == 404:
        return NotFoundError(error.reason)
    if error.status == 409:
        if "AlreadyExists" in _body_text(error):
            return AlreadyExistsError(error.reason)
        return ConflictError(error.reason)
    return error


@dataclass(frozen=True, slots=True)
class StreamItem:
    """One step of a list-then-watch stream.

    `kind` is a step of a listing (at start and after 410 Gone): "LISTING" (a listing begins:
    forget what the last one gathered), "LISTED" (one page, in `items`), "SYNCED" (the listing is
    complete); or a watch event type (ADDED, MODIFIED, DELETED) with its object in `obj`.
    """

    kind: str
    obj: Raw | None = None
    items: tuple[Raw, ...] = ()


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; `version` (the listing's resourceVersion) is on the last one."""

    items: list[Raw]
    version: str | None


class Kube:
    """A thin async facade over the API calls the operator makes; every result is a plain dict."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._discovery = client.DiscoveryV1Api(api)
        self._custom = client.CustomObjectsApi(api)

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> Kube:
        """Use in-cluster credentials when there are some, else the kubeconfig."""
        configuration = client.Configuration()
        if kubeconfig is None:
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except config.ConfigException:
                await config.load_kube_config(client_configuration=configuration)
        else:
            await config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration
            )
        api = client.ApiClient(configuration)
        await _ignore_environment(api, configuration)
        return cls(api)

    async def close(self) -> None:
        """Release the HTTP session."""
        await self._api.close()

    # --- records -------------------------------------------------------------------------------

    async def record_pages(self, namespace: str | None = None) -> AsyncIterator[Page]:
        """Every record, all namespaces or one, a page at a time.

        The last page carries the listing's version. The operator never holds every record's
        JSON at once.
        """
        try:
            async for page in _pages(self._records_call(namespace)):
                yield page
        except (ApiException, json.JSONDecodeError) as error:
            if isinstance(error, json.JSONDecodeError) or error.status == 404:
                raise KubeError(
                    f"{PLURAL}.{GROUP} is not served: is the CRD installed? "
                    "(kubectl apply -k crds/)"
                ) from error
            raise

    def _records_call(self, namespace: str | None) -> Call:
        if namespace is None:
            return _partial(self._custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
        return _partial(
            self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
        )

    async def get_record(self, namespace: str, name: str) -> Raw | None:
        """One record, or None when it does not exist."""
        try:
            return await _json(
                self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
                )
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error) from error

    async def create_record(self, namespace: str, name: str, labels: Mapping[str, str]) -> Raw:
        """A new record for a pod, without status (the status subresource ignores it here)."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"podName": name},
        }
        try:
            return await _json(
                self._custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, body, _preload_content=False
                )
            )
        except ApiException as error:
            text = _body_text(error)
            if error.status == 404 or (error.status == 403 and "being terminated" in text):
                raise NamespaceGoneError(namespace) from error
            raise _translate(error) from error

    async def replace_record_status(
        self, namespace: str, name: str, resource_version: str, status: Mapping[str, Any]
    ) -> Raw:
        """Write a record's whole status if nobody changed the record since `resource_version`."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "status": dict(status),
        }
        try:
            return await _json(
                self._custom.replace_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, PLURAL, name, body, _preload_content=False
                )
            )
        except ApiException as error:
            raise _translate(error) from error

    async def patch_record_labels(
        self, namespace: str, name: str, labels: Mapping[str, str]
    ) -> Raw:
        """Make a record's labels exactly these (a JSON patch replaces the whole map)."""
        patch = [{"op": "add", "path": "/metadata/labels", "value": dict(labels)}]
        try:
            return await _json(
                self._custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, patch, _preload_content=False
                )
            )
        except ApiException as error:
            raise _translate(error) from error

    async def delete_record(self, namespace: str, name: str, uid: str) -> None:
        """Delete a record, only that very object (a record recreated meanwhile is kept)."""
        try:
            await _json(
                self._custom.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)),
                    _preload_content=False,
                )
            )
        except ApiException as error:
            if error.status == 404:
                return
            raise _translate(error) from error

    async def post_record_event(
        self,
        namespace: str,
        name: str,
        uid: str,
        reason: str,
        message: str,
        type: str = "Warning",
    ) -> None:
        """Post a core/v1 Event about a record (what `kubectl describe plr` shows under Events)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body: Any = {  # a plain dict: the client serialises it as it is, like a CoreV1Event
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "namespace": namespace,
                "name": name,
                "uid": uid,
            },
            "reason": reason,
            "message": message[:1024],
            "type": type,
            "source": {"component": "podtrail"},
            "reportingComponent": "podtrail.io/operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await _json(self._core.create_namespaced_event(namespace, body, _preload_content=False))
        except ApiException as error:
            raise _translate(error) from error

    # --- pods and namespaces -------------------------------------------------------------------

    async def get_pod(self, namespace: str, name: str) -> Raw | None:
        """One pod as the API shows it, or None."""
        try:
            return await _json(
                self._core.read_namespaced_pod(name, namespace, _preload_content=False)
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error) from error

    async def list_pod_identities(self, namespace: str | None = None) -> set[tuple[str, str, str]]:
        """(namespace, name, uid) of every pod that exists now, read as metadata only."""
        if namespace is None:
            call = _partial(self._core.list_pod_for_all_namespaces)
        else:
            call = _partial(self._core.list_namespaced_pod, namespace)
        items = await _list_pages(call, metadata_only=True)
        identities = set()
        for item in items:
            meta = item.get("metadata") or {}
            identities.add((meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", "")))
        return identities

    async def get_namespace(self, name: str) -> Raw | None:
        """One namespace, or None."""
        try:
            return await _json(self._core.read_namespace(name, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error) from error

    async def list_namespaces(self) -> list[Raw]:
        """Every namespace, as metadata only."""
        return await _list_pages(_partial(self._core.list_namespace), metadata_only=True)

    # --- leases ---------------------------------------------------------------------------------

    def _coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self._api)

    @staticmethod
    def _any(lease: Mapping[str, Any]) -> Any:
        return dict(lease)  # the client serialises a plain dict as it is, like a V1Lease

    async def get_lease(self, namespace: str, name: str) -> Raw | None:
        """A coordination.k8s.io/v1 Lease, or None when it does not exist."""
        try:
            return await _json(
                self._coordination().read_namespaced_lease(name, namespace, _preload_content=False)
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error) from error

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> Raw:
        """Create a Lease; AlreadyExistsError when another replica created it first."""
        try:
            return await _json(
                self._coordination().create_namespaced_lease(
                    namespace, self._any(lease), _preload_content=False
                )
            )
        except ApiException as error:
            raise _translate(error) from error

    async def replace_lease(self, namespace: str, name: str, lease: Mapping[str, Any]) -> Raw:
        """Write a Lease at its metadata.resourceVersion; ConflictError if it changed since."""
        try:
            return await _json(
                self._coordination().replace_namespaced_lease(
                    name, namespace, self._any(lease), _preload_content=False
                )
            )
        except ApiException as error:
            raise _translate(error) from error

    # --- streams -------------------------------------------------------------------------------

    def pod_events(
        self, namespace: str | None, on_restart: Callable[[str], None]
    ) -> AsyncIterator[StreamItem]:
        """Events about pods, filtered by the API server (not in this process)."""
        selector = "involvedObject.kind=Pod"
        if namespace is None:
            call = _partial(self._core.list_event_for_all_namespaces, field_selector=selector)
        else:
            call = _partial(self._core.list_namespaced_event, namespace, field_selector=selector)
        return _list_then_watch(call, on_restart)

    def records(
        self, namespace: str | None, on_restart: Callable[[str], None], since: str
    ) -> AsyncIterator[StreamItem]:
        """Records, watched from the version of a listing already taken.

        Every status write comes back through this watch, so it stays out of Kopf, whose
        per-event processing cost more than the write itself.
        """
        return _list_then_watch(self._records_call(namespace), on_restart, since or None)

    def pods(
        self, namespace: str | None, on_restart: Callable[[str], None]
    ) -> AsyncIterator[StreamItem]:
        """Pods, every change in order (Kopf's per-object batching would skip states)."""
        if namespace is None:
            call = _partial(self._core.list_pod_for_all_namespaces)
        else:
            call = _partial(self._core.list_namespaced_pod, namespace)
        return _list_then_watch(call, on_restart)

    def endpoint_slices(
        self, namespace: str | None, on_restart: Callable[[str], None]
    ) -> AsyncIterator[StreamItem]:
        """EndpointSlices, to see a terminating pod leave its Services."""
        if namespace is None:
            call = _partial(self._discovery.list_endpoint_slice_for_all_namespaces)
        else:
            call = _partial(self._discovery.list_namespaced_endpoint_slice, namespace)
        return _list_then_watch(call, on_restart)


async def _ignore_environment(api: client.ApiClient, configuration: client.Configuration) -> None:
    """Swap the client's HTTP session for one that ignores proxy variables and ~/.netrc.

    The library's session trusts the environment, which makes aiohttp look for a netrc file and
    proxies on every request (a measurable share of the CPU per status write); the operator
    only ever talks to its own API server, directly.
    """
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.disable_strict_ssl_verification:
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    rest = api.rest_client
    original = rest.pool_manager
    rest.pool_manager = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=configuration.connection_pool_maxsize, ssl=context),
        trust_env=False,
        read_bufsize=2**21,  # watch lines can hold large objects, as the library allows
    )
    await original.close()


Call = Callable[..., Awaitable[Any]]


def _partial(function: Call, *args: Any, **kwargs: Any) -> Call:
    def call(**more: Any) -> Awaitable[Any]:
        return function(*args, **kwargs, **more)

    return call


async def _json(pending: Awaitable[Any]) -> Raw:
    response: aiohttp.ClientResponse = await pending
    try:
        payload = await response.read()
    finally:
        response.release()
    if not 200 <= response.status <= 299:
        # A raw (unpreloaded) response is not checked by the client library: do it here.
        error = ApiException(status=response.status, reason=response.reason)
        error.body = payload
        error.headers = response.headers
        raise error
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise KubeError("the API answered with something other than an object")
    return data


async def _pages(call: Call, *, metadata_only: bool = False) -> AsyncIterator[Page]:
    """A full listing, one page at a time: no response, and no list, holds every object."""
    token: str | None = None
    headers = (
        {"Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"}
        if metadata_only
        else None
    )
    while True:
        kwargs: dict[str, Any] = {"limit": _PAGE, "_preload_content": False}
        if token:
            kwargs["_continue"] = token
        if headers:
            kwargs["_headers"] = headers
        page = await _json(call(**kwargs))
        meta = page.get("metadata") or {}
        token = meta.get("continue") or None
        yield Page(
            page.get("items") or [], None if token else str(meta.get("resourceVersion") or "")
        )
        if not token:
            return


async def _list_pages(call: Call, *, metadata_only: bool = False) -> list[Raw]:
    """A whole listing of something small (namespaces, metadata only)."""
    items: list[Raw] = []
    async for page in _pages(call, metadata_only=metadata_only):
        items.extend(page.items)
    return items


async def _list_then_watch(
    call: Call, on_restart: Callable[[str], None], since: str | None = None
) -> AsyncIterator[StreamItem]:
    """List page by page (unless told where to start), then watch from the listing's version.

    A listing is LISTING, its pages as LISTED, then SYNCED. Re-lists after 410 Gone; never
    gives up.
    """
    version = since
    backoff = 0.5
    while True:
        try:
            if version is None:
                yield StreamItem("LISTING")
                async for page in _pages(call):
                    yield StreamItem("LISTED", items=tuple(page.items))
                    version = page.version or version
                yield StreamItem("SYNCED")
            response: aiohttp.ClientResponse = await call(
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=_WATCH_SECONDS,
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=10, sock_read=_WATCH_SECONDS + 30
                ),
            )
            try:
                async for line in _lines(response):
                    event = json.loads(line)
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            on_restart("gone")
                            version = None
                        break
                    new_version = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_version:
                        version = new_version
                    if kind in {"ADDED", "MODIFIED", "DELETED"}:
                        yield StreamItem(kind, obj=obj)
                backoff = 0.5
            finally:
                response.release()
        except asyncio.CancelledError:
            raise
        except ApiException as error:
            on_restart("gone" if error.status == 410 else "api-error")
            if error.status == 410:
                version = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
            on_restart("connection")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Split a watch stream into lines without the reader's line-length limit."""
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                break
            line, buffer = buffer[:cut], buffer[cut + 1 :]
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer
