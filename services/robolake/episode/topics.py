"""Kafka topics of the episode contract (documented in ``schemas/kafka-records.md``).

The local stack creates these topics; the collector produces to them and the writer consumes them.
"""

from __future__ import annotations

from typing import Final

#: Chunk, manifest and completion records; key = episode_id so an episode stays in one partition.
CHUNK_TOPIC: Final = "robolake.chunks.v1"
#: Records the writer could not store, with the reason in headers.
DEAD_LETTER_TOPIC: Final = "robolake.deadletter.v1"
#: Writers' commit requests to their group's elected committer (``--committer elected``), one
#: partition: the group on it is the election. Key = writer group.
COMMIT_REQUEST_TOPIC: Final = "robolake.commits.requests.v1"
#: The elected committer's answers. Key = writer group.
COMMIT_RESULT_TOPIC: Final = "robolake.commits.results.v1"
#: How long the commit topics keep messages (ms): a day, far below the orphan retention (3 days).
COMMIT_TOPIC_RETENTION_MS: Final = 86_400_000

#: Default upper bound of one chunk's bytes (the Arrow IPC stream a device uploads).
DEFAULT_MAX_CHUNK_BYTES: Final = 4 * 1024 * 1024
#: Room for headers, key and record framing on top of the chunk bytes.
RECORD_OVERHEAD_BYTES: Final = 64 * 1024
#: ``max.message.bytes`` of the topics: a maximal chunk plus its framing always fits.
MAX_RECORD_BYTES: Final = DEFAULT_MAX_CHUNK_BYTES + RECORD_OVERHEAD_BYTES

#: Partitions of the chunk topic in the local stack; production clusters choose their own.
DEFAULT_CHUNK_PARTITIONS: Final = 8
