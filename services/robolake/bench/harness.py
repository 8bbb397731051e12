"""What every benchmark shares: services under measurement, the bench's devices and episode, the
tally of acknowledged uploads and its quantiles.

Figures from different benchmarks are compared in one table, so they must be taken the same way:
the same environment, the same RSS sampling, the same latency quantile.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from minio.deleteobjects import DeleteObject

from robolake.devices.registry import DeviceRegistry
from robolake.endpoints import Endpoints
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode
from robolake.launch import ServiceProcess, http_ok, robolake_argv, service_env
from robolake.provision import s3_client
from robolake.stack.process import rss_mib

log = logging.getLogger(__name__)

TICKET_KEY = "bench-ticket-key-0123456789abcdef"
#: A drained writer flushes everything it buffered; on a loaded two-core machine that can take
#: longer than the launcher's default.
STOP_GRACE_S = 90.0
RSS_INTERVAL_S = 0.2


@dataclass
class Service:
    """A robolake service under measurement: its process and the peak RSS sampled meanwhile."""

    process: ServiceProcess
    peak_rss_mib: float = 0.0
    _sampler: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls, argv: list[str], env: dict[str, str], log_path: Path, *, nice: int = 0
    ) -> Service:
        """``robolake ARGV`` at scheduling priority ``nice``, logged to ``log_path``."""
        process = ServiceProcess.start(
            argv[0], robolake_argv(*argv), env=env, log_path=log_path, nice=nice
        )
        return cls(process)

    async def _sample(self) -> None:
        while self.process.running:
            self.peak_rss_mib = max(self.peak_rss_mib, rss_mib(self.process.pid))
            await asyncio.sleep(RSS_INTERVAL_S)

    def watch(self) -> None:
        """Sample RSS from now on: after start-up, so the figure is the service's under load."""
        self._sampler = asyncio.create_task(self._sample())

    async def ready(self, url: str) -> None:
        await self.process.ready(http_ok(url))

    def _unwatch(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()

    async def stop(self) -> None:
        try:
            await self.process.astop(STOP_GRACE_S)
        finally:
            self._unwatch()


def fresh_dataset(endpoints: Endpoints, prefix: str) -> Endpoints:
    """``endpoints`` with a new bucket and an Iceberg namespace of the same name: a benchmark
    run's dataset, apart from the demo's and every other run's (tables live in the catalog)."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    return replace(endpoints, s3_bucket=name, catalog_namespace=name.replace("-", "_"))


def bench_env(endpoints: Endpoints, topic: str, devices: Path) -> dict[str, str]:
    """The environment of a bench service: the stack, the ticket key, devices, the topic."""
    return service_env(endpoints, chunk_topic=topic, devices_file=devices, ticket_key=TICKET_KEY)


def bench_episode(seed: int, seconds: float = 10.0) -> SyntheticEpisode:
    """The humanoid of the contract: 29 joints, IMU, 3 cameras of 640x480 JPEG at 30 Hz."""
    return generate_episode(
        SyntheticSpec(
            seed=seed,
            frame_seed=1,
            duration_s=seconds,
            device_id="bench-dev-000",
            capture_point_id="bench-cp",
        )
    )


def bench_devices(path: Path, count: int) -> tuple[Path, dict[str, str]]:
    """A device registry at ``path`` with ``bench-dev-000``...: its path, and each device's
    token in device order."""
    registry = DeviceRegistry(path)
    ids = [f"bench-dev-{i:03d}" for i in range(count)]
    tokens = registry.add_many([(d, "bench-cp", "bench-org") for d in ids], replace=True)
    return registry.path, {d: tokens[d] for d in ids}


def chunk_headers(token: str, ticket: str, digest: str) -> dict[str, str]:
    """The headers of a chunk PUT (schemas/collector.openapi.json)."""
    return {
        "Authorization": f"Bearer {token}",
        "Upload-Ticket": ticket,
        "Robolake-Checksum": digest,
        "Content-Type": "application/vnd.apache.arrow.stream",
    }


@dataclass
class CollectorFigures:
    mb_per_s: float
    chunks: int
    ack_p50_ms: float
    ack_p99_ms: float
    peak_rss_mib: float
    errors: int


@dataclass
class UploadTally:
    """What device upload loops saw: acknowledged payload bytes, ack latencies (s), refusals."""

    sent: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def figures(self, elapsed: float, peak_rss_mib: float) -> CollectorFigures:
        """MB/s over ``elapsed`` seconds, ack latency quantiles, refusals."""
        latencies = sorted(self.latencies)
        return CollectorFigures(
            mb_per_s=self.sent / 1e6 / elapsed,
            chunks=len(latencies),
            ack_p50_ms=quantile(latencies, 0.5) * 1000,
            ack_p99_ms=quantile(latencies, 0.99) * 1000,
            peak_rss_mib=peak_rss_mib,
            errors=self.errors,
        )


def quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (0 for none): the nearest rank, no interpolation."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


def drop_dataset(endpoints: Endpoints) -> None:
    """Delete a bench dataset's bucket once its figure is taken: each drain leaves gigabytes in
    MinIO (a shared disk filled up after 25 drains of 1.5 GB), and 10^5 small objects take
    about 2.8 GB (a metadata file per object). The tables' catalog entries stay (metadata only)."""
    client = s3_client(endpoints)
    bucket = endpoints.s3_bucket
    objects = client.list_objects(bucket, recursive=True)
    errors = list(client.remove_objects(bucket, (DeleteObject(o.object_name) for o in objects)))
    if errors:
        log.warning("%d objects of %s not deleted: %s", len(errors), bucket, errors[0])
        return
    client.remove_bucket(bucket)
