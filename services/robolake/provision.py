"""Provisioning: the Kafka topics and the S3 bucket robolake needs, created idempotently.

``robolake stack up`` runs it against the local stack and ``robolake init`` against any cluster
(for example the ``init`` service of deploy/docker-compose.yml), so both get the same topics with
the same configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from minio import Minio

from robolake.endpoints import Endpoints
from robolake.episode.topics import (
    CHUNK_TOPIC,
    COMMIT_REQUEST_TOPIC,
    COMMIT_RESULT_TOPIC,
    COMMIT_TOPIC_RETENTION_MS,
    DEAD_LETTER_TOPIC,
    DEFAULT_CHUNK_PARTITIONS,
    MAX_RECORD_BYTES,
)
from robolake.errors import RobolakeError

log = logging.getLogger(__name__)


class ProvisionError(RobolakeError):
    """A topic or bucket could not be created."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic robolake needs, with the configuration it must have."""

    name: str
    partitions: int
    config: dict[str, str]


def robolake_topics(partitions: int = DEFAULT_CHUNK_PARTITIONS) -> list[TopicSpec]:
    """The topics of the episode contract, sized so the largest chunk record always fits."""
    record_config = {"max.message.bytes": str(MAX_RECORD_BYTES)}
    return [
        TopicSpec(CHUNK_TOPIC, partitions, dict(record_config)),
        TopicSpec(DEAD_LETTER_TOPIC, 1, dict(record_config)),
        *commit_topics(),
    ]


def commit_topics() -> list[TopicSpec]:
    """The writers' commit control topics (:mod:`robolake.writer.control`): one partition
    each (the request topic's one partition is what the committer election hands out)."""
    config = {
        "max.message.bytes": str(MAX_RECORD_BYTES),
        "retention.ms": str(COMMIT_TOPIC_RETENTION_MS),
    }
    return [
        TopicSpec(name, 1, dict(config)) for name in (COMMIT_REQUEST_TOPIC, COMMIT_RESULT_TOPIC)
    ]


async def ensure_topics(bootstrap: str, specs: Sequence[TopicSpec]) -> None:
    """Create the topics that are missing and bring the configuration of existing ones in line.

    Idempotent: running it on every ``stack up`` (or every service start) is safe.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(spec.name, spec.partitions, 1, topic_configs=spec.config)
                    for spec in missing
                ]
            )
            for name, code, *rest in response.topic_errors:
                # 36 = TOPIC_ALREADY_EXISTS: another process created it first; that is fine.
                if code not in (0, 36):
                    message = rest[0] if rest else ""
                    raise ProvisionError(f"cannot create topic {name}: error {code} {message}")
            log.info("created topics %s", ", ".join(spec.name for spec in missing))
        present = [spec for spec in specs if spec.name in existing and spec.config]
        if present:
            await admin.alter_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, spec.name, spec.config)
                    for spec in present
                ]
            )
    finally:
        await admin.close()


def s3_client(endpoints: Endpoints) -> Minio:
    """A ``minio`` client for the endpoints' S3 service."""
    return Minio(
        endpoints.s3_host,
        access_key=endpoints.s3_access_key,
        secret_key=endpoints.s3_secret_key,
        secure=endpoints.s3_secure,
        region=endpoints.s3_region,
    )


def ensure_bucket(endpoints: Endpoints) -> None:
    """Create the dataset bucket if it does not exist."""
    client = s3_client(endpoints)
    if not client.bucket_exists(endpoints.s3_bucket):
        client.make_bucket(endpoints.s3_bucket)
        log.info("created bucket %s", endpoints.s3_bucket)


async def provision(endpoints: Endpoints, *, partitions: int = DEFAULT_CHUNK_PARTITIONS) -> None:
    """Create robolake's topics and bucket; safe to run any number of times."""
    await ensure_topics(endpoints.kafka_bootstrap, robolake_topics(partitions))
    ensure_bucket(endpoints)
