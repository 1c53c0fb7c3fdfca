"""The only module that talks to the Kubernetes API (through kubernetes_asyncio, as plain dicts)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import ssl
import time
import traceback
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from podtrail.shell import rawcall
from podtrail.shell.backoff import Backoff
from podtrail.shell.logs import get_logger

GROUP = "podtrail.io"
VERSION = "v1alpha1"
PLURAL = "podlifecyclerecords"
KIND = "PodLifecycleRecord"

_PAGE = 500
_WATCH_SECONDS = 290
_WATCH_READ_SECONDS = _WATCH_SECONDS + 30  # silence past the server's own end: a frozen server
_QUICK_END_SECONDS = 10.0  # a watch that ends sooner with nothing in it did not really work
DEFAULT_REQUEST_SECONDS = 30.0
DEFAULT_CONNECT_SECONDS = 10.0
ONE_SHOT_ATTEMPTS = 3

Raw = dict[str, Any]
Sleep = Callable[[float], Awaitable[None]]
RequestHook = Callable[[str, str], None]
T = TypeVar("T")

log = get_logger(__name__)


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


def _uncounted(result: str) -> None:
    """No request counter was given."""


def _nothing() -> None:
    """No success callback was given."""


def _result_of(status: int) -> str:
    if 200 <= status <= 299:
        return "2xx"
    if status in (410, 429):
        return str(status)
    return "5xx" if status >= 500 else "4xx"


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How every API call is bounded in time, counted, and waited for after a failure.

    Attributes:
        request_timeout: the most a one-shot call or a list page may take, in seconds, from
            connecting to the last byte; also the most a watch may take to start answering.
        connect_timeout: the most connecting may take, in seconds.
        on_request: called once per request with (call, result). `call` is one of "list",
            "watch", "get", "create", "update", "patch", "delete"; `result` is "2xx", "4xx",
            "5xx", "429" or "410" for the response's status (other non-2xx statuses count as
            "4xx"), or "timeout" / "connection" when no response came. It runs on the event
            loop: keep it cheap (a Prometheus counter).
        sleep: how to wait (tests pass a fake clock's).
        jitter: the backoff's random source, in [0, 1).
        monotonic: the clock that tells a watch that ended early from one that ran its course.
    """

    request_timeout: float = DEFAULT_REQUEST_SECONDS
    connect_timeout: float = DEFAULT_CONNECT_SECONDS
    on_request: RequestHook | None = None
    sleep: Sleep = asyncio.sleep
    jitter: Callable[[], float] = random.random
    monotonic: Callable[[], float] = time.monotonic

    def one_shot_timeout(self) -> aiohttp.ClientTimeout:
        """The bound on a one-shot call or a list page."""
        return aiohttp.ClientTimeout(total=self.request_timeout, sock_connect=self.connect_timeout)

    def watch_timeout(self) -> aiohttp.ClientTimeout:
        """A watch runs for minutes: no total, but a silent socket ends it."""
        return aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_timeout, sock_read=_WATCH_READ_SECONDS
        )

    def counter(self, call: str) -> Callable[[str], None]:
        """The request counter for one kind of call."""
        hook = self.on_request
        if hook is None:
            return _uncounted
        return lambda result: hook(call, result)

    def backoff(self) -> Backoff:
        """A fresh backoff using this policy's jitter."""
        return Backoff(jitter=self.jitter)


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    sleep: Sleep = asyncio.sleep,
    attempts: int = ONE_SHOT_ATTEMPTS,
) -> T:
    """Run a one-shot call, trying again after transient failures, at most `attempts` times.

    Waits through `backoff` (honouring Retry-After) between tries; a non-transient error, or the
    last transient one, is raised.
    """
    tries = 1
    while True:
        try:
            return await attempt()
        except Exception as error:
            if tries >= attempts or not is_transient(error):
                raise
            delay = backoff.next_delay(retry_after(error))
        tries += 1
        await sleep(delay)


