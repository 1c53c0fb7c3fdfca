"""The tests' one API client, on kubernetes_asyncio, for every suite that needs a cluster.

Independent of the operator's code on purpose. ``Kube`` holds one ``ApiClient`` (from a
kubeconfig file: the ``kube_cluster`` fixture's) and what the suites share: uniquely named
namespaces (deleted afterwards), server-side apply of manifest dicts, pods created, read,
deleted and waited for, their events and logs, PodLifecycleRecords read and waited for, and
polling waits with a timeout that say what they waited for and what they last saw.

Pods come back as the API's JSON (plain dicts, camelCase keys), as records do; a client made with
``models=True`` returns them as kubernetes_asyncio models (V1Pod) instead, for the tests that
read them that way. The predicates below take either form.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

from tests.support.records import GROUP, PLURAL, VERSION, Obj, describe

T = TypeVar("T")
FIELD_MANAGER = "podtrail-tests"
TEST_LABEL = "podtrail.io/test"


class WaitTimeout(AssertionError):
    """A wait ran out of time; the message says what was awaited and what was last seen."""


async def wait_for(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    describe: Callable[[], Awaitable[str]] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy; return that or raise WaitTimeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f"\nlast seen: {await describe()}" if describe is not None else ""
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}{detail}")
        await asyncio.sleep(interval)


async def _wait_read(
    read: Callable[[], Awaitable[Any]],
    predicate: Callable[[Any], bool],
    shown: Callable[[Any], str],
    *,
    timeout: float,
    what: str,
    interval: float,
) -> Any:
    """Read an object (None: not there) until ``predicate`` holds for it; return it. A timeout
    says how the last one read looked (``shown``)."""
    last: list[Any] = [None]

    async def probe() -> Any:
        current = await read()
        last[0] = current
        return current if current is not None and predicate(current) else None

    async def describe_last() -> str:
        return shown(last[0])

    return await wait_for(
        probe, timeout=timeout, what=what, interval=interval, describe=describe_last
    )


class Kube:
    """One API connection and the helpers the cluster tests share (see the module's docstring)."""

    def __init__(self, api: client.ApiClient, *, models: bool = False) -> None:
        self.api = api
        self.models = models
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.scheduling = client.SchedulingV1Api(api)
        self._dynamic: DynamicClient | None = None

    @classmethod
    async def connect(cls, kubeconfig: str, *, models: bool = False) -> Kube:
        """Build a client from a kubeconfig file (its current context)."""
        configuration = client.Configuration()
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return cls(client.ApiClient(configuration), models=models)

    @classmethod
    @asynccontextmanager
    async def opened(cls, kubeconfig: str, *, models: bool = False) -> AsyncIterator[Kube]:
        """A client for the block (a fixture's lifetime), closed when it ends."""
        kube = await cls.connect(kubeconfig, models=models)
        try:
            yield kube
        finally:
            await kube.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.api.close()

    def plain(self, obj: Any) -> Obj:
        """A client model as the API's JSON (camelCase keys)."""
        data: Obj = self.api.sanitize_for_serialization(obj)
        return data

    async def _json(self, pending: Awaitable[Any]) -> Obj:
        """The JSON of a call made with ``_preload_content=False``; ApiException unless 2xx."""
        response = await pending
        try:
            payload = await response.read()
        finally:
            response.release()
        if not 200 <= response.status <= 299:  # raw responses are not checked by the client
            error = ApiException(status=response.status, reason=response.reason)
            error.body = payload
            raise error
        data: Obj = json.loads(payload)
        return data

    # --- namespaces ----------------------------------------------------------------------------

    async def create_namespace(
        self,
        prefix: str,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> str:
        """Create a uniquely named namespace and wait until pods can be created in it."""
        name = f"{prefix}-{secrets.token_hex(3)}"
        meta: Obj = {"name": name, "labels": {TEST_LABEL: "true", **(labels or {})}}
        if annotations:
            meta["annotations"] = dict(annotations)
        body: Any = {
            "metadata": meta
        }  # a dict: the client takes one where its types say V1Namespace
        await self.core.create_namespace(body)

        async def has_default_sa() -> bool:
            try:
                await self.core.read_namespaced_service_account("default", name)
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        await wait_for(has_default_sa, timeout=60, what=f"the default ServiceAccount in {name}")
        return name

    async def delete_namespace(self, name: str, wait: bool = False, timeout: float = 120) -> None:
        """Delete a namespace (and everything in it); optionally wait until it is gone."""
        try:
            await self.core.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
        if wait:
            await wait_for(
                lambda: self._gone(self.core.read_namespace(name)),
                timeout=timeout,
                what=f"namespace {name} to be deleted",
                interval=1,
            )

    def namespace(
        self,
        prefix: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        wait_deleted: bool = False,
    ) -> NewNamespace:
        """A fresh namespace: ``await`` it for its name (the caller deletes it), or use it as
        ``async with kube.namespace(...) as name`` to have it deleted when the block ends."""
        return NewNamespace(self, prefix, labels, annotations, wait_deleted)

    # --- objects -------------------------------------------------------------------------------

    async def apply(self, manifest: dict[str, Any], namespace: str | None = None) -> Any:
        """Server-side apply one object given as a dict; returns the object as stored."""
        if self._dynamic is None:
            self._dynamic = await DynamicClient(self.api)
        resource = await self._dynamic.resources.get(
            api_version=manifest["apiVersion"], kind=manifest["kind"]
        )
        return await self._dynamic.server_side_apply(
            resource,
            body=manifest,
            namespace=namespace if resource.namespaced else None,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )

    # --- pods ----------------------------------------------------------------------------------

    async def create_pod(self, namespace: str, body: Obj) -> Any:
        """Create a pod from a manifest dict; returns it as stored."""
        manifest: Any = body  # a dict: the client takes one for a V1Pod
        if self.models:
            return await self.core.create_namespaced_pod(namespace, manifest)
        return await self._json(
            self.core.create_namespaced_pod(namespace, manifest, _preload_content=False)
        )

    async def read_pod(self, namespace: str, name: str) -> Any:
        """The pod as the API has it now (a dict, or a V1Pod with ``models``); None when gone."""
        try:
            if self.models:
                return await self.core.read_namespaced_pod(name, namespace)
            return await self._json(
                self.core.read_namespaced_pod(name, namespace, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def pods(self, namespace: str) -> list[Obj]:
        """Every pod of a namespace, as dicts."""
        listing = await self._json(self.core.list_namespaced_pod(namespace, _preload_content=False))
        return list(listing.get("items") or [])

    async def wait_pod(
        self,
        namespace: str,
        name: str,
        predicate: Callable[[Any], bool],
        *,
        timeout: float = 90,
        what: str = "the condition",
        interval: float = 0.25,
    ) -> Any:
        """Poll the pod until ``predicate(pod)`` holds; return that pod."""

        def shown(current: Any) -> str:
            if current is None:
                return "no such pod"
            status = _field(current, "status") or {}
            return (
                f"phase={_field(status, 'phase')} conditions={_field(status, 'conditions')} "
                f"containers={_field(status, 'containerStatuses')}"
            )

        return await _wait_read(
            lambda: self.read_pod(namespace, name),
            predicate,
            shown,
            timeout=timeout,
            what=f"pod {namespace}/{name}: {what}",
            interval=interval,
        )

    async def delete_pod(self, namespace: str, name: str, grace: int | None = None) -> Any:
        """Delete a pod (with the given grace period, else its own); returns the API's answer."""
        options: dict[str, Any] = {}
        if grace is not None:
            options["body"] = client.V1DeleteOptions(grace_period_seconds=grace)
        return await self.core.delete_namespaced_pod(name, namespace, **options)

    async def wait_pod_gone(self, namespace: str, name: str, timeout: float = 120) -> None:
        """Wait until the pod object no longer exists."""
        await wait_for(
            lambda: self._gone(self.core.read_namespaced_pod(name, namespace)),
            timeout=timeout,
            what=f"pod {namespace}/{name} to be gone",
            interval=0.5,
        )

    async def remove_finalizers(self, namespace: str, name: str) -> None:
        """Drop every finalizer of a pod (tests use one to read a deleted pod's last status)."""
        try:
            await self.core.patch_namespaced_pod(
                name, namespace, [{"op": "replace", "path": "/metadata/finalizers", "value": []}]
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def pod_events(self, namespace: str, name: str) -> list[client.CoreV1Event]:
        """The core/v1 Events about one pod, oldest first."""
        events = await self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind=Pod,involvedObject.name={name}"
        )
        return sorted(events.items, key=_event_time)

    async def pod_log(self, namespace: str, name: str, container: str | None = None) -> str:
        """A container's log (the pod's only container when none is named)."""
        options: dict[str, Any] = {} if container is None else {"container": container}
        result: str = await self.core.read_namespaced_pod_log(name, namespace, **options)
        return result

    # --- records -------------------------------------------------------------------------------

    async def record(self, namespace: str, name: str) -> Obj | None:
        """The PodLifecycleRecord of that name, or None."""
        try:
            return await self._json(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
                )
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def _record_pages(
        self, namespace: str, label_selector: str | None, limit: int
    ) -> AsyncIterator[list[Obj]]:
        token = ""
        while True:
            page = await self._json(
                self.custom.list_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    label_selector=label_selector or "",
                    limit=limit,
                    _continue=token,
                    _preload_content=False,
                )
            )
            yield list(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    async def records(self, namespace: str, label_selector: str | None = None) -> list[Obj]:
        """Every record of a namespace (with the labels selected), a page at a time."""
        return [
            item
            async for page in self._record_pages(namespace, label_selector, 500)
            for item in page
        ]

    async def record_count(self, namespace: str) -> int:
        """How many records a namespace holds."""
        return sum([len(page) async for page in self._record_pages(namespace, None, 5000)])

    async def wait_record(
        self,
        namespace: str,
        name: str,
        condition: Callable[[Obj], bool],
        *,
        timeout: float = 90,
        what: str = "the record to match",
        interval: float = 0.5,
    ) -> Obj:
        """Poll the record until ``condition(record)`` holds; return that record."""

        found: Obj = await _wait_read(
            lambda: self.record(namespace, name),
            condition,
            describe,
            timeout=timeout,
            what=f"record {namespace}/{name}: {what}",
            interval=interval,
        )
        return found

    @staticmethod
    async def _gone(call: Awaitable[Any]) -> bool:
        try:
            await call
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False


@dataclass
class NewNamespace:
    """What ``Kube.namespace`` returns: awaitable (the new namespace's name) and an async
    context manager (the name; the namespace deleted when the block ends)."""

    kube: Kube
    prefix: str
    labels: Mapping[str, str] | None
    annotations: Mapping[str, str] | None
    wait_deleted: bool
    name: str | None = None

    async def create(self) -> str:
        """Create it (once); its name."""
        if self.name is None:
            self.name = await self.kube.create_namespace(self.prefix, self.labels, self.annotations)
        return self.name

    def __await__(self) -> Generator[Any, None, str]:
        return self.create().__await__()

    async def __aenter__(self) -> str:
        return await self.create()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.name is not None:
            await self.kube.delete_namespace(self.name, wait=self.wait_deleted)


# --- predicates and readers over a pod: a dict (the API's JSON) or a V1Pod -----------------------


def _field(obj: Any, name: str) -> Any:
    """A field of a pod or a part of it, by its JSON (camelCase) name, in either form."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower(), None)


def pod_phase(*phases: str) -> Callable[[Any], bool]:
    """A predicate: the pod is in one of the phases."""
    return lambda pod: _field(_field(pod, "status"), "phase") in phases


def pod_running(pod: Any) -> bool:
    """The pod's phase is Running."""
    return bool(_field(_field(pod, "status"), "phase") == "Running")


def pod_ready(pod: Any) -> bool:
    """The pod's Ready condition is True."""
    conditions = _field(_field(pod, "status"), "conditions") or []
    return any(_field(c, "type") == "Ready" and _field(c, "status") == "True" for c in conditions)


def container_status(pod: Any, name: str, init: bool = False) -> Any:
    """The status of one (init) container, or None when it has none yet."""
    field = "initContainerStatuses" if init else "containerStatuses"
    statuses = _field(_field(pod, "status"), field) or []
    return next((s for s in statuses if _field(s, "name") == name), None)


def container_terminated(name: str) -> Callable[[Any], bool]:
    """A predicate: the container's current state is terminated."""

    def check(pod: Any) -> bool:
        return bool(_field(_field(container_status(pod, name), "state"), "terminated"))

    return check


def restarted(name: str, times: int = 1) -> Callable[[Any], bool]:
    """A predicate: the container has been restarted at least ``times`` times."""

    def check(pod: Any) -> bool:
        status = container_status(pod, name)
        return status is not None and (_field(status, "restartCount") or 0) >= times

    return check


def _event_time(event: client.CoreV1Event) -> datetime:
    stamp: datetime | None = event.last_timestamp or event.event_time or event.first_timestamp
    if stamp is None:
        return datetime.min.replace(tzinfo=None)
    return stamp.replace(tzinfo=None)
