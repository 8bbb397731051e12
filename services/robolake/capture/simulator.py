"""Many capture points at once: the demo's load, the benchmarks' load, the end-to-end tests' load.

Each simulated capture point is one device with its own token, scene and tasks, recording
synthetic episodes (``robolake.episode.synthetic``) and uploading them through its own spool and
:class:`~robolake.capture.client.CaptureClient`, all in one asyncio process sharing a connection
pool. A global byte budget paces the aggregate rate; start times are spread so the capture points
do not all begin at once. The simulated recordings are generated, not captured in real time: a
device "records" an episode and then uploads it, as devices do after an episode ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import shutil
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TextIO

import aiohttp

from robolake.capture.client import CaptureClient
from robolake.capture.errors import CaptureError
from robolake.capture.spool import Spool
from robolake.capture.uploader import Uploader, UploadStats
from robolake.devices.registry import DeviceRegistry
from robolake.episode.manifest import SCENES, Scene
from robolake.episode.synthetic import SyntheticSpec, generate_episode

log = logging.getLogger(__name__)

TASKS = {
    "hospital": ["bring the water cup to bed 3", "open the supply drawer", "hand over the tray"],
    "mall": ["guide the visitor to the lift", "pick up the dropped bag", "restock the shelf"],
    "warehouse": ["pick up the red box", "place the parcel on the conveyor", "scan the barcode"],
    "factory": ["insert the peg into the hole", "tighten the bolt", "sort the parts by colour"],
    "home": ["fold the towel", "load the dishwasher", "water the plant"],
    "lab": ["pipette 10 ml into the beaker", "open the fridge door", "wipe the bench"],
    "other": ["wave to the camera", "walk to the marker", "pick up the ball"],
}


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate."""

    collector_url: str
    devices_file: Path
    spool_dir: Path
    capture_points: int = 1000
    duration_s: float = 60.0
    rate_mb_s: float = 20.0
    episode_seconds: float = 5.0
    cameras: int = 1
    width: int = 320
    height: int = 240
    camera_hz: float = 15.0
    max_chunk_bytes: int = 4 * 1024 * 1024
    connections: int = 256
    seed: int = 0
    drain_timeout_s: float = 300.0
    organisations: int = 10


@dataclass
class SimulationResult:
    """The simulator's summary (also written as JSON)."""

    capture_points: int
    active_capture_points: int
    episodes_started: int
    episodes_completed: int
    chunks: int
    bytes: int
    seconds: float
    retries: int
    errors: dict[str, int]
    ack_p50_ms: float
    ack_p99_ms: float
    failed_episodes: int
    ledger: list[tuple[str, str, int, str]] = field(repr=False, default_factory=list)
    #: The aggregate rate asked for (MB/s; 0: as fast as it goes).
    asked_mb_per_s: float = 0.0
    #: Device seconds spent generating episodes (thread queue included) and uploading them,
    #: summed over every episode: where the capture points' time went.
    generate_s: float = 0.0
    upload_s: float = 0.0
    #: Episodes that started later than their schedule, and by how much in total (seconds).
    episodes_behind: int = 0
    behind_s: float = 0.0
    #: CPU seconds of the simulator's own process during the run.
    simulator_cpu_s: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0

    @property
    def limiter(self) -> Limiter:
        """Who set the pace: ``met`` (at least 90% of the asked rate acknowledged), else the
        simulator (its capture points spent more time generating episodes than uploading
        them) or the system (uploads took longer than the schedule left them)."""
        if self.asked_mb_per_s <= 0 or self.mb_per_s >= MET_SHARE * self.asked_mb_per_s:
            return "met"
        return "simulator" if self.generate_s >= self.upload_s else "system"

    def load_line(self) -> str:
        """Asked vs achieved and why, for the demo's summary (issue 19: a run where the
        simulator could not keep up must say so, not print its limit as robolake's)."""
        asked = f"{self.asked_mb_per_s:.1f} MB/s" if self.asked_mb_per_s > 0 else "unpaced"
        share = self.mb_per_s / self.asked_mb_per_s if self.asked_mb_per_s > 0 else 1.0
        time_split = (
            f"capture points spent {self.generate_s:.0f} s generating episodes and "
            f"{self.upload_s:.0f} s uploading; {self.episodes_behind} episodes started late, "
            f"{self.behind_s:.0f} s in all; the simulator used {self.simulator_cpu_s:.0f} CPU s"
        )
        verdict = {
            "met": "the asked load was met",
            "simulator": "the SIMULATOR could not keep up (generating episodes took longer than "
            "uploading them): the achieved figure is its limit, not robolake's",
            "system": "robolake (or the machine it shares) could not keep up: uploads took "
            "longer than the schedule left",
        }[self.limiter]
        return (
            f"asked {asked}, achieved {self.mb_per_s:.1f} MB/s ({share:.0%}): {verdict}; "
            f"{time_split}"
        )

    def to_json(self, *, with_ledger: bool = False) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "ledger"}
        data["mb_per_s"] = round(self.mb_per_s, 2)
        data["limiter"] = self.limiter
        if with_ledger:
            data["ledger"] = self.ledger
        return data

    def render(self) -> str:
        errors = ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none"
        return "\n".join(
            [
                "simulation summary",
                f"  capture points  {self.capture_points} ({self.active_capture_points} uploaded)",
                f"  episodes        {self.episodes_completed} completed of {self.episodes_started} "
                f"started ({self.failed_episodes} failed)",
                f"  chunks          {self.chunks}",
                f"  data            {self.bytes / 1e9:.3f} GB in {self.seconds:.1f} s = "
                f"{self.mb_per_s:.1f} MB/s",
                f"  load            {self.load_line()}",
                f"  ack latency     p50 {self.ack_p50_ms:.0f} ms, p99 {self.ack_p99_ms:.0f} ms",
                f"  retries         {self.retries}",
                f"  errors by kind  {errors}",
            ]
        )


