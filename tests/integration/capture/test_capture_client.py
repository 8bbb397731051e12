"""The device client against real collectors and the real broker: crashes on either side.

Each test prints its accounting: chunks cut, chunks found in Kafka, lost (must be 0).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pyarrow as pa
from collector_harness import CollectorProcess, Devices, read_topic, start_collector, wait_ready

from robolake.capture.client import CaptureClient
from robolake.capture.retry import Backoff
from robolake.capture.spool import Spool
from robolake.capture.uploader import Uploader
from robolake.collector.settings import CollectorSettings
from robolake.endpoints import Endpoints
from robolake.episode.records import parse_record
from robolake.episode.synthetic import SyntheticEpisode, SyntheticSpec, generate_episode


def _long_episode(seed: int) -> SyntheticEpisode:
    return generate_episode(
        SyntheticSpec(seed=seed, duration_s=6.0, cameras=("head", "wrist"), device_id="dev-a",
                      capture_point_id="cp-a")
    )  # fmt: skip


def _kafka_view(records: list) -> tuple[set[tuple[str, int]], list[dict]]:  # type: ignore[type-arg]
    chunks, completions = set(), []
    for record in records:
        meta = parse_record(record.key, list(record.headers))
        if meta.kind == "chunk":
            chunks.add((str(meta.stream), int(meta.seq or 0)))
        elif meta.kind == "complete":
            completions.append(json.loads(record.value))
    return chunks, completions


def _expected(spool_completion: dict) -> set[tuple[str, int]]:  # type: ignore[type-arg]
    return {(s, q) for s, c in spool_completion["streams"].items() for q in range(c["chunks"])}


async def test_client_records_an_episode_into_kafka(
    settings: CollectorSettings,
    stack_endpoints: Endpoints,
    kafka_topic: str,
    devices: Devices,
    episode: SyntheticEpisode,
    tmp_path: Path,
) -> None:
    collector, server = await start_collector(settings, stack_endpoints, kafka_topic)
    try:
        async with aiohttp.ClientSession() as session:
            uploader = Uploader(session, str(server.make_url("")), devices.token_a)
            client = CaptureClient(uploader, Spool(tmp_path / "spool"), max_chunk_bytes=256 * 1024)
            recorder = await client.open_episode(episode.manifest_bytes())
            for name, table in episode.streams.items():
                for batch in table.to_batches(max_chunksize=97):  # rows as they are recorded
                    await recorder.append(name, pa.Table.from_batches([batch]))
            outcome = await recorder.close()
    finally:
        await server.close()
        await collector.sink.stop()
    assert outcome.completed
    assert not outcome.rejected
    records = await read_topic(
        stack_endpoints.kafka_bootstrap, kafka_topic, expect=outcome.chunks + 2
    )
    chunks, completions = _kafka_view(records)
    assert len(chunks) == outcome.chunks
    rows = {name: table.num_rows for name, table in episode.streams.items()}
    assert {s: c["rows"] for s, c in completions[0]["streams"].items()} == rows
    assert _expected(completions[0]) == chunks
    assert Spool(tmp_path / "spool").episodes() == []  # nothing left behind


async def test_collector_killed_mid_upload_the_client_retries_and_nothing_is_lost(
    collector_process: Callable[..., CollectorProcess],
    stack_endpoints: Endpoints,
    kafka_topic: str,
    devices: Devices,
    tmp_path: Path,
) -> None:
    first = collector_process()
    port = first.base.rsplit(":", 1)[1]
    await wait_ready(first.base)
    episode = _long_episode(21)
    async with aiohttp.ClientSession() as session:
        backoff = Backoff(base=0.1, cap=1.0)
        uploader = Uploader(
            session, first.base, devices.token_a, backoff=backoff, give_up_after=120
        )
        client = CaptureClient(
            uploader, Spool(tmp_path / "spool"), max_chunk_bytes=96 * 1024, concurrency=4
        )
        recorder = await client.open_episode(episode.manifest_bytes())

        async def record() -> None:
            for name, table in episode.streams.items():
                await recorder.append(name, table)

        await record()
        while uploader.stats.acknowledged_chunks < 20:
            await asyncio.sleep(0.01)
        first.proc.send_signal(signal.SIGKILL)  # no drain, no goodbye
        first.proc.wait()
        second = collector_process("--port", port)
        outcome = await recorder.close()
        retries = uploader.stats.retries
    assert second.stop() == 0
    records = await read_topic(
        stack_endpoints.kafka_bootstrap, kafka_topic, expect=outcome.chunks + 2
    )
    chunks, completions = _kafka_view(records)
    expected = _expected(completions[-1])
    lost = expected - chunks
    print(
        f"collector killed: cut={len(expected)} acknowledged={outcome.chunks} "
        f"in_kafka={len(chunks)} lost={len(lost)} retries={retries}"
    )
    assert outcome.completed
    assert retries > 0
    assert not lost


def _write_episode_dir(episode: SyntheticEpisode, folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_bytes(episode.manifest_bytes())
    for name, table in episode.streams.items():
        with (
            pa.OSFile(str(folder / f"{name}.arrow"), "wb") as sink,
            pa.ipc.new_stream(sink, table.schema) as writer,
        ):
            writer.write_table(table)


async def _accepted(base: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        text = await response.text()
    match = re.search(r"^robolake_collector_chunks_accepted_total (\S+)$", text, re.M)
    return int(float(match.group(1))) if match else 0


async def test_client_killed_mid_upload_resumes_from_its_spool(
    collector_process: Callable[..., CollectorProcess],
    stack_endpoints: Endpoints,
    kafka_topic: str,
    devices: Devices,
    tmp_path: Path,
) -> None:
    collector = collector_process()
    await wait_ready(collector.base)
    episode = _long_episode(22)
    folder = tmp_path / "recorded"
    _write_episode_dir(episode, folder)
    spool = tmp_path / "spool"
    command = [
        sys.executable, "-m", "robolake", "upload", str(folder), "--collector", collector.base,
        "--spool", str(spool), "--max-chunk-bytes", str(64 * 1024), "--concurrency", "2",
    ]  # fmt: skip
    env = {**os.environ, "ROBOLAKE_DEVICE_TOKEN": devices.token_a}
    with (tmp_path / "upload-1.log").open("wb") as log:
        first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while await _accepted(collector.base) < 30 and time.monotonic() < deadline:
            assert first.poll() is None, (tmp_path / "upload-1.log").read_text()
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
    left = Spool(spool).pending(episode.manifest.episode_id)
    assert left, "the client finished before it was killed; the test proves nothing"
    # The same command again: it uploads what the spool holds and continues the recording
    # where the spool stopped (rows already cut are skipped), then completes the episode.
    resumed = subprocess.run(
        command,
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert collector.stop() == 0
    records = await read_topic(stack_endpoints.kafka_bootstrap, kafka_topic, expect=200, timeout=60)
    chunks, completions = _kafka_view(records)
    assert completions, "the resumed client did not send the completion"
    expected = _expected(completions[-1])
    lost = expected - chunks
    print(
        f"client killed: cut={len(expected)} left_in_spool_at_kill={len(left)} "
        f"in_kafka={len(chunks)} lost={len(lost)}"
    )
    assert not lost
    rows = {name: table.num_rows for name, table in episode.streams.items()}
    assert {s: c["rows"] for s, c in completions[-1]["streams"].items()} == rows
    assert Spool(spool).episodes() == []


async def test_spool_full_while_offline_then_resume_uploads_everything(
    collector_process: Callable[..., CollectorProcess],
    stack_endpoints: Endpoints,
    kafka_topic: str,
    devices: Devices,
    tmp_path: Path,
) -> None:
    """Offline device: the spool fills to its cap and refuses with SpoolFull (nothing is lost,
    nothing is counted twice); once a collector is back, resume uploads every spooled chunk."""
    from robolake.capture.errors import SpoolFull
    from robolake.stack.process import free_port

    port = free_port()  # nothing listens here yet: the device is offline
    episode = _long_episode(23)
    spool_dir = tmp_path / "spool"
    spooled: list[tuple[str, int]] = []
    async with aiohttp.ClientSession() as session:
        uploader = Uploader(
            session,
            f"http://127.0.0.1:{port}",
            devices.token_a,
            backoff=Backoff(base=0.05, cap=0.2),
        )
        spool = Spool(spool_dir, cap_bytes=2 * 1024 * 1024)
        client = CaptureClient(uploader, spool, max_chunk_bytes=96 * 1024)
        journal_episode = episode.manifest.episode_id
        # Registration needs the collector, so record straight into the spool as the recorder
        # does while offline: cut chunks until the cap refuses one.
        from robolake.capture.spool import Journal
        from robolake.episode.chunks import split_into_chunks

        journal = Journal(episode_id=journal_episode, manifest=episode.manifest_bytes().decode())
        spool.save(journal)
        refused = False
        for name, table in episode.streams.items():
            decl = episode.manifest.stream(name)
            for data in split_into_chunks(table, decl.stream_type, 96 * 1024):
                rows = pa.ipc.open_stream(data).read_all().num_rows
                try:
                    chunk = spool.put(journal, name, data, rows)
                except SpoolFull:
                    refused = True
                    break
                spooled.append((chunk.stream, chunk.seq))
            if refused:
                break
        assert refused, "the cap was never reached; the test proves nothing"
        assert spool.used_bytes <= 2 * 1024 * 1024
        journal.closed = True  # the device gives up on the rest and closes the episode
        spool.save(journal)

        collector = collector_process("--port", str(port))  # the later --port wins
        await wait_ready(f"http://127.0.0.1:{port}")
        outcomes = await client.resume()
    assert collector.stop() == 0
    records = await read_topic(
        stack_endpoints.kafka_bootstrap, kafka_topic, expect=len(spooled) + 2
    )
    chunks, completions = _kafka_view(records)
    lost = set(spooled) - chunks
    print(
        f"spool full: spooled={len(spooled)} refused_at_cap=1 uploaded_after_resume="
        f"{outcomes[0].chunks} in_kafka={len(chunks)} lost={len(lost)}"
    )
    assert not lost
    assert outcomes[0].completed
    assert _expected(completions[-1]) == chunks
    assert Spool(spool_dir).episodes() == []
