"""A running pipeline for end-to-end and chaos tests: collector and writer as real processes.

Both use the test's own topic and bucket; the caller drives load with the simulator and audits
the shards with :func:`robolake.dataset.audit.audit_chunks`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from isolation import isolated

from robolake.dataset.audit import ChunkAudit, audit_chunks
from robolake.endpoints import Endpoints
from robolake.launch import ServiceProcess, http_ok, robolake_argv, service_env, stop_all
from robolake.stack.process import free_port

TICKET_KEY = "pipeline-test-ticket-key-0123456789"


@dataclass
class Pipeline:
    """Collector + writer subprocesses on a topic and bucket."""

    endpoints: Endpoints
    topic: str
    bucket: str
    workdir: Path
    writer_args: tuple[str, ...] = ("--flush-age", "2")
    procs: dict[str, ServiceProcess] = field(default_factory=dict)
    collector_port: int = 0
    writer_port: int = 0

    @property
    def devices_file(self) -> Path:
        return self.workdir / "devices.json"

    @property
    def collector_url(self) -> str:
        return f"http://127.0.0.1:{self.collector_port}"

    @property
    def dataset_endpoints(self) -> Endpoints:
        return isolated(self.endpoints, self.bucket)

    def log(self, name: str) -> str:
        return self.procs[name].log()

    async def __aenter__(self) -> Pipeline:
        env = service_env(
            self.dataset_endpoints,
            chunk_topic=self.topic,
            devices_file=self.devices_file,
            ticket_key=TICKET_KEY,
        )
        self.collector_port, self.writer_port = free_port(), free_port()
        argv = {
            "collector": ["collector", "--port", str(self.collector_port), "--device-rate", "0"],
            "writer": ["writer", "--metrics-port", str(self.writer_port),
                       "--group", f"pipeline-{self.topic}", *self.writer_args],
        }  # fmt: skip
        for name, args in argv.items():
            self.procs[name] = ServiceProcess.start(
                name, robolake_argv(*args), env=env, log_path=self.workdir / f"{name}.log"
            )
        try:
            await self.procs["collector"].ready(http_ok(f"{self.collector_url}/readyz"))
            await self.procs["writer"].ready(
                http_ok(f"http://127.0.0.1:{self.writer_port}/metrics")
            )
        except BaseException:
            await asyncio.to_thread(stop_all, self.procs.values())
            raise
        return self

    async def audit(
        self, acknowledged: list[tuple[str, str, int]], *, timeout: float = 180
    ) -> ChunkAudit:
        """Audit the shards until every acknowledged chunk is there (or the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            audit = await asyncio.to_thread(audit_chunks, self.dataset_endpoints, acknowledged)
            if audit.missing == 0 or time.monotonic() > deadline:
                return audit
            await asyncio.sleep(2)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(stop_all, self.procs.values(), grace=90)
        codes = {name: process.returncode for name, process in self.procs.items()}
        if kind is None:
            for name, code in codes.items():
                assert code == 0, f"{name} exited {code}:\n{self.log(name)[-3000:]}"
