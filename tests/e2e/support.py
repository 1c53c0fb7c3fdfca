"""What the end-to-end scenarios share: an API client, pod builders, waits on records."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from tests.support.images import TESTBOX as TESTBOX  # the tests' image, one constant
from tests.support.images import pull_policy

GROUP, VERSION, PLURAL = "podtrail.io", "v1alpha1", "podlifecyclerecords"

Obj = dict[str, Any]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def container(
    name: str,
    script: str,
    *,
    image: str = TESTBOX,
    **extra: Any,
) -> Obj:
    """A container running a shell script in the test image (loaded: never pulled)."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy(image),
        "command": ["sh", "-c", script],
        **extra,
    }


def pod(
    name: str,
    *containers: Obj,
    init: Iterable[Obj] = (),
    grace: int | None = None,
    restart: str = "Always",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    **spec: Any,
) -> Obj:
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {"app": name})},
        "spec": {
            "containers": list(containers),
            "restartPolicy": restart,
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            **spec,
        },
    }
    if annotations:
        body["metadata"]["annotations"] = dict(annotations)
    if init:
        body["spec"]["initContainers"] = list(init)
    if grace is not None:
        body["spec"]["terminationGracePeriodSeconds"] = grace
    return body


def entries(record: Obj, kind: str, container_name: str | None = None) -> list[Obj]:
    """The record's timeline entries of one type (and container)."""
    return [
        entry
        for entry in (record.get("status") or {}).get("timeline") or []
        if entry.get("type") == kind
        and (container_name is None or entry.get("container") == container_name)
    ]


def entry(record: Obj, kind: str, container_name: str | None = None) -> Obj:
    found = entries(record, kind, container_name)
    assert found, f"no {kind} entry in {describe(record)}"
    return found[-1]


def timeline_keys(record: Obj | None) -> list[str]:
    """The keys of the record's timeline entries, in order: status.tracking.timelineKeys (at the
    entries' indexes), or the entries' own "key" in records written before the keys moved."""
    status = (record or {}).get("status") or {}
    keys = (status.get("tracking") or {}).get("timelineKeys")
    if keys is None:
        keys = [entry.get("key") for entry in status.get("timeline") or []]
    return [str(key) for key in keys]


def describe(record: Obj | None) -> str:
    """A record's timeline as lines, for failure messages."""
    if record is None:
        return "<no record>"
    status = record.get("status") or {}
    lines = [f"outcome={status.get('outcome')} phase={status.get('phase')}"]
    for item in status.get("timeline") or []:
        lines.append(
            f"  {item.get('time')} {item.get('type')} [{item.get('container', '')}] "
            f"{item.get('summary')}"
        )
    return "\n".join(lines)


def status_of(record: Obj) -> Obj:
    status: Obj = record.get("status") or {}
    return status


def has_outcome(*outcomes: str) -> Callable[[Obj], bool]:
    return lambda record: status_of(record).get("outcome") in outcomes


def has_phase(phase: str) -> Callable[[Obj], bool]:
    return lambda record: status_of(record).get("phase") == phase


def has_entry(kind: str, container_name: str | None = None) -> Callable[[Obj], bool]:
    return lambda record: bool(entries(record, kind, container_name))


class Kube:
    """The e2e tests' own API client (plain dicts), independent of the operator's code."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.scheduling = client.SchedulingV1Api(api)

    async def _json(self, pending: Any) -> Obj:
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

    async def namespace(self, prefix: str, annotations: Mapping[str, str] | None = None) -> str:
        name = f"e2e-{prefix}-{uuid.uuid4().hex[:6]}"
        meta: Obj = {"name": name, "labels": {"podtrail.io/e2e": "true"}}
        if annotations:
            meta["annotations"] = dict(annotations)
        body: Any = {"metadata": meta}  # a dict: the client takes one for a V1Namespace
        await self.core.create_namespace(body)
        for _ in range(60):  # pods can be created once the default ServiceAccount exists
            try:
                await self.core.read_namespaced_service_account("default", name)
                break
            except ApiException:
                await asyncio.sleep(0.5)
        return name

    async def create_pod(self, namespace: str, body: Obj) -> Obj:
        manifest: Any = body  # a dict: the client takes one for a V1Pod
        return await self._json(
            self.core.create_namespaced_pod(namespace, manifest, _preload_content=False)
        )

    async def read_pod(self, namespace: str, name: str) -> Obj | None:
        try:
            return await self._json(
                self.core.read_namespaced_pod(name, namespace, _preload_content=False)
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def delete_pod(self, namespace: str, name: str, grace: int | None = None) -> None:
        options: dict[str, Any] = {}
        if grace is not None:
            options["body"] = client.V1DeleteOptions(grace_period_seconds=grace)
        await self.core.delete_namespaced_pod(name, namespace, **options)

    async def record(self, namespace: str, name: str) -> Obj | None:
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

    async def records(self, namespace: str, label_selector: str | None = None) -> list[Obj]:
        listing = await self._json(
            self.custom.list_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                label_selector=label_selector or "",
                _preload_content=False,
            )
        )
        return list(listing.get("items") or [])

    async def wait_record(
        self,
        namespace: str,
        name: str,
        condition: Callable[[Obj], bool],
        *,
        timeout: float = 90,
        what: str = "the record to match",
    ) -> Obj:
        deadline = time.monotonic() + timeout
        record: Obj | None = None
        while time.monotonic() < deadline:
            record = await self.record(namespace, name)
            if record is not None and condition(record):
                return record
            await asyncio.sleep(0.5)
        raise AssertionError(
            f"{namespace}/{name}: timed out waiting for {what}\n{describe(record)}"
        )

    async def wait_pod(
        self,
        namespace: str,
        name: str,
        condition: Callable[[Obj], bool],
        *,
        timeout: float = 90,
        what: str = "the pod to match",
    ) -> Obj:
        deadline = time.monotonic() + timeout
        current: Obj | None = None
        while time.monotonic() < deadline:
            current = await self.read_pod(namespace, name)
            if current is not None and condition(current):
                return current
            await asyncio.sleep(0.5)
        raise AssertionError(f"{namespace}/{name}: timed out waiting for {what}: {current}")

    async def wait_pod_gone(self, namespace: str, name: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.read_pod(namespace, name) is None:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{namespace}/{name}: pod still present after {timeout} s")


def pod_running(current: Obj) -> bool:
    return (current.get("status") or {}).get("phase") == "Running"


def pod_ready(current: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (current.get("status") or {}).get("conditions") or []
    )
