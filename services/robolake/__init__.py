"""robolake: the ingestion backend for real-world robot data collection.

Capture devices upload episodes over HTTP to stateless collectors, which stream them into Kafka;
writers batch them into Parquet shards on S3-compatible storage. One subpackage per service:

- ``robolake.stack``   the local development stack (Kafka, MinIO, Prometheus) started without Docker
- ``robolake.episode`` the episode contract shared by devices, collector, writer and readers
"""

__version__ = "0.1.0"
