"""Apache Kafka for the local stack: KRaft combined mode, one node, on loopback.

The jars come from Maven Central through ``deploy/local/pom.xml`` (``mvn
dependency:copy-dependencies``) and are cached per version. Storage is formatted once with
``kafka.tools.StorageTool``; the broker runs as ``java -cp 'lib/*' kafka.Kafka server.properties``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient

from robolake.episode.topics import MAX_RECORD_BYTES
from robolake.stack.errors import StackError
from robolake.stack.jvm import java, resolve_classpath
from robolake.stack.paths import cache_dir, deploy_dir

log = logging.getLogger(__name__)

#: Must match ``kafka.version`` in deploy/local/pom.xml.
KAFKA_VERSION: Final = "4.1.1"
#: The broker gets a modest heap: the stack shares a 2-core machine with the services under test.
KAFKA_HEAP: Final = "-Xmx768m"


def lib_dir() -> Path:
    """Where the jars of :data:`KAFKA_VERSION` are cached."""
    return cache_dir() / "kafka" / KAFKA_VERSION / "lib"


def install() -> Path:
    """Resolve the broker and tool jars with Maven once; later calls return the cache at once."""
    return resolve_classpath(
        deploy_dir() / "local" / "pom.xml",
        lib_dir(),
        what="Kafka",
        version=KAFKA_VERSION,
        properties={"kafka.version": KAFKA_VERSION},
        expect=f"kafka_2.13-{KAFKA_VERSION}.jar",
    )


def java_command(main_class: str, args: Sequence[str], *, log4j_config: Path) -> list[str]:
    """A ``java`` command line running ``main_class`` from the cached jars."""
    return [
        java(),
        KAFKA_HEAP,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j_config}",
        "-cp",
        str(lib_dir() / "*"),
        main_class,
        *args,
    ]


_LOG4J2: Final = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def write_config(home: Path, *, port: int, controller_port: int) -> Path:
    """Write ``server.properties`` and the log4j2 configuration; return the properties path."""
    home.mkdir(parents=True, exist_ok=True)
    data = home / "data"
    (home / "log4j2.properties").write_text(_LOG4J2)
    properties = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "message.max.bytes": str(MAX_RECORD_BYTES),
        "replica.fetch.max.bytes": str(MAX_RECORD_BYTES),
        "log.retention.hours": "168",
        "log.segment.bytes": str(256 * 1024 * 1024),
    }
    path = home / "server.properties"
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    return path


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    It may start with ``-``, so it is passed as ``--cluster-id=<id>``, never as a separate
    argument the tool's parser would take for an option.
    """
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def format_storage(home: Path, properties: Path) -> None:
    """Format the KRaft log directory once; a formatted directory is left alone."""
    if (home / "data" / "meta.properties").is_file():
        return
    command = java_command(
        "kafka.tools.StorageTool",
        ["format", f"--cluster-id={_new_cluster_id()}", "--config", str(properties)],
        log4j_config=home / "log4j2.properties",
    )
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(
            f"kafka StorageTool format failed (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-4000:]}"
        )


def broker_command(home: Path, properties: Path) -> list[str]:
    """The command line of the broker."""
    return java_command("kafka.Kafka", [str(properties)], log4j_config=home / "log4j2.properties")


async def _probe(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), timeout=5)
        await asyncio.wait_for(admin.list_topics(), timeout=5)
    finally:
        await admin.close()


def is_ready(bootstrap: str) -> bool:
    """Whether the broker answers a metadata request (raises while it does not).

    A plain TCP connect comes first so that the client library does not log a connection error
    for every poll while the JVM is still starting.
    """
    host, _, port = bootstrap.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=2):
        pass
    asyncio.run(_probe(bootstrap))
    return True
