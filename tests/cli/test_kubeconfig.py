"""Which kubeconfig, context and namespace: kubectl's rules, and the errors a user meets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from podtrail.cli import api
from podtrail.cli.kubeconfig import Choice, KubeconfigError, choose, config_files


def _config(current: str | None, *contexts: tuple[str, str | None], server: str = "") -> dict:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server or "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {
                "name": name,
                "context": {"cluster": "c", "user": "u", **({"namespace": ns} if ns else {})},
            }
            for name, ns in contexts
        ],
    }
    if current:
        doc["current-context"] = current
    return doc


def test_the_current_context_and_its_namespace() -> None:
    doc = _config("dev", ("dev", "shop"), ("prod", None))
    assert choose([("a", doc)], None) == Choice(("a",), "dev", "shop")
    assert choose([("a", doc)], "prod") == Choice(("a",), "prod", "default")


def test_several_files_the_first_current_context_and_definition_win() -> None:
    first = _config(None, ("dev", "first"))
    second = _config("dev", ("dev", "second"), ("other", "x"))
    third = _config("other")
    assert choose([("1", first), ("2", second), ("3", third)], None) == Choice(
        ("1", "2", "3"), "dev", "first"
    )


def test_no_context() -> None:
    with pytest.raises(KubeconfigError, match="no current context"):
        choose([("a", _config(None, ("dev", None)))], None)
    with pytest.raises(KubeconfigError, match="context 'nope' is not defined"):
        choose([("a", _config("dev", ("dev", None)))], "nope")


def test_which_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    default = home / ".kube" / "config"
    default.write_text("{}")
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text("{}")
    assert config_files(None, {}, str(home)) == [str(default)]
    env = {"KUBECONFIG": os.pathsep.join([str(one), str(tmp_path / "missing"), str(two)])}
    assert config_files(None, env, str(home)) == [str(one)]
    assert config_files(str(two), env, str(home)) == [str(two)], "--kubeconfig wins, as given"
    default.unlink()
    assert config_files(None, {}, str(home)) == []


async def test_connect_takes_the_context_s_namespace(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(_config("dev", ("dev", "shop"), ("kind", "tests"))))
    cluster = await api.connect(str(path), None, 5, {})
    try:
        assert (cluster.namespace, cluster.context) == ("shop", "dev")
    finally:
        await cluster.close()
    cluster = await api.connect(None, "kind", 5, {"KUBECONFIG": str(path)})
    try:
        assert (cluster.namespace, cluster.context) == ("tests", "kind")
    finally:
        await cluster.close()


async def test_connect_without_a_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(api.CliError, match="no kubeconfig found"):
        await api.connect(None, None, 5, {"KUBECONFIG": str(tmp_path / "missing")})
    broken = tmp_path / "broken"
    broken.write_text("clusters: [")
    with pytest.raises(api.CliError, match="kubeconfig: "):
        await api.connect(str(broken), None, 5, {})


async def test_an_unreachable_api_server(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(_config("dev", ("dev", None), server="http://127.0.0.1:9")))
    cluster = await api.connect(str(path), None, 5, {})
    try:
        with pytest.raises(api.CliError, match="cannot reach the API server at http://127.0.0.1:9"):
            await api.get_record(cluster, "default", "web")
    finally:
        await cluster.close()


def _refusal(status: int, body: str, reason: str = "") -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = body
    return error


def test_api_refusals_say_what_to_do() -> None:
    missing = _refusal(
        404,
        '{"kind":"Status","reason":"NotFound","message":"podlifecyclerecords.podtrail.io \\"x\\"'
        ' not found","details":{"name":"x","group":"podtrail.io","kind":"podlifecyclerecords"}}',
    )
    assert isinstance(api.translate(missing, "get", None), api.RecordMissingError)
    no_crd = api.translate(_refusal(404, "404 page not found\n"), "get", None)
    assert not isinstance(no_crd, api.RecordMissingError)
    assert "podtrail is not installed on this cluster" in str(no_crd)
    forbidden = api.translate(
        _refusal(
            403, '{"kind":"Status","reason":"Forbidden","message":"user \\"bob\\" cannot list"}'
        ),
        "list podlifecyclerecords.podtrail.io in namespace shop",
        "dev",
    )
    assert str(forbidden) == (
        "forbidden: RBAC does not allow you to list podlifecyclerecords.podtrail.io in namespace "
        'shop: user "bob" cannot list (ask for get and list on podlifecyclerecords.podtrail.io)'
    )
    assert "refused the credentials of context 'dev'" in str(
        api.translate(_refusal(401, ""), "get", "dev")
    )
    assert "answered 500 boom" in str(api.translate(_refusal(500, "x", "boom"), "get", None))
