"""The CRD and the core cannot drift: rendered statuses validate against the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from podtrail import core
from podtrail.core.facts import FactType
from podtrail.core.termination import Outcome

from .builders import at
from .scenarios import SCENARIOS, play

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "podtrail.io_podlifecyclerecords.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(CRD_PATH.read_text()) if d]
    assert len(documents) == 1
    document: dict[str, Any] = documents[0]
    return document


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    versions: list[dict[str, Any]] = crd["spec"]["versions"]
    assert [v["name"] for v in versions] == ["v1alpha1"]
    return versions[0]


@pytest.fixture(scope="module")
def schema(version: dict[str, Any]) -> dict[str, Any]:
    root: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return root


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _walk(child, f"{path}.{name}")
    if "items" in node:
        found += _walk(node["items"], f"{path}[]")
    return found


def test_names_and_scope(crd: dict[str, Any], version: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "podlifecyclerecords.podtrail.io"
    assert spec["group"] == "podtrail.io" and spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "PodLifecycleRecord",
        "listKind": "PodLifecycleRecordList",
        "plural": "podlifecyclerecords",
        "singular": "podlifecyclerecord",
        "shortNames": ["plr"],
        "categories": ["podtrail"],
    }
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Owner",
        "Node",
        "Phase",
        "Init",
        "Ready",
        "Restarts",
        "Outcome",
        "Ended",
        "Last Event",
        "Age",
    ]
    assert columns["Owner"] == ("string", ".status.summary.owner")
    assert columns["Node"] == ("string", ".status.nodeName")
    assert columns["Phase"] == ("string", ".status.summary.phase")
    assert columns["Ready"] == ("string", ".status.summary.ready")
    assert columns["Restarts"] == ("integer", ".status.summary.restarts")
    assert columns["Ended"] == ("date", ".status.times.deleted")
    assert columns["Last Event"] == ("string", ".status.lastEvent")
    assert columns["Age"] == ("date", ".metadata.creationTimestamp")
    wide = {c["name"] for c in version["additionalPrinterColumns"] if c.get("priority", 0) > 0}
    assert wide == {"Node", "Init", "Last Event"}  # `-o wide` only: the long or rarely needed


def test_printer_columns_point_into_the_schema(schema: dict[str, Any], version: dict[str, Any]):
    for column in version["additionalPrinterColumns"]:
        node = schema
        for part in column["jsonPath"].strip(".").split("."):
            if part == "metadata":
                break
            node = node["properties"][part]
        else:
            assert node["type"] in (column["type"], "string"), column


def test_selectable_fields_are_strings_in_the_schema(
    schema: dict[str, Any], version: dict[str, Any]
) -> None:
    paths = [field["jsonPath"] for field in version["selectableFields"]]
    assert paths == [".spec.podName", ".status.nodeName", ".status.outcome"]
    for path in paths:
        node = schema
        for part in path.strip(".").split("."):
            node = node["properties"][part]
        assert node["type"] == "string", path


def test_fields_of_records_written_before_are_still_in_the_schema(schema: dict[str, Any]) -> None:
    """The API server prunes unknown fields even when reading from etcd: a field an earlier
    version wrote and the operator still reads must stay in the schema."""
    status = schema["properties"]["status"]["properties"]
    assert "key" in status["timeline"]["items"]["properties"]
    assert "seenEvents" in status
    old = {"timeToSchedule", "init", "timeToReady", "termination"}
    assert old < set(status["durations"]["properties"])
    assert {"key", "count"}.isdisjoint(status["timeline"]["items"]["required"])


def test_every_field_is_described_and_bounded(schema: dict[str, Any]) -> None:
    for path, node in _walk(schema, "plr"):
        assert node.get("description"), f"{path} has no description"
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        if node.get("type") == "string":
            assert "maxLength" in node or "enum" in node, f"{path} has no maxLength"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path} has no maxItems"
        if node.get("type") == "object" and path not in ("plr.metadata",):
            assert "properties" in node, f"{path} is not structural"


def test_cel_rule_names_the_record_like_its_pod(schema: dict[str, Any]) -> None:
    assert schema["x-kubernetes-validations"] == [
        {
            "rule": "self.metadata.name == self.spec.podName",
            "message": "metadata.name must equal spec.podName: "
            "a record is named like the pod it follows",
        }
    ]


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        ({"podName": "web-0"}, True),
        ({"podName": "web-0", "ttlSecondsAfterPodDeletion": 3600}, True),
        ({"podName": "Web_0"}, False),
        ({"podName": "web-0", "ttlSecondsAfterPodDeletion": -1}, False),
        ({"podName": "web-0", "ttlSecondsAfterPodDeletion": 31536001}, False),
        ({}, False),
    ],
)
def test_spec_validation(schema: dict[str, Any], spec: dict[str, Any], valid: bool) -> None:
    validator = jsonschema.Draft7Validator(schema["properties"]["spec"])
    assert validator.is_valid(spec) is valid


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_rendered_statuses_validate(schema: dict[str, Any], name: str) -> None:
    validator = jsonschema.Draft7Validator(
        schema["properties"]["status"], format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    status: dict[str, Any] | None = None
    for index, observation in enumerate(SCENARIOS[name]()):
        status = core.advance(status, observation, now=at(1000 + index)).status
        errors = sorted(validator.iter_errors(status), key=str)
        assert not errors, f"step {index}: {errors[0]}"
        json.dumps(status)


def test_timeline_types_and_outcomes_are_documented(schema: dict[str, Any]) -> None:
    status = schema["properties"]["status"]["properties"]
    type_doc = status["timeline"]["items"]["properties"]["type"]["description"]
    for fact_type in FactType:
        assert fact_type.value in type_doc, fact_type
    for outcome in Outcome:
        assert outcome.value in status["outcome"]["description"], outcome


def test_final_statuses_are_small() -> None:
    for name, steps in SCENARIOS.items():
        status, _ = play(steps())
        assert len(json.dumps(status)) < 32 * 1024, name
