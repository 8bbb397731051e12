"""Helpers of the engine tests: tables filled by a real writer, and pyiceberg's view of them."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from minio import Minio
from pyiceberg.table import Table

# The writer tests' harness (spawn_writer, produce_episode, assert_exact) lives beside them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "writer"))

from writer_harness import (
    Produced,
    assert_exact,
    create_topic,
    indexed,
    produce_episode,
    producer,
    small_episode,
    spawn_writer,
    wait_until,
    writer_settings,
)

from robolake.endpoints import Endpoints
from robolake.lake.catalog import LakeTables
from robolake.writer.settings import WriterSettings

__all__ = [
    "FilledLake",
    "Produced",
    "assert_exact",
    "create_topic",
    "first_row",
    "pyiceberg_counts",
    "t_ns_ranges",
    "writer_settings",
]


@dataclass
class FilledLake:
    """Tables a writer filled: what was produced, and how to run the writer again."""

    endpoints: Endpoints
    topic: str
    settings: WriterSettings
    produced: Produced
    log_path: Path
    s3: Minio

    def tables(self) -> LakeTables:
        return LakeTables.from_endpoints(self.endpoints)

    async def produce(self, seeds: range) -> None:
        kafka = producer(self.endpoints.kafka_bootstrap)
        await kafka.start()
        try:
            for seed in seeds:
                await produce_episode(kafka, self.topic, small_episode(seed), self.produced)
        finally:
            await kafka.stop()

    async def run_writer(self) -> str:
        """A writer process until every produced episode is indexed, then SIGTERM; its log."""
        writer = spawn_writer(self.log_path, self.endpoints, self.settings)
        try:
            await wait_until(
                lambda: (
                    len(indexed(self.s3, self.endpoints.s3_bucket, tables=self.endpoints))
                    == len(self.produced.episodes)
                ),
                timeout=120,
                what="every produced episode indexed",
            )
            writer.signal(signal.SIGTERM)
            assert writer.wait() == 0, writer.log()[-3000:]
        finally:
            writer.kill()
        return writer.log()


def pyiceberg_counts(tables: LakeTables) -> dict[str, int]:
    """Rows of every table of the namespace in its current snapshot (0 for a table without one)."""
    counts = {}
    for name in tables.names():
        table = tables.load(name)
        counts[name] = 0 if table.current_snapshot() is None else table.scan().count()
    return counts


def t_ns_ranges(table: Table) -> dict[str, tuple[int, int]]:
    """episode_id -> (min t_ns, max t_ns) of a shard table, read by pyiceberg and pyarrow."""
    arrow = table.scan(selected_fields=("episode_id", "t_ns")).to_arrow()
    grouped = arrow.group_by("episode_id").aggregate([("t_ns", "min"), ("t_ns", "max")])
    return {row["episode_id"]: (row["t_ns_min"], row["t_ns_max"]) for row in grouped.to_pylist()}


def first_row(table: pa.Table, sort: list[str]) -> dict[str, object]:
    """The first row of ``table`` in the order of ``sort`` (all ascending)."""
    order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in sort])
    return table.take(order[:1]).to_pylist()[0]
