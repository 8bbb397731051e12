"""The PyTorch dataset on the pipeline's dataset: 2 ranks x 2 DataLoader workers read every
frame of every selected episode exactly once, streaming from MinIO.

Workers start with ``forkserver``, as ``docs/ml.md`` says to: a forked worker inherits the test
process's S3 client, which Arrow does not support, and once hung a full run here.
"""

from __future__ import annotations

from collections import Counter

import pytest
from dataset_harness import ProducedDataset

from robolake.dataset import EpisodeFilter, align_streams
from robolake.dataset.errors import DatasetError

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

from robolake.dataset.pytorch import EpisodeFrameDataset  # noqa: E402

RATE_HZ = 20.0
STREAMS = ["joint_state", "action", "cam_head"]


def _expected_frames(produced: ProducedDataset) -> Counter[tuple[str, int]]:
    """Every (episode, frame) the readers must yield, from what the devices sent."""
    expected: Counter[tuple[str, int]] = Counter()
    for episode_id, sent in produced.episodes.items():
        frames = align_streams({name: sent.streams[name] for name in STREAMS}, RATE_HZ)
        expected.update((episode_id, i) for i in range(frames.num_rows))
    return expected


def test_two_ranks_two_workers_yield_every_frame_exactly_once(produced: ProducedDataset) -> None:
    seen: Counter[tuple[str, int]] = Counter()
    per_slot: dict[int, set[str]] = {}
    for rank in range(2):
        frames = EpisodeFrameDataset(
            produced.url,
            endpoints=produced.endpoints,
            rate_hz=RATE_HZ,
            criteria=EpisodeFilter(complete=True),
            streams=STREAMS,
            rank=rank,
            world_size=2,
            shuffle=True,
            seed=7,
            decode_images=True,
        )
        loader = DataLoader(
            frames,
            batch_size=None,
            num_workers=2,
            timeout=120,
            multiprocessing_context="forkserver",
        )
        episodes: set[str] = set()
        for frame in loader:
            seen[(frame["episode_id"], int(frame["frame_index"]))] += 1
            episodes.add(frame["episode_id"])
            assert frame["joint_state.position"].dtype == torch.float32
            assert frame["cam_head.data"].shape == (120, 160, 3)
        per_slot[rank] = episodes
    expected = _expected_frames(produced)
    assert sum(seen.values()) == sum(expected.values()) > 0
    assert seen == expected  # every frame once: nothing missing, nothing twice
    assert per_slot[0]
    assert per_slot[1]
    assert not per_slot[0] & per_slot[1]


def test_batches_collate_into_tensors(produced: ProducedDataset) -> None:
    frames = EpisodeFrameDataset(
        produced.url,
        endpoints=produced.endpoints,
        rate_hz=RATE_HZ,
        criteria=EpisodeFilter(robot_types=("arm_7dof",)),
        streams=["joint_state", "action"],
        rank=0,
        world_size=1,
    )
    batch = next(iter(DataLoader(frames, batch_size=8, num_workers=0)))
    assert batch["joint_state.position"].shape == (8, 7)
    assert batch["action.action"].shape == (8, 7)
    assert batch["timestamp"].shape == (8,)


def test_a_forked_worker_refuses_before_touching_s3(produced: ProducedDataset) -> None:
    """The fork hazard as an error that names the fix, raised before any S3 request."""
    frames = EpisodeFrameDataset(
        produced.url, endpoints=produced.endpoints, rate_hz=RATE_HZ, rank=0, world_size=1
    )
    loader = DataLoader(
        frames, batch_size=None, num_workers=1, timeout=120, multiprocessing_context="fork"
    )
    with pytest.raises(DatasetError, match="multiprocessing_context='forkserver'"):
        next(iter(loader))
