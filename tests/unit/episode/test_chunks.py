"""The chunk wire format: good chunks pass, each kind of bad chunk fails with its reason."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from robolake.episode.chunks import (
    ChunkLimits,
    decode_chunk,
    encode_chunk,
    split_into_chunks,
    validate_chunk,
)
from robolake.episode.errors import ContractViolation, Reason
from robolake.episode.manifest import EpisodeManifest, parse_manifest
from robolake.episode.stream_types import StreamTypeRegistry
from robolake.episode.synthetic import SyntheticEpisode


def _rejects(
    data: bytes,
    manifest: EpisodeManifest,
    stream: str,
    reason: Reason,
    limits: ChunkLimits | None = None,
) -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        validate_chunk(data, manifest, stream, limits=limits or ChunkLimits())
    assert caught.value.reason == reason, caught.value.message
    assert caught.value.message
    return caught.value


def _ipc(table: pa.Table, options: pa.ipc.IpcWriteOptions | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _rows(episode: SyntheticEpisode, stream: str, n: int | None = None) -> pa.Table:
    table = episode.streams[stream]
    return table if n is None else table.slice(0, n)


def test_every_synthetic_chunk_validates(episode: SyntheticEpisode) -> None:
    seen = set()
    for stream, _seq, data in episode.iter_chunks():
        valid = validate_chunk(data, episode.manifest, stream)
        assert valid.num_rows > 0
        assert valid.first_t_ns <= valid.last_t_ns
        seen.add(valid.stream.stream_type.name)
    assert seen == {"joint_state", "action", "imu", "pose", "image", "event"}


def test_generated_episode_round_trips_byte_exact(episode: SyntheticEpisode) -> None:
    chunks = episode.chunks()
    for decl in episode.manifest.streams:
        encoded = chunks[decl.name]
        decoded = [decode_chunk(data) for data in encoded]
        assert [encode_chunk(t, decl.stream_type) for t in decoded] == encoded
        rebuilt = pa.concat_tables(decoded)
        assert rebuilt.equals(episode.streams[decl.name]), decl.name


def test_split_respects_the_limit(episode: SyntheticEpisode, registry: StreamTypeRegistry) -> None:
    image = registry.get("image", 1)
    frames = _rows(episode, "cam_head")
    limit = 512 * 1024
    chunks = list(split_into_chunks(frames, image, limit))
    assert len(chunks) > 1
    assert max(len(c) for c in chunks) <= limit
    assert sum(decode_chunk(c).num_rows for c in chunks) == frames.num_rows
    with pytest.raises(ContractViolation) as caught:
        list(split_into_chunks(frames, image, 40 * 1024))
    assert caught.value.reason == "chunk_too_large"


def test_wrong_schema(episode: SyntheticEpisode) -> None:
    imu = _rows(episode, "imu", 10)
    violation = _rejects(_ipc(imu), episode.manifest, "joint_state", "schema_mismatch")
    assert "joint_state.v1" in violation.message


@pytest.mark.parametrize(
    ("mutate", "text"),
    [
        (lambda t: t.drop_columns(["effort"]), "'effort'"),
        (lambda t: t.append_column("extra", pa.array([1] * t.num_rows)), "extra"),
        (lambda t: t.set_column(0, "t_ns", pc.cast(t.column(0), pa.uint64())), "uint64"),
        (lambda t: t.rename_columns(["t_ns", "pos", "velocity", "effort"]), "'pos'"),
        (
            lambda t: t.cast(
                pa.schema([f.with_nullable(True) if f.name == "position" else f for f in t.schema])
            ),
            "nullable",
        ),
    ],
    ids=["missing", "extra", "type", "name", "nullability"],
)
def test_schema_mismatch_names_the_difference(
    episode: SyntheticEpisode, mutate: object, text: str
) -> None:
    assert callable(mutate)
    table = mutate(_rows(episode, "joint_state", 5))
    violation = _rejects(_ipc(table), episode.manifest, "joint_state", "schema_mismatch")
    assert text in violation.message


def test_decreasing_t_ns(episode: SyntheticEpisode) -> None:
    table = _rows(episode, "joint_state", 10)
    t = table.column("t_ns").to_pylist()
    t[6], t[7] = t[7], t[6]
    table = table.set_column(0, table.schema.field(0), pa.array(t, pa.int64()))
    violation = _rejects(_ipc(table), episode.manifest, "joint_state", "t_ns_decreasing")
    assert violation.context["row"] == 7


def test_equal_t_ns_is_allowed(episode: SyntheticEpisode) -> None:
    table = _rows(episode, "imu", 4)
    t = table.column("t_ns").to_pylist()
    table = table.set_column(0, table.schema.field(0), pa.array([t[0]] * 4, pa.int64()))
    assert validate_chunk(_ipc(table), episode.manifest, "imu").num_rows == 4


def test_decreasing_across_record_batches(episode: SyntheticEpisode) -> None:
    table = _rows(episode, "imu", 20)
    swapped = pa.concat_tables([table.slice(10), table.slice(0, 10)])
    _rejects(_ipc(swapped), episode.manifest, "imu", "t_ns_decreasing")


def test_null_t_ns(episode: SyntheticEpisode) -> None:
    table = _rows(episode, "imu", 5)
    t = table.column("t_ns").to_pylist()
    t[3] = None
    table = table.set_column(0, table.schema.field(0), pa.array(t, pa.int64()))
    violation = _rejects(_ipc(table), episode.manifest, "imu", "t_ns_null")
    assert violation.context["row"] == 3


@pytest.mark.parametrize("shift_ns", [-1, 10**9 * 3600])
def test_t_ns_out_of_range(episode: SyntheticEpisode, shift_ns: int) -> None:
    table = _rows(episode, "imu", 5)
    start = episode.manifest.started_at_ns
    base = start - 5 if shift_ns < 0 else start + shift_ns
    table = table.set_column(
        0, table.schema.field(0), pa.array([base + i for i in range(5)], pa.int64())
    )
    _rejects(_ipc(table), episode.manifest, "imu", "t_ns_out_of_range")
    tolerant = ChunkLimits(time_tolerance_ns=10) if shift_ns < 0 else None
    if tolerant is not None:
        assert validate_chunk(_ipc(table), episode.manifest, "imu", limits=tolerant).num_rows == 5


def test_t_ns_at_the_edges_is_inside(episode: SyntheticEpisode) -> None:
    table = _rows(episode, "events")
    manifest = episode.manifest
    edges = pa.array([manifest.started_at_ns, manifest.started_at_ns, manifest.ended_at_ns])
    table = table.set_column(0, table.schema.field(0), edges)
    assert validate_chunk(_ipc(table), manifest, "events").num_rows == 3


def _with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(index), values)


def test_oversized_image_dimensions(episode: SyntheticEpisode) -> None:
    frames = _rows(episode, "cam_head", 3)
    wide = _with_column(frames, "width", pa.array([640, 5000, 640], pa.int32()))
    violation = _rejects(_ipc(wide), episode.manifest, "cam_head", "image_too_large")
    assert violation.context == {"stream": "cam_head", "field": "width", "row": 1}


def test_oversized_image_bytes(episode: SyntheticEpisode) -> None:
    frames = _rows(episode, "cam_head", 2)
    data = frames.column("data").to_pylist()
    data[1] = data[1] + bytes(3 * 1024 * 1024)
    big = _with_column(frames, "data", pa.array(data, pa.binary()))
    violation = _rejects(_ipc(big), episode.manifest, "cam_head", "image_too_large")
    assert violation.context["row"] == 1


def test_enum_and_range_constraints(episode: SyntheticEpisode) -> None:
    frames = _rows(episode, "cam_head", 2)
    bmp = _with_column(frames, "encoding", pa.array(["jpeg", "bmp"]))
    violation = _rejects(_ipc(bmp), episode.manifest, "cam_head", "value_not_allowed")
    assert "bmp" not in violation.message
    assert "jpeg" in violation.message
    events = _rows(episode, "events")
    score = _with_column(events, "value", pa.array([None, None, 1.5], pa.float32()))
    _rejects(_ipc(score), episode.manifest, "events", "value_not_allowed")
    zero = _with_column(frames, "height", pa.array([480, 0], pa.int32()))
    _rejects(_ipc(zero), episode.manifest, "cam_head", "image_too_large")


def test_element_count(episode: SyntheticEpisode) -> None:
    table = _rows(episode, "action", 4)
    values = table.column("action").to_pylist()
    values[2] = values[2][:-1]
    short = _with_column(table, "action", pa.array(values, pa.list_(pa.float32())))
    violation = _rejects(_ipc(short), episode.manifest, "action", "element_count_mismatch")
    assert violation.context["row"] == 2
    assert "28 values" in violation.message


def test_null_in_non_nullable_field(episode: SyntheticEpisode) -> None:
    table = _rows(episode, "action", 4)
    values = table.column("action").to_pylist()
    values[1] = None
    nulls = _with_column(table, "action", pa.array(values, pa.list_(pa.float32())))
    _rejects(_ipc(nulls), episode.manifest, "action", "field_null")


def test_nullable_fields_may_be_null(episode: SyntheticEpisode) -> None:
    table = _rows(episode, "joint_state", 3)
    table = _with_column(table, "effort", pa.nulls(3, pa.list_(pa.float32())))
    assert validate_chunk(_ipc(table), episode.manifest, "joint_state").num_rows == 3


def test_unknown_stream(episode: SyntheticEpisode) -> None:
    _rejects(_ipc(_rows(episode, "imu", 3)), episode.manifest, "lidar", "unknown_stream")


def test_empty_chunk(episode: SyntheticEpisode) -> None:
    _rejects(_ipc(_rows(episode, "imu", 0)), episode.manifest, "imu", "chunk_empty")


def test_too_large(episode: SyntheticEpisode) -> None:
    data = _ipc(_rows(episode, "imu"))
    violation = _rejects(
        data, episode.manifest, "imu", "chunk_too_large", ChunkLimits(max_chunk_bytes=1024)
    )
    assert violation.context["size"] == len(data)


def test_compressed_bodies_that_expand_are_refused(episode: SyntheticEpisode) -> None:
    table = _rows(episode, "imu")
    table = _with_column(
        table,
        "linear_acceleration",
        pa.FixedSizeListArray.from_arrays(pa.array([0.0] * (3 * table.num_rows), pa.float32()), 3),
    )
    data = _ipc(table, pa.ipc.IpcWriteOptions(compression="zstd"))
    violation = _rejects(data, episode.manifest, "imu", "chunk_too_large")
    assert "compression" in violation.message


MALFORMED = {
    "garbage": b"definitely not arrow",
    "empty": b"",
    "truncated": None,
    "trailing": None,
    "file format": None,
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_arrow(episode: SyntheticEpisode, kind: str) -> None:
    good = _ipc(_rows(episode, "imu", 50))
    data = MALFORMED[kind]
    if kind == "truncated":
        data = good[: len(good) // 2]
    elif kind == "trailing":
        data = good + b"\x00" * 16
    elif kind == "file format":
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, _rows(episode, "imu").schema) as writer:
            writer.write_table(_rows(episode, "imu", 50))
        data = bytes(sink.getvalue())
    assert data is not None
    _rejects(data, episode.manifest, "imu", "malformed_arrow")


def test_corrupted_offsets_are_caught_before_kernels(episode: SyntheticEpisode) -> None:
    """Flip bytes all over a chunk: every outcome is a verdict, never a crash."""
    good = bytearray(_ipc(_rows(episode, "events")))
    verdicts = set()
    for position in range(0, len(good), 7):
        damaged = bytearray(good)
        damaged[position] ^= 0xFF
        try:
            validate_chunk(bytes(damaged), episode.manifest, "events")
            verdicts.add("ok")
        except ContractViolation as violation:
            verdicts.add(violation.reason)
    assert "malformed_arrow" in verdicts


def test_encode_refuses_the_wrong_rows(
    episode: SyntheticEpisode, registry: StreamTypeRegistry
) -> None:
    with pytest.raises(ContractViolation) as caught:
        encode_chunk(_rows(episode, "imu", 3), registry.get("pose", 1))
    assert caught.value.reason == "schema_mismatch"


def test_depth_stream(episode: SyntheticEpisode, registry: StreamTypeRegistry) -> None:
    """depth_image is not generated by the humanoid; declare it and upload raw16 frames."""
    document = dict(episode.manifest_document)
    document["streams"] = [
        *document["streams"],
        {"name": "depth_head", "type": "depth_image", "type_version": 1, "rate_hz": 15},
    ]
    manifest = parse_manifest(document)
    depth = registry.get("depth_image", 1)
    start = manifest.started_at_ns
    frame = bytes(64 * 48 * 2)
    rows = pa.Table.from_arrays(
        [
            pa.array([start, start + 66_666_666], pa.int64()),
            pa.array(["raw16", "raw16"]),
            pa.array([64, 64], pa.int32()),
            pa.array([48, 48], pa.int32()),
            pa.array([0.001, 0.001], pa.float32()),
            pa.array([frame, frame], pa.binary()),
        ],
        schema=depth.wire_schema,
    )
    assert validate_chunk(encode_chunk(rows, depth), manifest, "depth_head").num_rows == 2
    negative = _with_column(rows, "depth_scale", pa.array([0.001, -1.0], pa.float32()))
    _rejects(encode_chunk(negative, depth), manifest, "depth_head", "value_not_allowed")


def test_nan_success_label_is_refused(episode: SyntheticEpisode) -> None:
    """Issue 15, defect 7: NaN compares false with both bounds and passed the 0..1 check."""
    events = _rows(episode, "events")
    nan = _with_column(events, "value", pa.array([None, None, float("nan")], pa.float32()))
    violation = _rejects(_ipc(nan), episode.manifest, "events", "value_not_allowed")
    assert "NaN" in violation.message
    assert violation.context["row"] == 2
