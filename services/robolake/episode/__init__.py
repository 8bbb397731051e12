"""The episode contract: one language for devices, collector, writer and ML readers.

The files in ``schemas/`` are the single source of truth; this package loads and implements them,
one module per role:

- ``schemas``       where the contract files are (:func:`schemas_dir`)
- ``errors``        the closed set of rejection reasons and the errors carrying them
- ``tables``        Arrow schemas written as data, and their fingerprints
- ``stream_types``  the registry of ``schemas/stream_types/``
- ``ids``           UUIDv7 episode ids and nanosecond timestamps
- ``manifest``      episode manifests; ``completion`` the per-stream counts sent at the end
- ``chunks``        the chunk wire format: encode, decode, validate, split
- ``checksums``     sha256 of the exact bytes, for Kafka headers and HTTP Content-Digest
- ``records``       Kafka keys, headers and dead-letter headers
- ``topics``        Kafka topic names and record size limits
- ``shards``        Parquet shard paths, layout and the episodes index
- ``synthetic``     deterministic humanoid episodes for tests, simulator and benchmarks
"""

from robolake.episode.schemas import schemas_dir

__all__ = ["schemas_dir"]
