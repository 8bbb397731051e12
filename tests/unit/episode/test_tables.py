"""The type grammar, fingerprints and stream-type files: a new type is a new file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from robolake.episode.chunks import encode_chunk, validate_chunk
from robolake.episode.errors import ContractError, ContractViolation
from robolake.episode.manifest import parse_manifest
from robolake.episode.schemas import schemas_dir
from robolake.episode.stream_types import StreamTypeRegistry
from robolake.episode.synthetic import SyntheticEpisode
from robolake.episode.tables import fingerprint, load_table_file, parse_table, parse_type


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("int64", pa.int64()),
        ("float32", pa.float32()),
        ("list<float32>", pa.list_(pa.float32())),
        ("large_list< string >", pa.large_list(pa.string())),
        ("fixed_size_list<float32, 4>", pa.list_(pa.float32(), 4)),
        ("dictionary<int32, string>", pa.dictionary(pa.int32(), pa.string())),
        ("timestamp[ns, UTC]", pa.timestamp("ns", tz="UTC")),
        ("timestamp[us]", pa.timestamp("us")),
        (
            "list<struct<name: string, rows: int64>>",
            pa.list_(pa.struct([("name", pa.string()), ("rows", pa.int64())])),
        ),
    ],
)
def test_parse_type(text: str, expected: pa.DataType) -> None:
    assert parse_type(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "float",
        "list<float32",
        "list<float32>>",
        "fixed_size_list<float32, 0>",
        "timestamp[h]",
        "",
        "struct<a int64>",
        "int64 $",
    ],
)
def test_parse_type_rejects(text: str) -> None:
    with pytest.raises(ContractError, match="cannot parse Arrow type"):
        parse_type(text)


def _doc(**changes: Any) -> dict[str, Any]:
    field = {"name": "t_ns", "type": "int64", "nullable": False, "description": "time"}
    document: dict[str, Any] = {
        "name": "thing",
        "version": 1,
        "description": "a thing",
        "fields": [field, {"name": "x", "type": "float32", "nullable": True, "description": "x"}],
    }
    document.update(changes)
    return document


def test_fingerprint_ignores_prose_but_not_structure() -> None:
    base = fingerprint(_doc())
    reworded = _doc(description="a thing, documented better")
    reworded["fields"][1]["description"] = "the x coordinate"
    assert fingerprint(reworded) == base
    spaced = _doc()
    spaced["fields"][1]["type"] = " float32 "
    assert fingerprint(spaced) == base
    retyped = _doc()
    retyped["fields"][1]["type"] = "float64"
    assert fingerprint(retyped) != base
    renullable = _doc()
    renullable["fields"][1]["nullable"] = False
    assert fingerprint(renullable) != base
    assert fingerprint(_doc(version=2)) != base
    assert len(base) == 16


def test_fingerprints_of_shipped_types_are_distinct(registry: StreamTypeRegistry) -> None:
    prints = [s.fingerprint for s in registry]
    assert len(set(prints)) == len(prints)
    for spec in registry:
        assert registry.by_fingerprint(spec.fingerprint) is spec


def test_table_file_must_match_meta_schema() -> None:
    with pytest.raises(ContractError, match="nullable"):
        parse_table({**_doc(), "fields": [{"name": "t_ns", "type": "int64", "description": "t"}]})
    with pytest.raises(ContractError, match="appears twice"):
        parse_table(_doc(fields=[_doc()["fields"][0], _doc()["fields"][0]]))
    bad_elements = _doc()
    bad_elements["fields"][1]["elements"] = True
    with pytest.raises(ContractError, match="not list"):
        parse_table(bad_elements)


def test_file_name_must_match_declared_version(tmp_path: Path) -> None:
    path = tmp_path / "thing.v2.json"
    path.write_text(json.dumps(_doc()))
    with pytest.raises(ContractError, match=r"rename the file to thing\.v1\.json"):
        load_table_file(path)


def test_stream_type_needs_t_ns_first(tmp_path: Path) -> None:
    document = _doc()
    document["fields"].reverse()
    (tmp_path / "thing.v1.json").write_text(json.dumps(document))
    with pytest.raises(ContractError, match="first field must be 't_ns'"):
        StreamTypeRegistry.load(tmp_path)


def test_unknown_type_version_is_a_violation(registry: StreamTypeRegistry) -> None:
    with pytest.raises(ContractViolation) as caught:
        registry.get("joint_state", 99)
    assert caught.value.reason == "unknown_stream_type"
    with pytest.raises(ContractViolation):
        registry.by_fingerprint("0" * 16)


def test_a_new_type_is_a_new_file(tmp_path: Path, episode: SyntheticEpisode) -> None:
    """Drop a gripper type into a copy of stream_types/: manifests and chunks work, no code."""
    directory = tmp_path / "stream_types"
    shutil.copytree(schemas_dir() / "stream_types", directory)
    gripper = {
        "name": "gripper",
        "version": 1,
        "description": "gripper opening",
        "fields": [
            {"name": "t_ns", "type": "int64", "nullable": False, "description": "time"},
            {
                "name": "opening",
                "type": "float32",
                "nullable": False,
                "unit": "m",
                "constraints": {"min": 0, "max": 0.2},
                "description": "finger distance",
            },
        ],
    }
    (directory / "gripper.v1.json").write_text(json.dumps(gripper))
    registry = StreamTypeRegistry.load(directory)
    document = dict(episode.manifest_document)
    document["streams"] = [
        *document["streams"],
        {"name": "left_gripper", "type": "gripper", "type_version": 1, "rate_hz": 50},
    ]
    manifest = parse_manifest(document, registry)
    gripper_type = registry.get("gripper", 1)
    start = manifest.started_at_ns
    rows = pa.table({"t_ns": [start, start + 20_000_000], "opening": [0.05, 0.08]})
    rows = rows.cast(
        pa.schema([pa.field("t_ns", pa.int64(), False), pa.field("opening", pa.float32(), False)])
    )
    valid = validate_chunk(encode_chunk(rows, gripper_type), manifest, "left_gripper")
    assert valid.num_rows == 2
    too_wide = rows.set_column(1, rows.schema.field(1), pa.array([0.05, 0.5], pa.float32()))
    with pytest.raises(ContractViolation) as caught:
        validate_chunk(encode_chunk(too_wide, gripper_type), manifest, "left_gripper")
    assert caught.value.reason == "value_not_allowed"
    assert caught.value.context["row"] == 1
