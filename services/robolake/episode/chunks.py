"""The chunk wire format: one chunk = rows of one stream of one episode, as an Arrow IPC stream.

A chunk is the schema message followed by record batches (uncompressed), at most
``max_chunk_bytes`` on the wire. Validation is the collector's hot path, so every check is a
pyarrow.compute kernel over whole columns -- Python only loops over the handful of fields, never
over rows. Checks run cheapest first and stop at the first failure, which carries a stable reason.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robolake.episode.errors import ContractViolation
from robolake.episode.manifest import EpisodeManifest, StreamDecl
from robolake.episode.stream_types import TIME_FIELD, StreamType
from robolake.episode.tables import FieldSpec
from robolake.episode.topics import DEFAULT_MAX_CHUNK_BYTES

logger = logging.getLogger(__name__)

#: Media type of a chunk body on the HTTP API.
CHUNK_MEDIA_TYPE: Final = "application/vnd.apache.arrow.stream"
#: Bytes :func:`split_into_chunks` keeps free for the schema message and per-batch framing.
_FRAMING_RESERVE: Final = 16 * 1024


@dataclass(frozen=True)
class ChunkLimits:
    """Configurable limits of chunk validation.

    ``time_tolerance_ns`` widens the episode's [started_at, ended_at] for devices whose manifest
    times are rounded coarser than their sample times.
    """

    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES
    time_tolerance_ns: int = 0


DEFAULT_LIMITS: Final = ChunkLimits()


@dataclass(frozen=True)
class ValidatedChunk:
    """A chunk that passed validation, with what the collector and writer need to know."""

    stream: StreamDecl
    table: pa.Table
    num_rows: int
    first_t_ns: int
    last_t_ns: int
    nbytes: int


def encode_chunk(data: pa.Table | pa.RecordBatch, stream_type: StreamType) -> bytes:
    """Serialise rows of one stream as a chunk: the type's wire schema and one record batch.

    One batch makes the encoding canonical, so decoding and re-encoding gives the same bytes.
    Raises ``schema_mismatch`` when the rows do not have the type's fields.
    """
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    schema = stream_type.wire_schema
    _check_schema(table.schema, stream_type)
    batches = table.cast(schema).combine_chunks().to_batches()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:  # at most one after combine_chunks
            writer.write_batch(batch)
    return bytes(sink.getvalue())


def decode_chunk(data: bytes | bytearray | memoryview | pa.Buffer) -> pa.Table:
    """Parse chunk bytes into a table, checking only that they are one sound Arrow IPC stream.

    Full validation of offsets and UTF-8 runs here (vectorised in C++) so no later kernel reads
    out of bounds on hostile bytes. Compressed bodies are refused by size: decoding must not
    produce more bytes than were sent, which bounds the memory a request can make us allocate.
    """
    buffer = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    source = pa.BufferReader(buffer)
    try:
        with pa.ipc.open_stream(source) as reader:
            table = reader.read_all()
        consumed = source.tell()
        table.validate(full=True)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise ContractViolation(
            "malformed_arrow",
            f"body is not a valid Arrow IPC stream ({exc}); write it with "
            "pyarrow.ipc.new_stream (the stream format, not the file format)",
        ) from exc
    if consumed != buffer.size:
        raise ContractViolation(
            "malformed_arrow",
            f"{buffer.size - consumed} bytes follow the end of the Arrow IPC stream; send exactly "
            "one stream per chunk",
        )
    decoded = table.get_total_buffer_size()
    if decoded > buffer.size:
        raise ContractViolation(
            "chunk_too_large",
            f"chunk decodes to {decoded} bytes from {buffer.size}; IPC body compression is not "
            "accepted -- write chunks uncompressed (JPEG/PNG are compressed already)",
        )
    return table


def validate_chunk(
    data: bytes | bytearray | memoryview | pa.Buffer,
    manifest: EpisodeManifest,
    stream: str,
    *,
    limits: ChunkLimits = DEFAULT_LIMITS,
) -> ValidatedChunk:
    """Check a chunk of ``stream`` of ``manifest``'s episode; raise :class:`ContractViolation`."""
    size = data.size if isinstance(data, pa.Buffer) else len(data)
    if size > limits.max_chunk_bytes:
        raise ContractViolation(
            "chunk_too_large",
            f"chunk is {size} bytes; the limit is {limits.max_chunk_bytes} -- split the stream "
            "into more chunks",
            stream=stream,
            size=size,
        )
    decl = manifest.stream(stream)
    table = decode_chunk(data)
    stream_type = decl.stream_type
    _check_schema(table.schema, stream_type, stream=stream)
    if table.num_rows == 0:
        raise ContractViolation(
            "chunk_empty", f"chunk of stream {stream!r} has no rows; skip empty chunks"
        )
    first, last = _check_time(table, manifest, stream, limits)
    for spec in stream_type.fields[1:]:
        _check_field(table.column(spec.name), spec, decl)
    return ValidatedChunk(
        stream=decl,
        table=table,
        num_rows=table.num_rows,
        first_t_ns=first,
        last_t_ns=last,
        nbytes=size,
    )