#: Who set a run's pace (:attr:`SimulationResult.limiter`).
Limiter = Literal["met", "simulator", "system"]
#: Share of the asked rate that counts as met.
MET_SHARE: Final = 0.9
#: An episode that starts more than this after its schedule counts as late (seconds).
LATE_S: Final = 1.0


class ByteBudget:
    """A token bucket of bytes shared by every simulated device: the aggregate rate."""

    def __init__(self, rate_bytes: float) -> None:
        self.rate = rate_bytes
        self._tokens = rate_bytes  # one second of burst
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, size: int) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= size or self._tokens >= self.rate:
                    self._tokens -= size
                    return
                await asyncio.sleep((min(size, self.rate) - self._tokens) / self.rate)


class _Progress:
    def __init__(self, out: TextIO, total: int, duration: float) -> None:
        self.out = out
        self.total = total
        self.duration = duration
        self.tty = out.isatty()
        self._last = 0.0

    def show(
        self, began: float, stats: UploadStats, started: int, completed: int, force: bool = False
    ) -> None:
        now = time.monotonic()
        interval = 0.5 if self.tty else 5.0
        if not force and now - self._last < interval:
            return
        self._last = now
        elapsed = now - began
        mb = stats.acknowledged_bytes / 1e6
        line = (
            f"[{elapsed:6.1f}s/{self.duration:.0f}s] episodes {completed}/{started} "
            f"chunks {stats.acknowledged_chunks} {mb:8.1f} MB {mb / max(elapsed, 1e-9):6.1f} MB/s "
            f"retries {stats.retries} errors {sum(stats.errors.values())}"
        )
        if self.tty:
            self.out.write("\r" + line + "  ")
        else:
            self.out.write(line + "\n")
        self.out.flush()


def _spec(
    config: SimulationConfig,
    index: int,
    episode_no: int,
    device_id: str,
    capture_point: str,
    scene: Scene,
    task: str,
) -> SyntheticSpec:
    """The synthetic episode a simulated device records (it just ended, so it is recent)."""
    return SyntheticSpec(
        seed=config.seed * 1_000_003 + index * 1009 + episode_no,
        frame_seed=config.seed,
        duration_s=config.episode_seconds,
        cameras=tuple(f"cam{c}" for c in range(config.cameras)),
        width=config.width,
        height=config.height,
        camera_rate_hz=config.camera_hz,
        device_id=device_id,
        capture_point_id=capture_point,
        scene=scene,
        task=task,
        started_at_ns=time.time_ns() - int(config.episode_seconds * 1e9),
    )


def enrol(config: SimulationConfig) -> dict[str, tuple[str, str, str]]:
    """Enrol the simulated devices (replacing earlier runs' tokens): device → (token, cp, org)."""
    entries = []
    for index in range(config.capture_points):
        capture_point = f"sim-cp-{index:04d}"
        organisation = f"sim-org-{index % config.organisations:02d}"
        entries.append((f"sim-dev-{index:04d}", capture_point, organisation))
    tokens = DeviceRegistry(config.devices_file).add_many(entries, replace=True)
    return {device: (tokens[device], cp, org) for device, cp, org in entries}


