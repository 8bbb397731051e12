"""Every contract file loads, and the files agree with the code that implements them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from robolake.episode import records, topics
from robolake.episode.errors import REASONS, RETRIABLE_REASONS, ContractError
from robolake.episode.schemas import SCHEMAS_DIR_ENV, load_json, schemas_dir
from robolake.episode.shards import QUALITY_FLAGS, episodes_index
from robolake.episode.stream_types import StreamTypeRegistry, check_stream_type
from robolake.episode.tables import load_table_file

SCHEMAS = schemas_dir()
JSON_FILES = sorted(SCHEMAS.rglob("*.json"))
TABLE_FILES = sorted([*SCHEMAS.glob("stream_types/*.json"), *SCHEMAS.glob("tables/*.json")])


def test_schemas_dir_is_the_repository_schemas() -> None:
    assert (SCHEMAS / "manifest.v1.schema.json").is_file()
    assert SCHEMAS.name == "schemas"


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: str(p.relative_to(SCHEMAS)))
def test_every_json_file_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_bytes()), dict)


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.schema.json")), ids=lambda p: p.name)
def test_every_json_schema_is_valid_2020_12(path: Path) -> None:
    document = json.loads(path.read_bytes())
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)


@pytest.mark.parametrize("path", TABLE_FILES, ids=lambda p: str(p.relative_to(SCHEMAS)))
def test_every_table_file_loads(path: Path) -> None:
    spec = load_table_file(path)
    assert spec.schema.names == [f.name for f in spec.fields]
    if path.parent.name == "stream_types":
        check_stream_type(spec)


def test_registry_has_the_issue_types(registry: StreamTypeRegistry) -> None:
    keys = {s.key for s in registry}
    wanted = {"joint_state", "action", "imu", "pose", "image", "depth_image", "event"}
    assert {k.split(".v")[0] for k in keys} >= wanted
    assert len(keys) == len(TABLE_FILES) - len(list(SCHEMAS.glob("tables/*.json")))


def test_env_var_overrides_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "contract"
    shutil.copytree(SCHEMAS, copy)
    monkeypatch.setenv(SCHEMAS_DIR_ENV, str(copy))
    assert schemas_dir() == copy
    (copy / "complete.v1.schema.json").write_text("{not json")
    with pytest.raises(ContractError, match="not valid JSON"):
        load_json("complete.v1.schema.json")


def test_env_var_pointing_nowhere_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SCHEMAS_DIR_ENV, str(tmp_path))
    with pytest.raises(ContractError, match=SCHEMAS_DIR_ENV):
        schemas_dir()


def test_missing_file_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="missing"):
        load_json("no-such-file.json")


def test_validation_reasons_file_matches_code() -> None:
    document = load_json("validation-reasons.v1.json")
    assert tuple(r["reason"] for r in document["reasons"]) == REASONS
    assert {r["reason"] for r in document["reasons"] if r["retriable"]} == RETRIABLE_REASONS


def test_docs_list_every_reason_and_quality_flag() -> None:
    readme = (SCHEMAS / "README.md").read_text()
    shards = (SCHEMAS / "shards.md").read_text()
    assert [r for r in REASONS if f"`{r}`" not in readme] == []
    assert [f for f in QUALITY_FLAGS if f"`{f}`" not in shards] == []


def test_kafka_contract_file_matches_code() -> None:
    contract = load_json("kafka-records.v1.json")
    assert contract["topics"] == {
        "chunks": topics.CHUNK_TOPIC,
        "dead_letters": topics.DEAD_LETTER_TOPIC,
    }
    assert tuple(contract["kinds"]) == records.KINDS
    for kind in records.KINDS:
        of_kind = [h for h in contract["headers"] if kind in h["kinds"]]
        required = [h["name"] for h in of_kind if h.get("required", True)]
        optional = [h["name"] for h in of_kind if not h.get("required", True)]
        assert required == list(records.REQUIRED_HEADERS[kind]), kind
        assert optional == list(records.OPTIONAL_HEADERS), kind
    assert [h["name"] for h in contract["dead_letter_headers"]] == list(records.DEAD_LETTER_HEADERS)
    assert topics.MAX_RECORD_BYTES > topics.DEFAULT_MAX_CHUNK_BYTES


def test_kafka_markdown_names_every_header() -> None:
    text = (SCHEMAS / "kafka-records.md").read_text()
    names = [
        *records.REQUIRED_HEADERS["chunk"],
        *records.OPTIONAL_HEADERS,
        *records.DEAD_LETTER_HEADERS,
    ]
    assert [n for n in names if f"`{n}`" not in text] == []
    assert topics.CHUNK_TOPIC in text
    assert topics.DEAD_LETTER_TOPIC in text


def test_episodes_index_file_loads() -> None:
    spec = episodes_index()
    streams = [f.name for f in spec.schema.field("streams").type.value_type]
    assert streams == [
        "name", "type", "type_version", "fingerprint", "rows", "chunks",
        "first_t_ns", "last_t_ns", "declared_rows", "declared_chunks",
    ]  # fmt: skip
    # appended: older files lack them
    assert spec.schema.names[-2:] == ["organisation", "stored_bytes"]
    assert spec.schema.field("organisation").nullable


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(document: Any, pointer: str) -> Any:
    node = document
    for part in pointer.lstrip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_openapi_is_3_1_and_every_ref_resolves() -> None:
    api = load_json("collector.openapi.json")
    assert api["openapi"].startswith("3.1.")
    assert api["info"]["title"]
    assert api["info"]["version"]
    for ref in _refs(api):
        target, _, pointer = ref.partition("#")
        document = api if not target else load_json(target)
        _resolve(document, pointer)  # KeyError if dangling
    for path, item in api["paths"].items():
        for method in ("get", "put", "post", "delete", "patch"):
            if method in item:
                assert item[method]["responses"], f"{method} {path} has no responses"
    for schema in api["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_openapi_lists_the_validation_reasons() -> None:
    api = load_json("collector.openapi.json")
    assert tuple(api["components"]["schemas"]["ValidationReason"]["enum"]) == REASONS


def test_openapi_has_the_collector_operations() -> None:
    paths = load_json("collector.openapi.json")["paths"]
    assert "post" in paths["/v1/episodes"]
    assert "put" in paths["/v1/episodes/{episode_id}/streams/{stream}/chunks/{seq}"]
    assert "post" in paths["/v1/episodes/{episode_id}/complete"]