def check_schema(actual: pa.Schema, stream_type: StreamType, *, stream: str = "") -> None:
    """Raise ``schema_mismatch`` unless ``actual`` has the type's fields (metadata ignored).

    For consumers that know a chunk's type from its record headers but not its manifest (a
    writer starting mid-topic): decode with :func:`decode_chunk`, then check the schema here.
    """
    _check_schema(actual, stream_type, stream=stream)


def _check_schema(actual: pa.Schema, stream_type: StreamType, *, stream: str = "") -> None:
    expected = stream_type.wire_schema
    if actual.equals(expected, check_metadata=False):
        return
    raise ContractViolation(
        "schema_mismatch",
        f"schema differs from {stream_type.key}: {_schema_diff(actual, expected)}; build chunks "
        f"with the schema in schemas/stream_types/{stream_type.key}.json",
        stream=stream,
        expected_type=stream_type.key,
    )


def _schema_diff(actual: pa.Schema, expected: pa.Schema) -> str:
    for index, want in enumerate(expected):
        if index >= len(actual):
            return f"field {want.name!r} ({want.type}) is missing"
        got = actual.field(index)
        if got.name != want.name:
            return f"field {index} is {got.name!r}, expected {want.name!r}"
        if not got.type.equals(want.type):
            return f"field {want.name!r} is {got.type}, expected {want.type}"
        if got.nullable != want.nullable:
            return f"field {want.name!r} has nullable={got.nullable}, expected {want.nullable}"
    extra = [f.name for f in actual][len(expected) :]
    return f"unexpected extra fields {extra}"


def _check_time(
    table: pa.Table, manifest: EpisodeManifest, stream: str, limits: ChunkLimits
) -> tuple[int, int]:
    column = table.column(TIME_FIELD)
    if column.null_count:
        row = pc.index(pc.is_null(column), True).as_py()
        raise ContractViolation(
            "t_ns_null",
            f"t_ns is null in {column.null_count} rows (first at row {row}); every row needs a "
            "time",
            stream=stream,
            row=row,
        )
    t = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if len(t) > 1:
        decreasing = pc.less(t[1:], t[:-1])
        if pc.any(decreasing).as_py():
            row = pc.index(decreasing, True).as_py() + 1
            raise ContractViolation(
                "t_ns_decreasing",
                f"t_ns decreases at row {row} ({t[row - 1].as_py()} -> {t[row].as_py()}); sort "
                "rows by time within a chunk",
                stream=stream,
                row=row,
            )
    first, last = t[0].as_py(), t[-1].as_py()
    low = manifest.started_at_ns - limits.time_tolerance_ns
    high = manifest.ended_at_ns + limits.time_tolerance_ns
    if first < low or last > high:
        raise ContractViolation(
            "t_ns_out_of_range",
            f"t_ns spans [{first}, {last}], outside the episode's [{manifest.started_at_ns}, "
            f"{manifest.ended_at_ns}] (started_at/ended_at in ns); fix the manifest's times or "
            "the device clock",
            stream=stream,
            first_t_ns=first,
            last_t_ns=last,
        )
    return int(first), int(last)


def _check_field(column: pa.ChunkedArray, spec: FieldSpec, decl: StreamDecl) -> None:
    if not spec.nullable and column.null_count:
        row = pc.index(pc.is_null(column), True).as_py()
        raise ContractViolation(
            "field_null",
            f"field {spec.name!r} must not be null but is in {column.null_count} rows (first at "
            f"row {row})",
            stream=decl.name,
            field=spec.name,
            row=row,
        )
    if spec.elements and decl.elements is not None:
        _check_elements(column, spec, decl)
    if spec.constraints is not None:
        _check_constraints(column, spec, decl)


def _check_elements(column: pa.ChunkedArray, spec: FieldSpec, decl: StreamDecl) -> None:
    assert decl.elements is not None
    want = len(decl.elements)
    lengths = pc.list_value_length(column)
    extremes = pc.min_max(lengths)
    if extremes["min"].as_py() in (None, want) and extremes["max"].as_py() in (None, want):
        return
    row = _first(pc.not_equal(lengths, _scalar(want, lengths.type)))
    raise ContractViolation(
        "element_count_mismatch",
        f"field {spec.name!r} has {lengths[row].as_py()} values at row {row}; the manifest "
        f"declares {want} elements for stream {decl.name!r}",
        stream=decl.name,
        field=spec.name,
        row=row,
    )


