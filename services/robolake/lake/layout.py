"""Where the tables and their files live: the one module that spells the table layout.

Every table of a deployment lives in one namespace (``ROBOLAKE_CATALOG_NAMESPACE``, default
``robolake``): one per stream type version (``joint_state_v1`` ...) and the episodes index
(``episodes_index_v1``). Each table's location is chosen by robolake, not by the catalog, so the
writer knows where a data file goes without asking: ``s3://BUCKET/lake/NAMESPACE/TABLE``, data
under ``data/date=YYYY-MM-DD/``, metadata under ``metadata/`` (Iceberg's default inside the
location).

Data-file and checkpoint names carry topic, partition, first offset, the partition's flush number
and the writing process's token: deterministic for a flush (a retried upload writes the same
key), never shared between two writers (a zombie's upload cannot overwrite the file a new owner
committed -- the hole the listing layout had). Files no commit references are orphans, removed
after a retention by maintenance, never by a writer's recovery (a zombie may still commit them).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Final

DEFAULT_NAMESPACE: Final = "robolake"
#: Top-level prefix of the table locations in the bucket.
LAKE_PREFIX: Final = "lake"
#: The episodes index table: one row per indexing of an episode (newest ``indexed_at`` wins).
INDEX_TABLE: Final = "episodes_index_v1"
#: Audit of erasures: who removed which episode, why and when (``robolake episodes delete``).
ERASURES_TABLE: Final = "erasures_v1"
#: The writer's private bookkeeping (checkpoints); not part of any table.
CHECKPOINT_ROOT: Final = "_writer/checkpoints/"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def shard_table(stream_type_key: str) -> str:
    """Table of a stream type version: ``joint_state.v1`` -> ``joint_state_v1``."""
    name, _, version = stream_type_key.rpartition(".v")
    table = f"{name}_v{version}"
    if not name or not version.isdigit() or not _NAME.match(table):
        raise ValueError(f"{stream_type_key!r} is not a stream type key like 'joint_state.v1'")
    return table


def stream_type_of(table: str) -> str | None:
    """The stream type key of a shard table (``joint_state_v1`` -> ``joint_state.v1``)."""
    if table in (INDEX_TABLE, ERASURES_TABLE):
        return None
    name, _, version = table.rpartition("_v")
    return f"{name}.v{version}" if name and version.isdigit() else None


def table_prefix(namespace: str, table: str) -> str:
    """Key prefix (inside the bucket) of a table's location."""
    return f"{LAKE_PREFIX}/{namespace}/{table}"


def table_location(bucket: str, namespace: str, table: str) -> str:
    """``s3://`` location of a table."""
    return f"s3://{bucket}/{table_prefix(namespace, table)}"


def flush_name(topic: str, partition: int, first_offset: int, flush: int, token: str) -> str:
    """The stem shared by a flush's data files and checkpoint."""
    return f"{topic}+{partition:03d}+{first_offset:019d}-{flush:010d}-{token}"


def data_file_key(
    namespace: str,
    table: str,
    date: dt.date,
    topic: str,
    partition: int,
    first_offset: int,
    flush: int,
    token: str,
) -> str:
    """Bucket key of one data file a flush writes into ``table``."""
    stem = flush_name(topic, partition, first_offset, flush, token)
    return f"{table_prefix(namespace, table)}/data/date={date.isoformat()}/{stem}.parquet"


def rewritten_key(prefix: str, date: dt.date | None, kind: str) -> str:
    """Bucket key of a file written by maintenance, not by a flush (``kind``: ``compacted``,
    ``erasure`` ...) in the table at ``prefix``: a fresh name each time, so a rerun after a
    crash never overwrites a file a commit may reference."""
    folder = f"date={date.isoformat()}/" if date is not None else ""
    return f"{prefix}/data/{folder}{kind}-{uuid.uuid4().hex}.parquet"


def checkpoint_key(topic: str, partition: int, first_offset: int, flush: int, token: str) -> str:
    """Bucket key of a table-mode flush checkpoint (the listing layout's have no token)."""
    return f"{CHECKPOINT_ROOT}{topic}/{partition:03d}/{first_offset:019d}-{flush:010d}-{token}.json"


def key_of(path: str, bucket: str) -> str:
    """The bucket key of an ``s3://bucket/key`` path (a file path in table metadata)."""
    for scheme in ("s3://", "s3a://", "s3n://"):
        if path.startswith(scheme):
            found, _, key = path[len(scheme) :].partition("/")
            if found != bucket:
                raise ValueError(f"{path} is not in bucket {bucket!r}")
            return key
    raise ValueError(f"{path} is not an s3:// path")
