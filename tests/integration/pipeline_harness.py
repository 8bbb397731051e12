"""A running pipeline for end-to-end and chaos tests: collector and writer as real processes.

Both use the test's own topic and bucket; the caller drives load with the simulator and audits
the shards with :func:`robolake.dataset.audit.audit_chunks`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

import aiohttp

from robolake.dataset.audit import ChunkAudit, audit_chunks
from robolake.endpoints import Endpoints
from robolake.stack.process import free_port


@dataclass
class Pipeline:
    """Collector + writer subprocesses on a topic and bucket."""

    endpoints: Endpoints
    topic: str
    bucket: str
    workdir: Path
    writer_args: tuple[str, ...] = ("--flush-age", "2")
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
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
        return replace(self.endpoints, s3_bucket=self.bucket)

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    async def __aenter__(self) -> Pipeline:
        env = {
            **os.environ,
            **self.dataset_endpoints.to_env(),
            "ROBOLAKE_TICKET_KEY": "pipeline-test-ticket-key-0123456789",
            "ROBOLAKE_DEVICES_FILE": str(self.devices_file),
            "ROBOLAKE_CHUNK_TOPIC": self.topic,
        }
        self.collector_port, self.writer_port = free_port(), free_port()
        argv = {
            "collector": ["collector", "--port", str(self.collector_port), "--device-rate", "0"],
            "writer": ["writer", "--metrics-port", str(self.writer_port),
                       "--group", f"pipeline-{self.topic}", *self.writer_args],
        }  # fmt: skip
        for name, args in argv.items():
            with (self.workdir / f"{name}.log").open("wb") as out:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "robolake", *args],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        await self._ready(f"{self.collector_url}/readyz", "collector")
        await self._ready(f"http://127.0.0.1:{self.writer_port}/metrics", "writer")
        return self

    async def _ready(self, url: str, name: str) -> None:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.procs[name].poll() is None, self.log(name)
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"{name} not ready at {url}:\n{self.log(name)}")

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
        codes = {}
        for name, proc in self.procs.items():
            if proc.poll() is None:
                proc.terminate()
            codes[name] = await asyncio.to_thread(proc.wait, 90)
        if kind is None:
            for name, code in codes.items():
                assert code == 0, f"{name} exited {code}:\n{self.log(name)[-3000:]}"
