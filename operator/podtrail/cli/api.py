"""The plugin's only contact with the cluster: reading records (and a pod) with kubernetes_asyncio.

Every failure a user can meet becomes a `CliError` that says what to do: no kubeconfig, an
unreachable API server, refused credentials, RBAC, podtrail not installed, no such record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from podtrail.cli.kubeconfig import KubeconfigError, choose, config_files

GROUP = "podtrail.io"
VERSION = "v1alpha1"
PLURAL = "podlifecyclerecords"
RESOURCE = f"{PLURAL}.{GROUP}"
_PAGE = 500
_SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

Raw = dict[str, Any]


class CliError(Exception):
    """A failure to report in one message (exit status 1)."""


class RecordMissingError(CliError):
    """The record does not exist (podtrail itself is installed)."""


@dataclass
class Cluster:
    """An API client and the namespace commands default to."""

    api: client.ApiClient
    namespace: str
    context: str | None
    timeout: float

    async def close(self) -> None:
        """Release the HTTP session."""
        await self.api.close()


async def connect(
    kubeconfig: str | None, context: str | None, timeout: float, environ: Mapping[str, str]
) -> Cluster:
    """A client for the kubeconfig and context kubectl would use.

    In a pod without a kubeconfig: the pod's ServiceAccount.
    """
    configuration = client.Configuration()
    files = config_files(kubeconfig, environ, os.path.expanduser("~"))
    if not files:
        return _in_cluster(configuration, kubeconfig, timeout, environ)
    try:
        choice = choose([(path, _read(path)) for path in files], context)
        await config.load_kube_config(
            config_file=os.pathsep.join(choice.files),
            context=choice.context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (KubeconfigError, ConfigException, OSError, yaml.YAMLError) as error:
        raise CliError(f"kubeconfig: {error}") from None
    return Cluster(client.ApiClient(configuration), choice.namespace, choice.context, timeout)


def _read(path: str) -> Mapping[str, Any]:
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    return document if isinstance(document, Mapping) else {}


def _in_cluster(
    configuration: client.Configuration,
    kubeconfig: str | None,
    timeout: float,
    environ: Mapping[str, str],
) -> Cluster:
    if kubeconfig or not environ.get("KUBERNETES_SERVICE_HOST"):
        where = kubeconfig or environ.get("KUBECONFIG") or "~/.kube/config"
        raise CliError(f"no kubeconfig found ({where}): use --kubeconfig or set KUBECONFIG")
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        with open(_SERVICE_ACCOUNT, encoding="utf-8") as handle:
            namespace = handle.read().strip() or "default"
    except (ConfigException, OSError) as error:
        raise CliError(f"no kubeconfig, and no usable in-cluster credentials: {error}") from None
    return Cluster(client.ApiClient(configuration), namespace, None, timeout)


def _message(error: ApiException) -> tuple[str, Raw]:
    raw: object = error.body
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip(), {}
    if not isinstance(body, dict):
        return text.strip(), {}
    return str(body.get("message") or text).strip(), body


def translate(error: ApiException, what: str, cluster_context: str | None) -> CliError:
    """A CliError that says why the API refused `what` (e.g. "get podlifecyclerecords ...")."""
    message, body = _message(error)
    if error.status == 404:
        details = body.get("details") if isinstance(body.get("details"), dict) else None
        if body.get("reason") == "NotFound" and details and details.get("name"):
            return RecordMissingError(message)
        return CliError(
            f"podtrail is not installed on this cluster: the API server serves no {RESOURCE} "
            "(install its CRD and operator: see docs/install.md)"
        )
    if error.status == 403:
        return CliError(
            f"forbidden: RBAC does not allow you to {what}: {message} "
            f"(ask for get and list on {RESOURCE})"
        )
    if error.status == 401:
        context = f" of context {cluster_context!r}" if cluster_context else ""
        return CliError(f"unauthorized: the API server refused the credentials{context}")
    return CliError(f"the API server answered {error.status} {error.reason} to {what}: {message}")


def _unreachable(cluster: Cluster, error: BaseException) -> CliError:
    host = cluster.api.configuration.host
    detail = str(error) or type(error).__name__
    return CliError(f"cannot reach the API server at {host}: {detail}")


async def _call(cluster: Cluster, what: str, call: Any, *args: Any, **kwargs: Any) -> Raw:
    try:
        result = await call(*args, _request_timeout=cluster.timeout, **kwargs)
    except ApiException as error:
        raise translate(error, what, cluster.context) from None
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise _unreachable(cluster, error) from None
    if not isinstance(result, dict):
        raise CliError(f"the API server answered {what} with something other than an object")
    return result


async def get_record(cluster: Cluster, namespace: str, name: str) -> Raw:
    """One record.

    Raises:
        RecordMissingError: there is no such record.
        CliError: anything else that prevents reading it.
    """
    custom = client.CustomObjectsApi(cluster.api)
    return await _call(
        cluster,
        f"get {RESOURCE} in namespace {namespace}",
        custom.get_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
    )


async def list_records(
    cluster: Cluster,
    namespace: str | None,
    *,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> list[Raw]:
    """Every record of a namespace (or of all with None), a page at a time."""
    custom = client.CustomObjectsApi(cluster.api)
    where = f"in namespace {namespace}" if namespace else "at the cluster scope (-A)"
    items: list[Raw] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"limit": _PAGE}
        if token:
            kwargs["_continue"] = token
        if label_selector:
            kwargs["label_selector"] = label_selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        if namespace:
            call: Any = custom.list_namespaced_custom_object
            args: tuple[Any, ...] = (GROUP, VERSION, namespace, PLURAL)
        else:
            call, args = custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        page = await _call(cluster, f"list {RESOURCE} {where}", call, *args, **kwargs)
        items.extend(item for item in page.get("items") or [] if isinstance(item, dict))
        token = (page.get("metadata") or {}).get("continue") or None
        if not token:
            return items


async def pod_exists(cluster: Cluster, namespace: str, name: str) -> bool | None:
    """Whether the pod exists (None when that cannot be told, e.g. RBAC forbids reading it)."""
    core = client.CoreV1Api(cluster.api)
    try:
        await core.read_namespaced_pod(name, namespace, _request_timeout=cluster.timeout)
    except ApiException as error:
        return False if error.status == 404 else None
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
    return True
