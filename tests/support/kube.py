"""Async helpers for tests against a real cluster, on kubernetes_asyncio.

Generic on purpose: a uniquely named namespace per scenario (deleted afterwards), server-side
apply of manifest dicts, polling waits with a timeout that say what they waited for, and reads
of pods, their events and logs. Every call goes through one ``ApiClient`` built from a
kubeconfig file (the ``kube_cluster`` fixture's).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

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


class Kube:
    """One API connection and the helpers the cluster tests share."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self._dynamic: DynamicClient | None = None

    @classmethod
    async def connect(cls, kubeconfig: str) -> Kube:
        """Build a client from a kubeconfig file (its current context)."""
        configuration = client.Configuration()
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return cls(client.ApiClient(configuration))

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.api.close()

    # --- namespaces ----------------------------------------------------------------------------

    async def create_namespace(self, prefix: str, labels: dict[str, str] | None = None) -> str:
        """Create a uniquely named namespace and wait until pods can be created in it."""
        name = f"{prefix}-{secrets.token_hex(3)}"
        body: Any = {  # a dict: the client takes one where its types say V1Namespace
            "metadata": {"name": name, "labels": {TEST_LABEL: "true", **(labels or {})}},
        }
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

    @asynccontextmanager
    async def namespace(self, prefix: str, wait_deleted: bool = False) -> AsyncIterator[str]:
        """A fresh namespace for the block; deleted when the block ends."""
        name = await self.create_namespace(prefix)
        try:
            yield name
        finally:
            await self.delete_namespace(name, wait=wait_deleted)

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

    async def read_pod(self, namespace: str, name: str) -> client.V1Pod:
        """The pod as the API has it now."""
        return await self.core.read_namespaced_pod(name, namespace)

    async def wait_pod(
        self,
        namespace: str,
        name: str,
        predicate: Callable[[client.V1Pod], bool],
        *,
        timeout: float = 60,
        what: str = "the condition",
        interval: float = 0.25,
    ) -> client.V1Pod:
        """Poll the pod until ``predicate(pod)`` holds; return that pod."""
        last: list[client.V1Pod | None] = [None]

        async def probe() -> client.V1Pod | None:
            try:
                pod = await self.read_pod(namespace, name)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            last[0] = pod
            return pod if predicate(pod) else None

        async def describe() -> str:
            pod = last[0]
            if pod is None:
                return "no such pod"
            return f"phase={pod.status.phase} conditions={pod.status.conditions} " + (
                f"containers={pod.status.container_statuses}"
            )

        return await wait_for(
            probe,
            timeout=timeout,
            what=f"pod {namespace}/{name}: {what}",
            interval=interval,
            describe=describe,
        )

    async def delete_pod(self, namespace: str, name: str, grace: int | None = None) -> Any:
        """Delete a pod (with the given grace period, else its own); returns the API's answer."""
        options: dict[str, Any] = {} if grace is None else {"grace_period_seconds": grace}
        return await self.core.delete_namespaced_pod(name, namespace, **options)

    async def wait_pod_gone(self, namespace: str, name: str, timeout: float = 120) -> None:
        """Wait until the pod object no longer exists."""
        await wait_for(
            lambda: self._gone(self.read_pod(namespace, name)),
            timeout=timeout,
            what=f"pod {namespace}/{name} to be gone",
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

    @staticmethod
    async def _gone(call: Awaitable[Any]) -> bool:
        try:
            await call
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False


# --- predicates and readers over V1Pod ------------------------------------------------------------


def pod_phase(*phases: str) -> Callable[[client.V1Pod], bool]:
    """A predicate: the pod is in one of the phases."""
    return lambda pod: pod.status is not None and pod.status.phase in phases


def pod_ready(pod: client.V1Pod) -> bool:
    """The pod's Ready condition is True."""
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def container_status(pod: client.V1Pod, name: str, init: bool = False) -> Any:
    """The status of one (init) container, or None when it has none yet."""
    statuses = pod.status.init_container_statuses if init else pod.status.container_statuses
    return next((s for s in statuses or [] if s.name == name), None)


def container_terminated(name: str) -> Callable[[client.V1Pod], bool]:
    """A predicate: the container's current state is terminated."""

    def check(pod: client.V1Pod) -> bool:
        status = container_status(pod, name)
        return bool(status and status.state and status.state.terminated)

    return check


def restarted(name: str, times: int = 1) -> Callable[[client.V1Pod], bool]:
    """A predicate: the container has been restarted at least ``times`` times."""

    def check(pod: client.V1Pod) -> bool:
        status = container_status(pod, name)
        return status is not None and (status.restart_count or 0) >= times

    return check


def _event_time(event: client.CoreV1Event) -> datetime:
    stamp: datetime | None = event.last_timestamp or event.event_time or event.first_timestamp
    if stamp is None:
        return datetime.min.replace(tzinfo=None)
    return stamp.replace(tzinfo=None)