class Kube:
    """A thin async facade over the API calls the operator makes; every result is a plain dict.

    Every call is bounded in time (`request_timeout`, a 10 s connect bound; watches by the
    server's timeoutSeconds and a read bound) and counted through `on_request` (see CallPolicy
    for its contract). `sleep` and `jitter` are for tests.
    """

    def __init__(
        self,
        api: client.ApiClient,
        *,
        request_timeout: float = DEFAULT_REQUEST_SECONDS,
        on_request: RequestHook | None = None,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._discovery = client.DiscoveryV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._rawcall = rawcall.RawCaller(api)
        self._policy = CallPolicy(
            request_timeout=request_timeout, on_request=on_request, sleep=sleep, jitter=jitter
        )

    def _raw(self) -> dict[str, Any]:
        """The keyword arguments of every one-shot call: raw response, bounded in time."""
        return {"_preload_content": False, "_request_timeout": self._policy.one_shot_timeout()}

    def _count(self, call: str) -> Callable[[str], None]:
        return self._policy.counter(call)

    async def retried(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """A one-shot read tried again after transient failures (a few times, backing off).

        For reads made while handling a stream's object, e.g.
        `await kube.retried(lambda: kube.get_pod(namespace, name))`.
        """
        return await retrying(attempt, backoff=self._policy.backoff(), sleep=self._policy.sleep)

    @classmethod
    async def connect(
        cls,
        kubeconfig: str | None = None,
        *,
        request_timeout: float = DEFAULT_REQUEST_SECONDS,
        on_request: RequestHook | None = None,
    ) -> Kube:
        """Connect with the operator's credentials, in the order of its Kopf login.

        `kubeconfig` when given, else in-cluster credentials, then $KUBECONFIG (a list of files
        too), then ~/.kube/config.
        """
        configuration = client.Configuration()
        if kubeconfig is None:
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except config.ConfigException:
                await config.load_kube_config(
                    config_file=os.environ.get("KUBECONFIG")
                    or os.path.expanduser("~/.kube/config"),
                    client_configuration=configuration,
                )
        else:
            await config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration
            )
        api = client.ApiClient(configuration)
        await _ignore_environment(api, configuration)
        return cls(api, request_timeout=request_timeout, on_request=on_request)

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
            async for page in _pages(self._records_call(namespace), policy=self._policy):
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
                    GROUP, VERSION, namespace, PLURAL, name, **self._raw()
                ),
                self._count("get"),
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
                self._send("POST", _records_path(namespace), body), self._count("create")
            )
        except ApiException as error:
            text = _body_text(error)
            if error.status == 404 or (error.status == 403 and "being terminated" in text):
                raise NamespaceGoneError(namespace) from error
            raise _translate(error) from error

    async def replace_record_status(
        self, namespace: str, name: str, resource_version: str, status: Mapping[str, Any]
    ) -> Raw:
        """Write a record's whole status if nobody changed the record since `resource_version`.

        Answers the record's metadata only (its resourceVersion is what the writer reads).
        """
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "status": dict(status),
        }
        try:
            path = _records_path(namespace, name, "status")
            return await _json(self._send("PUT", path, body), self._count("update"))
        except ApiException as error:
            raise _translate(error) from error

    async def patch_record_labels(
        self, namespace: str, name: str, changes: Mapping[str, str | None], resource_version: str
    ) -> Raw:
        """Set these labels of a record and remove those given as None; others stay as they are.

        A JSON merge patch of the keys that change only, made at the resourceVersion the
        changes were worked out from (ConflictError if the record changed since): a label
        someone else set meanwhile, which the operator has not seen yet, is never overwritten.
        """
        meta: dict[str, Any] = {"labels": dict(changes)}
        if resource_version:
            meta["resourceVersion"] = resource_version  # a precondition: 409 if it moved on
        patch = {"metadata": meta}
        try:
            pending = self._send(
                "PATCH", _records_path(namespace, name), patch, rawcall.MERGE_PATCH
            )
            return await _json(pending, self._count("patch"))
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
                    **self._raw(),
                ),
                self._count("delete"),
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
            await _json(
                self._core.create_namespaced_event(namespace, body, **self._raw()),
                self._count("create"),
            )
        except ApiException as error:
            raise _translate(error) from error

    # --- pods and namespaces -------------------------------------------------------------------

    async def get_pod(self, namespace: str, name: str) -> Raw | None:
        """One pod as the API shows it, or None."""
        try:
            return await _json(
                self._core.read_namespaced_pod(name, namespace, **self._raw()), self._count("get")
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error) from error

    async def get_namespace(self, name: str) -> Raw | None:
        """One namespace, or None."""
        try:
            return await _json(self._core.read_namespace(name, **self._raw()), self._count("get"))
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error) from error

    async def list_namespaces(self) -> list[Raw]:
        """Every namespace, as metadata only."""
        call = self._rawcall.lister(rawcall.path_of("api", "v1", "namespaces"), metadata_only=True)
        return await _list_pages(call, policy=self._policy)

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
                self._coordination().read_namespaced_lease(name, namespace, **self._raw()),
                self._count("get"),
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
                    namespace, self._any(lease), **self._raw()
                ),
                self._count("create"),
            )
        except ApiException as error:
            raise _translate(error) from error

    async def replace_lease(self, namespace: str, name: str, lease: Mapping[str, Any]) -> Raw:
        """Write a Lease at its metadata.resourceVersion; ConflictError if it changed since."""
        try:
            return await _json(
                self._coordination().replace_namespaced_lease(
                    name, namespace, self._any(lease), **self._raw()
                ),
                self._count("update"),
            )
        except ApiException as error:
            raise _translate(error) from error

    # --- streams -------------------------------------------------------------------------------
    #
    def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any],
        content_type: str = rawcall.JSON,
    ) -> Awaitable[aiohttp.ClientResponse]:
        """A record write, answered with the record's metadata only."""
        return self._rawcall.request(
            method,
            path,
            body=rawcall.encode(body),
            content_type=content_type,
            accept=rawcall.METADATA,
            timeout=self._policy.one_shot_timeout(),
        )

    # Each stream calls `on_restart(cause)` after every failure, before backing off (causes:
    # see _cause_of), and `on_up()` when a list page or a watch response arrives. It ends only
    # when cancelled or closed.

    def pod_events(
        self,
        namespace: str | None,
        on_restart: Callable[[str], None],
        on_up: Callable[[], None] = _nothing,
    ) -> AsyncIterator[StreamItem]:
        """Events about pods, filtered by the API server (not in this process)."""
        selector = "involvedObject.kind=Pod"
        if namespace is None:
            call = _partial(self._core.list_event_for_all_namespaces, field_selector=selector)
        else:
            call = _partial(self._core.list_namespaced_event, namespace, field_selector=selector)
        return _list_then_watch(call, on_restart, on_up=on_up, policy=self._policy, name="events")

    def records(
        self,
        namespace: str | None,
        on_restart: Callable[[str], None],
        since: str,
        on_up: Callable[[], None] = _nothing,
    ) -> AsyncIterator[StreamItem]:
        """Records' metadata, watched from the version of a listing already taken.

        Every status write comes back through this watch: it stays out of Kopf, whose per-event
        processing cost more than the write itself, and it carries metadata only (the caller
        reads a record whose `generation` moved). A re-listing lists metadata only too.
        """
        return _list_then_watch(
            self._rawcall.lister(_records_path(namespace), metadata_only=True),
            on_restart,
            since or None,
            on_up=on_up,
            policy=self._policy,
            name="records",
        )

    def pods(
        self,
        namespace: str | None,
        on_restart: Callable[[str], None],
        on_up: Callable[[], None] = _nothing,
    ) -> AsyncIterator[StreamItem]:
        """Pods, every change in order (Kopf's per-object batching would skip states)."""
        if namespace is None:
            call = _partial(self._core.list_pod_for_all_namespaces)
        else:
            call = _partial(self._core.list_namespaced_pod, namespace)
        return _list_then_watch(call, on_restart, on_up=on_up, policy=self._policy, name="pods")

    def endpoint_slices(
        self,
        namespace: str | None,
        on_restart: Callable[[str], None],
        on_up: Callable[[], None] = _nothing,
    ) -> AsyncIterator[StreamItem]:
        """EndpointSlices, to see a terminating pod leave its Services."""
        if namespace is None:
            call = _partial(self._discovery.list_endpoint_slice_for_all_namespaces)
        else:
            call = _partial(self._discovery.list_namespaced_endpoint_slice, namespace)
        return _list_then_watch(
            call, on_restart, on_up=on_up, policy=self._policy, name="endpointslices"
        )


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