def _check_constraints(column: pa.ChunkedArray, spec: FieldSpec, decl: StreamDecl) -> None:
    """Check enum / min / max / max_bytes with one aggregate kernel each.

    Comparisons that locate the offending row only run once a check has failed, so the passing
    path -- nearly every chunk -- stays a handful of kernel calls.
    """
    c = spec.constraints
    assert c is not None
    values: pa.ChunkedArray = column
    if pa.types.is_dictionary(spec.arrow_type):
        values = pc.cast(column, spec.arrow_type.value_type)
    if pa.types.is_list(spec.arrow_type) or pa.types.is_fixed_size_list(spec.arrow_type):
        values = pc.list_flatten(column)

    def fail(bad: pa.ChunkedArray, what: str) -> ContractViolation:
        row = _first(bad)
        return ContractViolation(
            c.reason,
            f"field {spec.name!r} is {what} at row {row} of stream {decl.name!r}",
            stream=decl.name,
            field=spec.name,
            row=row,
        )

    if c.enum is not None:
        allowed = _value_set(c.enum, values.type)
        inside = pc.is_in(values, value_set=allowed)
        if (pc.sum(inside).as_py() or 0) + values.null_count < len(values):
            outside = pc.and_(pc.invert(inside), pc.is_valid(values))
            raise fail(outside, f"not one of {list(c.enum)}")
    if c.min is not None or c.max is not None:
        if pa.types.is_floating(values.type):
            # min_max skips NaN, and NaN compares false with both bounds: a bounded field
            # (a success label in 0..1) must be a number.
            nan = pc.is_nan(values)
            if pc.any(nan).as_py():
                raise fail(nan, f"NaN, not a number in [{c.min}, {c.max}]")
        extremes = pc.min_max(values)
        low, high = extremes["min"].as_py(), extremes["max"].as_py()
        if c.min is not None and low is not None and low < c.min:
            raise fail(pc.less(values, _scalar(c.min, values.type)), f"below the minimum {c.min}")
        if c.max is not None and high is not None and high > c.max:
            raise fail(
                pc.greater(values, _scalar(c.max, values.type)), f"above the maximum {c.max}"
            )
    if c.max_bytes is not None:
        lengths = pc.binary_length(values)
        longest = pc.max(lengths).as_py()
        if longest is not None and longest > c.max_bytes:
            raise fail(
                pc.greater(lengths, _scalar(c.max_bytes, lengths.type)),
                f"larger than {c.max_bytes} bytes",
            )


def _first(mask: pa.ChunkedArray | pa.Array) -> int:
    """Index of the first true value of a boolean mask (only called once a check failed)."""
    return int(pc.index(mask, _scalar(True, pa.bool_())).as_py())


@functools.lru_cache(maxsize=256)
def _scalar(value: object, arrow_type: pa.DataType) -> pa.Scalar:
    """Arrow scalars for kernel arguments, built once: converting Python values per call is
    slower than the kernels themselves on small columns."""
    return pa.scalar(value, arrow_type)


@functools.lru_cache(maxsize=256)
def _value_set(values: tuple[str, ...], arrow_type: pa.DataType) -> pa.Array:
    return pa.array(values, type=arrow_type)


def split_into_chunks(
    table: pa.Table, stream_type: StreamType, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES
) -> Iterator[bytes]:
    """Encode a stream's rows as consecutive chunks of at most ``max_chunk_bytes`` each.

    The device-side half of the wire format. Row sizes are estimated with vectorised kernels
    (exact for binary/string columns, the column average otherwise), cut points found with
    ``numpy.searchsorted``; a chunk that still comes out too large is halved.
    """
    if table.num_rows == 0:
        return
    budget = max_chunk_bytes - _FRAMING_RESERVE
    if budget <= 0:
        raise ValueError(f"max_chunk_bytes {max_chunk_bytes} leaves no room for rows")
    sizes = np.zeros(table.num_rows, dtype=np.int64)
    for column in table.columns:
        if pa.types.is_binary(column.type) or pa.types.is_string(column.type):
            lengths = pc.fill_null(pc.binary_length(column), 0)
            sizes += lengths.to_numpy().astype(np.int64) + 4
        else:
            sizes += -(-column.nbytes // table.num_rows)
    ends = np.cumsum(sizes)
    start = 0
    while start < table.num_rows:
        base = int(ends[start - 1]) if start else 0
        stop = int(np.searchsorted(ends, base + budget, side="right"))
        stop = max(stop, start + 1)
        yield from _encode_bounded(table.slice(start, stop - start), stream_type, max_chunk_bytes)
        start = stop


def _encode_bounded(table: pa.Table, stream_type: StreamType, limit: int) -> Iterator[bytes]:
    encoded = encode_chunk(table, stream_type)
    if len(encoded) <= limit:
        yield encoded
        return
    if table.num_rows == 1:
        raise ContractViolation(
            "chunk_too_large",
            f"a single row of {stream_type.key} encodes to {len(encoded)} bytes, over the "
            f"{limit}-byte chunk limit; reduce the frame size or raise the limit",
        )
    half = table.num_rows // 2
    yield from _encode_bounded(table.slice(0, half), stream_type, limit)
    yield from _encode_bounded(table.slice(half), stream_type, limit)
