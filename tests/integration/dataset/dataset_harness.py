"""A small, varied dataset made by the real pipeline, for the ML reader tests.

Capture clients upload synthetic episodes to a collector process, which produces to Kafka; a
writer process turns the topic into shards and index rows on MinIO. The episodes differ in every
field the readers filter on (scene, task, robot type, capture point, organisation, date, complete),
and one is left incomplete on purpose (no completion, one stream only).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from collector_harness import chunk_headers, register
from isolation import isolated
from pipeline_harness import Pipeline

from robolake.capture.client import CaptureClient
from robolake.capture.spool import Spool
from robolake.capture.uploader import Uploader
from robolake.dataset.episodes import read_index
from robolake.devices.registry import DeviceRegistry
from robolake.endpoints import Endpoints
from robolake.episode.ids import NS_PER_S
from robolake.episode.manifest import Scene
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode

#: 2026-01-05T00:00:00Z; episodes start on different days after it.
DAY0_NS = 1_767_571_200 * NS_PER_S
DAY_NS = 86_400 * NS_PER_S

#: device -> (capture point, organisation)
DEVICES = {
    "dev-a": ("cp-a", "org-1"),
    "dev-b": ("cp-b", "org-2"),
    "dev-c": ("cp-c", "org-1"),
}


@dataclass(frozen=True)
class Planned:
    """One episode to upload: who records it, where, what, and on which day."""

    seed: int
    device: str
    robot_type: str
    scene: Scene
    task: str
    day: int

    def spec(self) -> SyntheticSpec:
        humanoid = self.robot_type == "humanoid_29dof"
        return SyntheticSpec(
            seed=self.seed,
            duration_s=2.0,
            joints=29 if humanoid else 7,
            pose_rate_hz=100.0 if humanoid else None,
            cameras=("head", "wrist") if humanoid else ("head",),
            camera_rate_hz=15.0,
            width=160,
            height=120,
            frame_pool=4,
            started_at_ns=DAY0_NS + self.day * DAY_NS + 8 * 3600 * NS_PER_S + self.seed * NS_PER_S,
            capture_point_id=DEVICES[self.device][0],
            device_id=self.device,
            robot_type=self.robot_type,
            scene=self.scene,
            task=self.task,
        )


PLAN = (
    Planned(1, "dev-a", "humanoid_29dof", "warehouse", "pick up the red box", 0),
    Planned(2, "dev-b", "humanoid_29dof", "hospital", "bring the water cup to bed 3", 1),
    Planned(3, "dev-c", "humanoid_29dof", "warehouse", "scan the barcode on the Red crate", 2),
    Planned(4, "dev-b", "arm_7dof", "factory", "tighten the bolt", 1),
    Planned(5, "dev-a", "arm_7dof", "factory", "insert the peg into the hole", 3),
    Planned(6, "dev-c", "humanoid_29dof", "home", "fold the towel", 3),
)
#: Uploaded without completion and with only its joint states: indexed as incomplete.
INCOMPLETE = Planned(7, "dev-a", "humanoid_29dof", "lab", "wipe the bench", 4)


@dataclass(frozen=True)
class ProducedDataset:
    """What the pipeline stored, and what the devices sent."""

    endpoints: Endpoints
    devices_file: Path
    episodes: dict[str, SyntheticEpisode]
    plans: dict[str, Planned]
    incomplete: SyntheticEpisode

    @property
    def url(self) -> str:
        return f"s3://{self.endpoints.s3_bucket}"


async def _upload_complete(
    session: aiohttp.ClientSession, url: str, token: str, spool: Path, episode: SyntheticEpisode
) -> None:
    uploader = Uploader(session, url, token, give_up_after=60)
    client = CaptureClient(uploader, Spool(spool, fsync=False), max_chunk_bytes=256 * 1024)
    recorder = await client.open_episode(episode.manifest_bytes())
    for name, table in episode.streams.items():
        await recorder.append(name, table)
    outcome = await recorder.close()
    assert outcome.completed, outcome
    assert not outcome.rejected, outcome


async def _upload_incomplete(
    session: aiohttp.ClientSession, url: str, token: str, episode: SyntheticEpisode
) -> None:
    """Manifest and the joint_state chunks only: a device that went away mid-upload."""
    ticket = await register(session, url, token, episode.manifest_bytes())
    for seq, data in enumerate(episode.chunks()["joint_state"]):
        async with session.put(
            f"{url}/v1/episodes/{episode.manifest.episode_id}/streams/joint_state/chunks/{seq}",
            data=data,
            headers=chunk_headers(token, ticket, data),
        ) as response:
            assert response.status in (200, 201), await response.text()


async def produce(
    endpoints: Endpoints, topic: str, bucket: str, workdir: Path, *, timeout: float = 90
) -> ProducedDataset:
    """Upload :data:`PLAN` and :data:`INCOMPLETE`; return once every episode is indexed."""
    registry = DeviceRegistry(workdir / "devices.json")
    tokens = {d: registry.add(d, cp, org) for d, (cp, org) in DEVICES.items()}
    plans = {p: generate_episode(p.spec()) for p in PLAN}
    incomplete = generate_episode(INCOMPLETE.spec())
    writer_args = ("--flush-age", "1", "--incomplete-after", "3")
    async with Pipeline(endpoints, topic, bucket, workdir, writer_args=writer_args) as pipeline:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                *(
                    _upload_complete(
                        session,
                        pipeline.collector_url,
                        tokens[plan.device],
                        workdir / "spool" / str(plan.seed),
                        episode,
                    )
                    for plan, episode in plans.items()
                ),
                _upload_incomplete(
                    session, pipeline.collector_url, tokens[INCOMPLETE.device], incomplete
                ),
            )
        dataset_endpoints = isolated(endpoints, bucket)
        wanted = {e.manifest.episode_id for e in [*plans.values(), incomplete]}
        deadline = time.monotonic() + timeout
        while True:
            index = await asyncio.to_thread(read_index, dataset_endpoints)
            if wanted <= set(index["episode_id"].to_pylist()):
                break
            assert time.monotonic() < deadline, f"index has {index.num_rows} of {len(wanted)}"
            await asyncio.sleep(0.5)
    return ProducedDataset(
        endpoints=dataset_endpoints,
        devices_file=registry.path,
        episodes={e.manifest.episode_id: e for e in plans.values()},
        plans={e.manifest.episode_id: p for p, e in plans.items()},
        incomplete=incomplete,
    )