async def _respond(pending: Awaitable[Any], count: Callable[[str], None]) -> aiohttp.ClientResponse:
    """The raw response of a call, counted; a status other than 2xx is raised as ApiException."""
    try:
        response: aiohttp.ClientResponse = await pending
    except TimeoutError:  # before ClientError: aiohttp's time-outs are both
        count("timeout")
        raise
    except (aiohttp.ClientError, OSError):
        count("connection")
        raise
    count(_result_of(response.status))
    if 200 <= response.status <= 299:
        return response
    try:
        payload = await response.read()
    finally:
        response.release()
    # A raw (unpreloaded) response is not checked by the client library: do it here, keeping
    # the headers for Retry-After.
    error = ApiException(status=response.status, reason=response.reason)
    error.body = payload
    error.headers = response.headers
    raise error


async def _json(pending: Awaitable[Any], count: Callable[[str], None] = _uncounted) -> Raw:
    response = await _respond(pending, count)
    try:
        payload = await response.read()
    finally:
        response.release()
    data = orjson.loads(payload)
    if not isinstance(data, dict):
        raise KubeError("the API answered with something other than an object")
    return data


_DEFAULT_POLICY = CallPolicy()


def _records_path(namespace: str | None, *name: str) -> str:
    """The API path of the records (of a namespace, or all), or of one record's subresource."""
    where = ("namespaces", namespace) if namespace is not None else ()
    return rawcall.path_of("apis", GROUP, VERSION, *where, PLURAL, *name)


