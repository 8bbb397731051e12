"""Issue 15: the writer never dies on a record, and stores whatever the collector acknowledged.

Hypothesis builds manifests, completions and event chunks from every value a device can put in
JSON or Arrow -- lone surrogates, control and bidi characters, NaN, infinities, huge integers,
any UUIDv7 time, any RFC 3339 date -- and judges each as the collector does
(``parse_manifest`` / ``parse_completion`` / ``validate_chunk``). Each record then goes through
the writer's record path (``PartitionWriter.accept``) and its flushes (``prepare``: shard and
index encoding). The properties:

1. the writer never raises, and never dead-letters with an unexpected error (a writer bug);
2. what the collector accepted is stored (a manifest, a chunk, a completion), and once due the
   episode's index row is written;
3. what the collector refused is dead-lettered by the writer with one of the contract's reasons
   (a record can reach Kafka without a collector: an old one, a buggy producer).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from writer_fakes import FakeClock, Record, record

from robolake.episode.checksums import checksum
from robolake.episode.chunks import ChunkLimits, encode_chunk, validate_chunk
from robolake.episode.completion import parse_completion
from robolake.episode.errors import REASONS, ContractViolation
from robolake.episode.ids import new_episode_id, uuid7
from robolake.episode.manifest import EpisodeManifest, parse_manifest
from robolake.episode.records import RecordMeta, chunk_record, complete_record
from robolake.episode.synthetic import SyntheticSpec, generate_episode
from robolake.writer.batcher import FlushPolicy
from robolake.writer.partition import UNEXPECTED_PREFIX, PartitionWriter, Verdict

BASE = generate_episode(SyntheticSpec(seed=21, duration_s=0.5, cameras=()))
BASE_DOC: dict[str, Any] = json.loads(BASE.manifest_bytes())
DEVICE = BASE_DOC["device_id"]
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Characters devices have sent: everything Unicode has, surrogates included, and the nasty ones.
nasty = st.sampled_from(
    ["\ud800", "\udfff", "\x00", "\n", "\r", "\u202e", "\u2028", "\x1b", "\ufeff"]
)
device_text = st.text(alphabet=st.characters(codec=None) | nasty, max_size=24)
numbers = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, 2**63 - 1, 2**63, -(2**63) - 1])
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)))
    digits = draw(st.integers(min_value=0, max_value=9))
    fraction = (
        "." + "".join(draw(st.text("0123456789", min_size=digits, max_size=digits)))
        if digits
        else ""
    )
    offset = draw(st.sampled_from(["Z", "+00:00", "-12:00", "+14:00"]))
    return moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + fraction + offset


@st.composite
def episode_ids(draw: st.DrawFn) -> str:
    ms = draw(st.integers(min_value=0, max_value=2**48 - 1))
    rand = draw(st.binary(min_size=10, max_size=10))
    if draw(st.booleans()):
        return new_episode_id(DEVICE, ms, rand)
    return uuid7(ms, rand)  # not owned by DEVICE (with probability 1 - 2**-48)


@st.composite
def manifests(draw: st.DrawFn) -> bytes:
    """The valid base manifest with one or two fields set to what a device could send."""
    doc = json.loads(json.dumps(BASE_DOC))
    changes = {
        "task": lambda: device_text,
        "operator": lambda: device_text,
        "robot_type": lambda: device_text,
        "tags": lambda: st.lists(device_text, max_size=3),
        "software": lambda: st.dictionaries(device_text, device_text, max_size=2),
        "episode_id": episode_ids,
        "started_at": timestamps,
        "ended_at": timestamps,
        "rate_hz": lambda: numbers,
        "nesting": lambda: st.recursive(
            st.just("x"), lambda c: st.lists(c, min_size=1, max_size=2), max_leaves=40
        ),
    }
    for field in draw(st.lists(st.sampled_from(sorted(changes)), min_size=1, max_size=2)):
        value = draw(changes[field]())
        if field == "rate_hz":
            doc["streams"][0]["rate_hz"] = value
        elif field == "nesting":
            doc["tags"] = value
        else:
            doc[field] = value
    # ensure_ascii: surrogates travel as \ud800 escapes, exactly as devices sent them.
    return json.dumps(doc, ensure_ascii=True, allow_nan=True).encode()


def _meta(kind: str, body: bytes, doc: object) -> RecordMeta:
    """Headers a collector would stamp, built without trusting the document."""
    fields = doc if isinstance(doc, dict) else {}
    return RecordMeta(
        kind=kind,  # type: ignore[arg-type]
        episode_id=str(fields.get("episode_id", BASE_DOC["episode_id"])),
        capture_point_id=str(fields.get("capture_point_id", BASE_DOC["capture_point_id"])),
        device_id=str(fields.get("device_id", DEVICE)),
        checksum=checksum(body),
    )


def _writer(clock: FakeClock) -> PartitionWriter:
    policy = FlushPolicy(flush_bytes=64 * 2**20, flush_age_s=5.0)
    return PartitionWriter("chunks", 0, policy=policy, clock=clock, incomplete_after_s=60.0)


def _judge(w: PartitionWriter, offset: int, meta: RecordMeta, body: bytes) -> Verdict:
    try:
        headers = meta.headers()
    except UnicodeEncodeError:  # a header value no producer could send: nothing to feed
        headers = [("kind", meta.kind.encode())]
    verdict = w.accept(Record(offset, meta.episode_id.encode("utf-8", "replace"), body, headers))
    if verdict.dead_letter is not None:
        assert verdict.dead_letter.reason in REASONS
        assert not verdict.dead_letter.message.startswith(UNEXPECTED_PREFIX), verdict
    return verdict


def _flush_everything(w: PartitionWriter, clock: FakeClock) -> list[dict[str, Any]]:
    """Every flush the writer would make from here on; the index rows it wrote."""
    rows: list[dict[str, Any]] = []
    for _ in range(3):
        clock.now += 61
        reason = w.due(clock())
        if reason is None:
            continue
        flush = w.prepare(reason)
        assert flush is not None
        for file in flush.files:
            table = pq.read_table(io.BytesIO(file.data))
            if file.kind == "index":
                rows += table.to_pylist()
        w.finished(flush)
    return rows


@PROPERTY
@given(body=manifests(), counts=st.dictionaries(st.just("joint_state"), numbers, max_size=1))
def test_manifests_and_completions_are_stored_or_dead_lettered(
    body: bytes, counts: dict[str, Any]
) -> None:
    clock = FakeClock()
    w = _writer(clock)
    try:
        accepted: EpisodeManifest | None = parse_manifest(body)  # the collector's check
    except ContractViolation:
        accepted = None
    try:
        doc: object = json.loads(body)
    except (ValueError, RecursionError):
        doc = None
    verdict = _judge(w, 0, _meta("manifest", body, doc), body)
    event("manifest accepted" if accepted is not None else "manifest refused")
    if accepted is None:
        assert verdict.outcome == "dead_letter"
        return
    assert verdict.outcome == "stored", verdict
    document = {"streams": {s.name: {"chunks": 0, "rows": 0} for s in accepted.streams}}
    for name, value in counts.items():
        document["streams"][name] = {"chunks": value, "rows": value}
    completion = json.dumps(document, allow_nan=True).encode()
    try:
        parse_completion(completion, accepted)
        completion_ok = True
    except ContractViolation:
        completion_ok = False
    verdict = _judge(w, 1, complete_record(accepted, completion), completion)
    assert (verdict.outcome == "stored") == completion_ok, verdict
    rows = _flush_everything(w, clock)
    assert [row["episode_id"] for row in rows] == [accepted.episode_id]
    assert rows[-1]["task"] == accepted.task


@st.composite
def event_tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(min_value=1, max_value=5))
    start = BASE.manifest.started_at_ns
    inside = st.integers(start, start + 10**8)
    t = sorted(
        draw(
            st.lists(
                inside | st.integers(min_value=-(2**63), max_value=2**63 - 1),
                min_size=n,
                max_size=n,
            )
        )
    )
    kinds = draw(
        st.lists(
            st.sampled_from(["instruction", "success_label", "note", "marker", "other"]),
            min_size=n,
            max_size=n,
        )
    )
    texts = draw(st.lists(st.none() | st.text(max_size=30), min_size=n, max_size=n))
    scores = st.floats(width=32, allow_nan=True, allow_infinity=True)
    values = draw(st.lists(st.none() | st.just(float("nan")) | scores, min_size=n, max_size=n))
    return pa.table(
        {
            "t_ns": pa.array(t, pa.int64()),
            "kind": pa.array(kinds, pa.string()),
            "text": pa.array(texts, pa.string()),
            "value": pa.array(values, pa.float32()),
        },
        schema=BASE.streams["events"].schema,
    )


@PROPERTY
@given(table=event_tables(), seq=st.integers(min_value=0, max_value=10**18 - 1))
def test_event_chunks_are_stored_or_dead_lettered(table: pa.Table, seq: int) -> None:
    clock = FakeClock()
    w = _writer(clock)
    manifest = BASE.manifest
    _judge(w, 0, _meta("manifest", BASE.manifest_bytes(), BASE_DOC), BASE.manifest_bytes())
    data = encode_chunk(table, manifest.stream("events").stream_type)
    try:
        validate_chunk(data, manifest, "events", limits=ChunkLimits())
        accepted = True
    except ContractViolation:
        accepted = False
    verdict = _judge(w, 1, chunk_record(manifest, "events", seq, data), data)
    event("chunk accepted" if accepted else "chunk refused")
    if accepted:  # what is accepted means what the contract says: a score in 0..1
        assert all(v is None or 0 <= v <= 1 for v in table.column("value").to_pylist())
    assert (verdict.outcome == "stored") == accepted, verdict
    clock.now += 6
    flush = w.prepare("age")
    assert flush is not None
    stored = sum(f.rows for f in flush.files if f.kind == "event.v1")
    assert stored == (table.num_rows if accepted else 0)


def test_a_writer_bug_dead_letters_the_record_and_the_partition_goes_on() -> None:
    """The last line of defence: an exception no check foresaw must not stop the partition."""
    clock = FakeClock()
    w = _writer(clock)

    def broken(*args: object) -> None:
        raise KeyError("a bug")

    w._manifest = broken  # type: ignore[assignment,method-assign]
    body = BASE.manifest_bytes()
    verdict = w.accept(record(0, _meta("manifest", body, BASE_DOC), body))
    assert verdict.dead_letter is not None
    assert verdict.dead_letter.reason == "record_invalid"
    assert verdict.dead_letter.message.startswith(UNEXPECTED_PREFIX + "KeyError")
    stream, seq, data = next(BASE.iter_chunks())
    assert (
        w.accept(record(1, chunk_record(BASE.manifest, stream, seq, data), data)).outcome
        == "stored"
    )
