"""The collector's settings: flags override environment variables, which override defaults."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from robolake.collector.errors import CollectorError
from robolake.devices.registry import ENV_DEVICES_FILE, default_devices_file
from robolake.episode.topics import CHUNK_TOPIC, DEFAULT_MAX_CHUNK_BYTES

ENV_TICKET_KEY: Final = "ROBOLAKE_TICKET_KEY"
ENV_CHUNK_TOPIC: Final = "ROBOLAKE_CHUNK_TOPIC"
ENV_REUSE_PORT: Final = "ROBOLAKE_COLLECTOR_REUSE_PORT"
ENV_WORKERS: Final = "ROBOLAKE_COLLECTOR_WORKERS"
ENV_PRODUCER: Final = "ROBOLAKE_COLLECTOR_PRODUCER"
#: The Kafka clients the collector can produce with (collector/sink.py maps them to factories).
PRODUCERS: Final = ("librdkafka", "aiokafka")

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True)
class CollectorSettings:
    """Everything one collector process needs to know besides the endpoints.

    ``reuse_port`` (``--reuse-port``, env ``ROBOLAKE_COLLECTOR_REUSE_PORT``, default off) sets
    ``SO_REUSEPORT`` on the listening socket, so several collector processes on one host can
    listen on the same port and the kernel spreads incoming *connections* among them (one
    process per core, no load balancer in front). A keep-alive connection stays with the
    process that accepted it. Each process keeps its own state: ``/metrics``, ``/readyz`` and
    ``/healthz`` on the shared port answer for whichever process the connection landed on, so
    scrape and probe each process some other way. Off by default: with it, a second collector
    started by mistake on the same port silently shares the traffic instead of failing to bind.
    ``--workers N`` is the usual way to fill a node: its workers always set ``SO_REUSEPORT``
    among themselves, their ``/metrics`` is merged, and the master checks the port is free
    first unless ``--reuse-port`` says sharing it with other commands is intended.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    devices_file: Path = field(default_factory=default_devices_file)
    ticket_key: bytes = field(default=b"", repr=False)
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES
    max_manifest_bytes: int = 256 * 1024
    #: 128 MiB: over a second of what one process acknowledges (~130 MB/s measured), and it
    #: keeps the process under 300 MB RSS with 1,000 connections open (make bench).
    inflight_bytes: int = 128 * 1024 * 1024
    device_rate_bytes: float = 64e6
    device_burst_bytes: float = 128e6
    send_timeout: float = 15.0
    drain_seconds: float = 25.0
    #: A body must arrive within this many seconds (a slow-loris client holds no slot forever).
    body_timeout: float = 120.0
    ticket_ttl: float = 7 * 24 * 3600.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    topic: str = CHUNK_TOPIC
    #: SO_REUSEPORT on the listening socket: several processes share one port (see above).
    reuse_port: bool = False
    #: Worker processes of one ``robolake collector`` command (``--workers``): more than one
    #: starts a master that runs them on the shared port (``collector/workers.py``). The CLI
    #: defaults to :func:`available_cores`; one collector object is always one process.
    workers: int = 1
    #: Which Kafka client produces (``--producer``): librdkafka (confluent-kafka) by default,
    #: since it spends about half aiokafka's CPU per byte on ~1 MiB records (docs/performance.md);
    #: aiokafka stays selectable, the writer's client, for comparison and as a fallback.
    producer: str = "librdkafka"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CollectorSettings:
        if (args.tls_cert is None) != (args.tls_key is None):
            raise CollectorError("--tls-cert and --tls-key go together; give both or neither")
        key = os.environ.get(ENV_TICKET_KEY, "")
        if not key:
            raise CollectorError(
                f"{ENV_TICKET_KEY} is not set: every collector replica needs the same secret "
                "(e.g. `openssl rand -hex 32`) to sign and check upload tickets"
            )
        return cls(
            host=args.host,
            port=args.port,
            devices_file=args.devices_file or default_devices_file(),
            ticket_key=key.encode(),
            max_chunk_bytes=args.max_chunk_bytes,
            inflight_bytes=args.inflight_bytes,
            device_rate_bytes=args.device_rate,
            device_burst_bytes=max(args.device_rate * 2, float(args.max_chunk_bytes)),
            drain_seconds=args.drain_seconds,
            body_timeout=args.body_timeout,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            topic=args.topic,
            reuse_port=(
                _env_flag(ENV_REUSE_PORT) if args.reuse_port is None else bool(args.reuse_port)
            ),
            workers=_workers(args.workers),
            producer=_producer(args.producer),
        )


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: what a container or ``taskset``
    gives it, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _workers(flag: int | None) -> int:
    """``--workers``, else ``$ROBOLAKE_COLLECTOR_WORKERS``, else one per available core."""
    if flag is not None:
        count, source = flag, "--workers"
    elif text := os.environ.get(ENV_WORKERS, "").strip():
        try:
            count, source = int(text), ENV_WORKERS
        except ValueError:
            raise CollectorError(f"{ENV_WORKERS}={text!r}: expected a whole number >= 1") from None
    else:
        return available_cores()
    if count < 1:
        raise CollectorError(f"{source} {count}: expected a whole number >= 1 (1 = no master)")
    return count


