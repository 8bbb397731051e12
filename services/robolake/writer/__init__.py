"""The writer: Kafka chunk topic -> Parquet shards and the episodes index on S3.

Module map (the tree is the architecture):

- ``consumer``     the run loop: consumer group, rebalances, flush/commit order, backpressure
- ``source``       the narrow consumer interface the loop takes, and its aiokafka build
- ``partition``    one partition: judge records, buffer rows, prepare flushes (pure logic)
- ``batcher``      per-partition buffers and the flush policy (size, age; injected clock)
- ``shards``       Parquet encoding following ``robolake.episode.shards``
- ``index``        per-episode state and the episodes index rows
- ``dedup``        the chunk ledger that drops device retries
- ``checkpoints``  flush checkpoints and recovery: the exactly-once argument
- ``ledger``       the system of record: bucket checkpoints or the Iceberg tables (staging)
- ``committer``    one committer thread per table: batches flushes into one snapshot
- ``coordinator``  ``--committer elected``: one committer for a whole group, elected over Kafka;
  ``control`` its request and answer messages
- ``deadletters``  the dead-letter topic
- ``storage``      the ``ObjectStore`` protocol and its MinIO implementation
- ``metrics``      Prometheus metrics; ``settings`` flags and environment; ``service`` and
  ``cli`` the process

Guarantees, in short (docs/writer.md has the long form):

1. **No loss**: offsets are committed only after every object of a flush is stored, and a flush
   is retried (consumption paused) until storage takes it.
2. **No duplicate rows from replays**: each flush first writes a checkpoint naming the objects it
   will write; a partition's new owner deletes the objects of uncommitted flushes and resumes at
   the committed offset with the state saved by the last committed flush. Replays then produce
   each row once, whatever their flush boundaries (:mod:`robolake.writer.checkpoints`).
3. **Device retries dropped**: a chunk whose (episode_id, stream, seq) was stored with the same
   checksum is dropped -- for as long as the episode's state is kept: while it is open and for
   ``dedup_window_s`` after it was indexed, across restarts and rebalances (the ledger is in the
   checkpoint). A retry arriving later than that is stored again; readers drop such stragglers
   by the unique key. A different checksum under the same key goes to dead letters.
4. **Dead letters are at least once**: produced before the covering commit, possibly twice after
   a crash.
"""
