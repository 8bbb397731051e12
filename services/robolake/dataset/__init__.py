"""Reading the dataset: shards and the episodes index on S3, as pyarrow datasets.

No service is needed: everything here reads the bucket directly, through pyarrow's S3
filesystem, so DuckDB, pandas or PyTorch can consume the same datasets. The object layout is the
shard contract (``schemas/shards.md``, ``robolake.episode.shards``).
"""