async def simulate(config: SimulationConfig, *, out: TextIO = sys.stderr) -> SimulationResult:
    """Run the simulation; return its summary once every started episode is done (or failed)."""
    devices = enrol(config)
    shutil.rmtree(config.spool_dir, ignore_errors=True)
    stats = UploadStats(ledger=[])
    budget = ByteBudget(config.rate_mb_s * 1e6)
    progress = _Progress(out, config.capture_points, config.duration_s)
    rng = random.Random(config.seed)
    counts = {"started": 0, "completed": 0, "failed": 0}
    spent = {"generate": 0.0, "upload": 0.0, "behind": 0.0, "behind_n": 0.0}
    cpu_began = time.process_time()
    active: set[str] = set()
    failures: Counter[str] = Counter()
    began = time.monotonic()
    stop_at = began + config.duration_s
    connector = aiohttp.TCPConnector(limit=config.connections)
    # Seconds between two episodes of one capture point so that all of them together make the
    # target rate (estimated from one episode of the configured shape).
    sample = generate_episode(_spec(config, 0, 0, "sim-dev", "sim-cp", "lab", "estimate"))
    episode_bytes = sum(t.nbytes for t in sample.streams.values())
    interval = (
        config.capture_points * episode_bytes / (config.rate_mb_s * 1e6)
        if config.rate_mb_s > 0
        else 0.0
    )

    async with aiohttp.ClientSession(connector=connector) as session:

        async def device(index: int, device_id: str, token: str, capture_point: str) -> None:
            scene = SCENES[index % len(SCENES)]
            spool = Spool(config.spool_dir / device_id, fsync=False)
            uploader = Uploader(session, config.collector_url, token, stats=stats,
                                give_up_after=config.drain_timeout_s)  # fmt: skip
            client = CaptureClient(uploader, spool, max_chunk_bytes=config.max_chunk_bytes)
            # Each capture point records at its share of the aggregate rate: one episode every
            # `interval` seconds, the first at a random point of the first interval (or of the
            # first half of the run, if shorter), so every point contributes and none all at once.
            first_start = rng.random() * min(config.duration_s * 0.5, interval)
            await asyncio.sleep(first_start)
            episode_no = 0
            scheduled = time.monotonic()
            while time.monotonic() < stop_at:
                episode_began = time.monotonic()
                if episode_no and episode_began - scheduled > LATE_S:
                    spent["behind"] += episode_began - scheduled
                    spent["behind_n"] += 1
                spec = _spec(
                    config, index, episode_no, device_id, capture_point, scene,
                    rng.choice(TASKS[scene]),
                )  # fmt: skip
                episode = await asyncio.to_thread(generate_episode, spec)
                generated = time.monotonic()
                spent["generate"] += generated - episode_began
                size = sum(t.nbytes for t in episode.streams.values())
                await budget.take(size)
                if time.monotonic() >= stop_at:
                    break  # the budget wait ran past the end of the run
                counts["started"] += 1
                uploading = time.monotonic()
                try:
                    recorder = await client.open_episode(episode.manifest_bytes())
                    for name, table in episode.streams.items():
                        await recorder.append(name, table)
                    outcome = await recorder.close()
                except CaptureError as exc:
                    counts["failed"] += 1
                    failures[type(exc).__name__] += 1
                    log.warning("device %s: episode failed: %s", device_id, exc)
                    return
                finally:
                    spent["upload"] += time.monotonic() - uploading
                counts["completed"] += 1
                if outcome.rejected:
                    failures["rejected_chunks"] += len(outcome.rejected)
                active.add(capture_point)
                episode_no += 1
                # The next episode is due one (jittered) interval after this one began: later
                # than that, the device is behind its schedule.
                scheduled = episode_began + interval * (0.75 + 0.5 * rng.random())
                pause = scheduled - time.monotonic()
                await asyncio.sleep(max(0.0, min(pause, stop_at - time.monotonic())))

        async def report() -> None:
            while True:
                progress.show(began, stats, counts["started"], counts["completed"])
                await asyncio.sleep(0.25)

        reporter = asyncio.create_task(report())
        try:
            await asyncio.gather(
                *(
                    device(index, device_id, token, cp)
                    for index, (device_id, (token, cp, _)) in enumerate(devices.items())
                )
            )
        finally:
            reporter.cancel()
            progress.show(began, stats, counts["started"], counts["completed"], force=True)
            if progress.tty:
                out.write("\n")
    seconds = time.monotonic() - began
    latencies = sorted(stats.ack_latencies) or [0.0]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    errors = dict(stats.errors)
    errors.update({f"episode_{k}": v for k, v in failures.items()})
    return SimulationResult(
        capture_points=config.capture_points,
        active_capture_points=len(active),
        episodes_started=counts["started"],
        episodes_completed=counts["completed"],
        chunks=stats.acknowledged_chunks,
        bytes=stats.acknowledged_bytes,
        seconds=seconds,
        retries=stats.retries,
        errors=errors,
        ack_p50_ms=statistics.median(latencies) * 1000,
        ack_p99_ms=p99 * 1000,
        failed_episodes=counts["failed"],
        ledger=list(stats.ledger or []),
        asked_mb_per_s=config.rate_mb_s,
        generate_s=spent["generate"],
        upload_s=spent["upload"],
        episodes_behind=int(spent["behind_n"]),
        behind_s=spent["behind"],
        simulator_cpu_s=time.process_time() - cpu_began,
    )


def write_summary(result: SimulationResult, path: Path) -> None:
    """The summary as JSON, with the ledger of acknowledged chunks (for end-to-end checks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(with_ledger=True)))