def _producer(name: str) -> str:
    """``--producer`` is checked by argparse; the same value from the environment is not."""
    if name not in PRODUCERS:
        raise CollectorError(f"{ENV_PRODUCER}={name!r}: expected one of {', '.join(PRODUCERS)}")
    return name


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_flag(name: str) -> bool:
    """An on/off variable: unset or empty is off; ``1/true/yes/on`` or ``0/false/no/off``."""
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise CollectorError(f"{name}={os.environ[name]!r}: expected 1/true/yes/on or 0/false/no/off")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The collector's flags; each defaults to a ``ROBOLAKE_COLLECTOR_*`` variable."""
    parser.add_argument(
        "--host", default=os.environ.get("ROBOLAKE_COLLECTOR_HOST", "127.0.0.1"),
        help="address to listen on (env ROBOLAKE_COLLECTOR_HOST, default 127.0.0.1)",
    )  # fmt: skip
    parser.add_argument(
        "--port", type=int, default=_env_int("ROBOLAKE_COLLECTOR_PORT", 8080),
        help="port to listen on (env ROBOLAKE_COLLECTOR_PORT, default 8080)",
    )  # fmt: skip
    parser.add_argument(
        "--devices-file", type=Path, default=None,
        help=f"device registry (env {ENV_DEVICES_FILE}, default {default_devices_file()})",
    )  # fmt: skip
    parser.add_argument(
        "--max-chunk-bytes", type=int,
        default=_env_int("ROBOLAKE_MAX_CHUNK_BYTES", DEFAULT_MAX_CHUNK_BYTES),
        help="largest chunk accepted (env ROBOLAKE_MAX_CHUNK_BYTES, default 4 MiB)",
    )  # fmt: skip
    parser.add_argument(
        "--inflight-bytes", type=int,
        default=_env_int("ROBOLAKE_COLLECTOR_INFLIGHT_BYTES", CollectorSettings.inflight_bytes),
        help="cap on request bytes held at once; beyond it, 503 + Retry-After "
        "(env ROBOLAKE_COLLECTOR_INFLIGHT_BYTES, default 128 MiB)",
    )  # fmt: skip
    parser.add_argument(
        "--device-rate", type=float,
        default=float(os.environ.get("ROBOLAKE_DEVICE_RATE_BYTES", 64e6)),
        help="sustained bytes/s per device before 429 + Retry-After, 0 = unlimited "
        "(env ROBOLAKE_DEVICE_RATE_BYTES, default 64e6)",
    )  # fmt: skip
    parser.add_argument(
        "--topic", default=os.environ.get(ENV_CHUNK_TOPIC, CHUNK_TOPIC),
        help=f"Kafka topic for episode records (env {ENV_CHUNK_TOPIC}, default {CHUNK_TOPIC})",
    )  # fmt: skip
    parser.add_argument(
        "--body-timeout", type=float,
        default=float(os.environ.get("ROBOLAKE_COLLECTOR_BODY_TIMEOUT", 120.0)),
        help="seconds a request body may take to arrive before 408 "
        "(env ROBOLAKE_COLLECTOR_BODY_TIMEOUT, default 120)",
    )  # fmt: skip
    parser.add_argument(
        "--tls-cert", type=Path, default=os.environ.get("ROBOLAKE_COLLECTOR_TLS_CERT") or None,
        help="serve HTTPS with this PEM certificate chain (env ROBOLAKE_COLLECTOR_TLS_CERT); "
        "without it, plain HTTP for use behind a TLS-terminating load balancer",
    )  # fmt: skip
    parser.add_argument(
        "--tls-key", type=Path, default=os.environ.get("ROBOLAKE_COLLECTOR_TLS_KEY") or None,
        help="PEM private key of --tls-cert (env ROBOLAKE_COLLECTOR_TLS_KEY)",
    )  # fmt: skip
    parser.add_argument(
        "--drain-seconds", type=float,
        default=float(os.environ.get("ROBOLAKE_COLLECTOR_DRAIN_SECONDS", 25.0)),
        help="on SIGTERM, how long in-flight uploads may finish (default 25)",
    )  # fmt: skip
    parser.add_argument(
        "--reuse-port", action=argparse.BooleanOptionalAction, default=None,
        help="set SO_REUSEPORT so several collector processes on this host share --port and "
        "the kernel spreads connections among them (e.g. one process per core); /metrics and "
        "/readyz on the shared port then answer for one process only "
        f"(env {ENV_REUSE_PORT}=1, default off)",
    )  # fmt: skip
    parser.add_argument(
        "--producer", choices=PRODUCERS,
        default=os.environ.get(ENV_PRODUCER, CollectorSettings.producer),
        help="Kafka client that produces the records: librdkafka (confluent-kafka; C threads do "
        "the batching and framing) or aiokafka (pure Python, about twice the CPU per byte) "
        f"(env {ENV_PRODUCER}, default {CollectorSettings.producer})",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="worker processes sharing --port through SO_REUSEPORT, run by a master that "
        "forwards SIGTERM/SIGINT to them, waits for each to drain and restarts one that dies "
        "(with backoff; a crash loop stops it with an error); /metrics of any worker is the sum "
        "of all of them. 1 = a single process, no master "
        f"(env {ENV_WORKERS}, default: one per available core, {available_cores()} here)",
    )  # fmt: skip