async def _pages(call: Call, *, policy: CallPolicy = _DEFAULT_POLICY) -> AsyncIterator[Page]:
    """A full listing, one page at a time: no response, and no list, holds every object."""
    token: str | None = None
    count = policy.counter("list")
    while True:
        kwargs: dict[str, Any] = {
            "limit": _PAGE,
            "_preload_content": False,
            "_request_timeout": policy.one_shot_timeout(),
        }
        if token:
            kwargs["_continue"] = token
        page = await _json(call(**kwargs), count)
        meta = page.get("metadata") or {}
        token = meta.get("continue") or None
        yield Page(
            page.get("items") or [], None if token else str(meta.get("resourceVersion") or "")
        )
        if not token:
            return


async def _list_pages(call: Call, *, policy: CallPolicy = _DEFAULT_POLICY) -> list[Raw]:
    """A whole listing of something small (namespaces, metadata only)."""
    items: list[Raw] = []
    async for page in _pages(call, policy=policy):
        items.extend(page.items)
    return items


class _StreamError(Exception):
    """A watch failed inside a good response (an ERROR event, a bad line, an early end)."""

    def __init__(self, cause: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        # Read by retry_after(), like an API error's headers.
        self.headers = {"Retry-After": str(retry_after)} if retry_after is not None else None


def _cause_of_status(status: int) -> str:
    if status == 410:
        return "gone"
    if status == 429:
        return "throttled"
    return "server-error" if status >= 500 else "client-error"


def _cause_of(error: Exception) -> str:
    """Why a stream restarts, one of a closed set.

    gone (410: re-list), throttled (429), server-error (5xx), client-error (other 4xx),
    connection, timeout, decode (an undecodable answer), empty (a watch that ended at once with
    nothing in it), unexpected (anything else: a bug, logged with its traceback).
    """
    if isinstance(error, _StreamError):
        return error.cause
    if isinstance(error, ApiException):
        return _cause_of_status(int(error.status or 0))
    if isinstance(error, TimeoutError):  # before ClientError: aiohttp's time-outs are both
        return "timeout"
    if isinstance(error, aiohttp.ClientError | OSError):
        return "connection"
    if isinstance(error, ValueError | KubeError):  # JSON and UTF-8 errors are ValueErrors
        return "decode"
    return "unexpected"


def _short_traceback(error: BaseException) -> str:
    """Where an unexpected error came from, without the frames' locals (costly to render)."""
    return "".join(traceback.format_exception(error, limit=-8))


def _in_band_error(status: Raw) -> _StreamError:
    """A watch's ERROR event (a Status object) as a failure to back off from."""
    code = status.get("code")
    code = code if isinstance(code, int) else 500
    details = status.get("details") or {}
    wait = details.get("retryAfterSeconds") if isinstance(details, dict) else None
    return _StreamError(
        _cause_of_status(code),
        f"watch error {code}: {status.get('message', '')}",
        float(wait) if isinstance(wait, int | float) else None,
    )


def _decode(line: bytes) -> tuple[str, Raw]:
    try:
        event = orjson.loads(line)
    except ValueError as error:
        raise _StreamError("decode", f"undecodable watch line: {error}") from error
    obj = event.get("object") if isinstance(event, dict) else None
    if not isinstance(obj, dict):
        raise _StreamError("decode", "watch event without an object")
    return str(event.get("type")), obj


def _list_then_watch(
    call: Call,
    on_restart: Callable[[str], None],
    since: str | None = None,
    *,
    on_up: Callable[[], None] = _nothing,
    policy: CallPolicy = _DEFAULT_POLICY,
    name: str = "stream",
) -> AsyncIterator[StreamItem]:
    """List page by page (unless told where to start), then watch from the listing's version.

    A listing is LISTING, its pages as LISTED, then SYNCED. Every failure (see _cause_of) is
    reported to `on_restart(cause)` and waited out through a Backoff (capped, jittered,
    honouring Retry-After) on `policy.sleep`; 410 Gone re-lists (at once the first time). A
    watch that runs its course is watched again at once, with no restart counted. `on_up()`
    is called for every list page and every watch response that arrives. Never ends but by
    cancellation.
    """
    return _Stream(call, on_restart, on_up, policy, name, since).items()


class _Stream:
    """The state of one list-then-watch stream: where it is, and how long to wait next."""

    def __init__(
        self,
        call: Call,
        on_restart: Callable[[str], None],
        on_up: Callable[[], None],
        policy: CallPolicy,
        name: str,
        since: str | None,
    ) -> None:
        self._call = call
        self._on_restart = on_restart
        self._on_up = on_up
        self._policy = policy
        self._name = name
        self._version = since
        self._backoff = policy.backoff()
        self._last_cause: str | None = None  # of the last failure since the last good watch
        self._count_watch = policy.counter("watch")

    async def items(self) -> AsyncIterator[StreamItem]:
        while True:
            try:
                if self._version is None:
                    async with contextlib.aclosing(self._listing()) as listing:
                        async for item in listing:
                            yield item
                async with contextlib.aclosing(self._watch()) as watch:
                    async for item in watch:
                        yield item
            except Exception as error:  # cancellation is no Exception: it ends the stream
                await self._failed(error)

    async def _listing(self) -> AsyncGenerator[StreamItem]:
        yield StreamItem("LISTING")
        version = None
        async for page in _pages(self._call, policy=self._policy):
            self._on_up()
            yield StreamItem("LISTED", items=tuple(page.items))
            version = page.version or version
        yield StreamItem("SYNCED")
        if version is None:  # watching from nowhere would re-list at once, forever
            raise _StreamError("decode", "a listing without a resourceVersion")
        self._version = version

    async def _open_watch(self) -> aiohttp.ClientResponse:
        pending = self._call(
            watch=True,
            resource_version=self._version,
            allow_watch_bookmarks=True,
            timeout_seconds=_WATCH_SECONDS,
            _preload_content=False,
            _request_timeout=self._policy.watch_timeout(),
        )
        # The server answers a watch at once; only then may it stay silent for minutes.
        response = await _respond(
            asyncio.wait_for(pending, self._policy.request_timeout), self._count_watch
        )
        self._on_up()
        return response

    async def _watch(self) -> AsyncGenerator[StreamItem]:
        response = await self._open_watch()
        started = self._policy.monotonic()
        worked = False
        try:
            async for line in _lines(response):
                kind, obj = _decode(line)
                if kind == "ERROR":
                    raise _in_band_error(obj)
                if not worked:
                    worked = True
                    self._backoff.reset()
                    self._last_cause = None
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self._version = str(version)
                if kind in {"ADDED", "MODIFIED", "DELETED"}:
                    yield StreamItem(kind, obj=obj)
        finally:
            response.release()
        if not worked and self._policy.monotonic() - started < _QUICK_END_SECONDS:
            raise _StreamError("empty", "the watch ended at once with nothing in it")
        self._backoff.reset()
        self._last_cause = None

    async def _failed(self, error: Exception) -> None:
        cause = _cause_of(error)
        # A 410 is the usual expiry, and the first answer of a server back from an outage:
        # re-list at once, whatever the outage cost. Only 410s in a row wait.
        first_gone = cause == "gone" and self._last_cause != "gone"
        self._last_cause = cause
        delay = self._backoff.next_delay(retry_after(error))
        if cause == "gone":
            self._version = None
            if first_gone:
                self._backoff.reset()
                self._backoff.failures = 1  # a 410 right after the re-list waits 1 s
                delay = 0.0
        self._on_restart(cause)
        log.warning(
            "stream restarts",
            stream=self._name,
            cause=cause,
            delay_seconds=round(delay, 3),
            error=str(error) or type(error).__name__,
            traceback=_short_traceback(error) if cause == "unexpected" else None,
        )
        if delay > 0:
            await self._policy.sleep(delay)


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
