"""``robolake collector --workers 2``: both workers take uploads on the one port, one scrape of
``/metrics`` is the whole collector's, and a SIGTERM to the master drains every worker.

The accounting printed: acknowledged, found in Kafka, lost (must be 0).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import ClientSession
from collector_harness import (
    CollectorProcess,
    Devices,
    chunk_headers,
    read_topic,
    register,
    wait_ready,
)

from robolake.endpoints import Endpoints
from robolake.episode.records import parse_record
from robolake.episode.synthetic import SyntheticEpisode
from robolake.episode.topics import DEFAULT_MAX_CHUNK_BYTES

_SLOW_UPLOADS = 12


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _children(pid: int) -> dict[int, int | None]:
    """The master's child processes (its workers) and their start times."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child): _start_ticks(int(child)) for child in text.split()}


def _alive(processes: dict[int, int | None]) -> list[int]:
    """Which of these processes still run (same PID, same start time)."""
    return [pid for pid, ticks in processes.items() if ticks and _start_ticks(pid) == ticks]


async def _log_lines(process: CollectorProcess, text: str, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while process.log().count(text) < count:
        assert process.running, process.log()
        assert time.monotonic() < deadline, f"{count} x {text!r} not logged:\n{process.log()}"
        await asyncio.sleep(0.1)


def _sample(metrics: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{name}{re.escape(labels)} (\S+)$", metrics, re.M)
    assert match, f"{name}{labels} not in /metrics:\n{metrics}"
    return float(match.group(1))


async def _metrics(base: str) -> str:
    async with ClientSession() as client, client.get(f"{base}/metrics") as response:
        assert response.status == 200
        return await response.text()


def _stored_chunks(records: list) -> set[tuple[str, int]]:  # type: ignore[type-arg]
    metas = [parse_record(r.key, list(r.headers)) for r in records]
    return {(str(m.stream), int(m.seq or 0)) for m in metas if m.kind == "chunk"}


async def test_two_workers_share_the_port_and_a_sigterm_drains_both(
    collector_process: Callable[..., CollectorProcess],
    stack_endpoints: Endpoints,
    kafka_topic: str,
    devices: Devices,
    episode: SyntheticEpisode,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # where the master makes its metrics directory
    process = collector_process("--workers", "2", "--drain-seconds", "20")
    await _log_lines(process, "collector listening on", 2, within=90)
    await wait_ready(process.base, process)
    workers = _children(process.pid)
    assert len(workers) == 2, workers
    chunks = list(episode.iter_chunks(max_chunk_bytes=64 * 1024))
    spread, slow, fast = chunks[:40], chunks[40 : 40 + _SLOW_UPLOADS], chunks[40 + _SLOW_UPLOADS :]
    acked: set[tuple[str, int]] = set()
    outcomes: list[str] = []
    episode_id = episode.manifest.episode_id

    def url(stream: str, seq: int) -> str:
        return f"{process.base}/v1/episodes/{episode_id}/streams/{stream}/chunks/{seq}"

    # A connection per request, so the kernel picks a worker for each.
    connector = aiohttp.TCPConnector(force_close=True, limit=64)
    async with ClientSession(connector=connector) as client:
        ticket = await register(client, process.base, devices.token_a, episode.manifest_bytes())

        async def put(stream: str, seq: int, data: bytes, *, slowly: bool = False) -> None:
            async def dribble() -> AsyncIterator[bytes]:
                step = len(data) // 8 + 1
                for start in range(0, len(data), step):
                    yield data[start : start + step]
                    await asyncio.sleep(0.3)

            body = dribble() if slowly else io.BytesIO(data)
            headers = chunk_headers(devices.token_a, ticket, data)
            try:
                async with client.put(url(stream, seq), data=body, headers=headers) as r:
                    await r.read()
                    outcomes.append(f"{'slow' if slowly else 'fast'} {r.status}")
                    if r.status == 201:
                        acked.add((stream, seq))
                    else:
                        assert r.status == 503, r.status
            except aiohttp.ClientError as exc:
                outcomes.append(f"{'slow' if slowly else 'fast'} {type(exc).__name__}")

        await asyncio.gather(*(put(*c) for c in spread))
        assert len(acked) == len(spread), outcomes
        # Every scrape is the merge of both workers, whichever of them answers it.
        scrapes = [await _metrics(process.base) for _ in range(4)]
        served = {
            worker: _sample(scrapes[-1], "robolake_collector_worker_requests_total", labels)
            for worker, labels in (("0", '{worker="0"}'), ("1", '{worker="1"}'))
        }
        accepted = [_sample(s, "robolake_collector_chunks_accepted_total") for s in scrapes]
        print(
            f"workers: requests served per worker {served}, chunks accepted per scrape {accepted}"
        )
        assert all(count > 0 for count in served.values()), served
        assert accepted == [len(spread)] * len(scrapes)

        # Uploads in flight on both workers when the master is told to stop.
        slow_tasks = [asyncio.create_task(put(*c, slowly=True)) for c in slow]
        deadline = time.monotonic() + 30
        while (
            _sample(await _metrics(process.base), "robolake_collector_inflight_bytes")
            < _SLOW_UPLOADS * DEFAULT_MAX_CHUNK_BYTES  # a body of unknown length reserves that
        ):
            assert time.monotonic() < deadline, "the slow uploads never were all in flight"
            await asyncio.sleep(0.05)
        fast_tasks = [asyncio.create_task(put(*c)) for c in fast]
        await asyncio.sleep(0.2)
        process.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*slow_tasks, *fast_tasks)
    code = await asyncio.to_thread(process.wait)
    log = process.log()
    draining = [
        int(n) for n in re.findall(r"draining: refusing new uploads, waiting for (\d+)", log)
    ]
    alive = _alive(workers)
    records = await read_topic(stack_endpoints.kafka_bootstrap, kafka_topic, expect=len(acked) + 1)
    stored = _stored_chunks(records)
    lost = acked - stored
    print(
        f"SIGTERM to the master: tried={len(chunks)} acknowledged={len(acked)} "
        f"stored={len(stored)} lost={len(lost)} in flight per worker at the signal={draining} "
        f"outcomes={ {o: outcomes.count(o) for o in sorted(set(outcomes))} } exit={code}"
    )
    assert code == 0, log
    assert not alive, f"workers {alive} outlived their master"
    assert len(draining) == 2, log
    assert all(n > 0 for n in draining), f"a worker had nothing in flight: {draining}"
    assert outcomes.count("slow 201") == _SLOW_UPLOADS, "an upload in flight was not drained"
    assert "collector master stopped: status=0 restarts=0" in log
    assert "metrics merged from " + str(scratch) in log
    assert not list(scratch.iterdir()), "the master left its metrics directory behind"
    assert not lost


async def test_a_dead_worker_is_replaced_and_workers_die_with_their_master(
    collector_process: Callable[..., CollectorProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A killed master cannot remove its metrics directory: keep it out of the real /tmp.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    process = collector_process("--workers", "2")
    await _log_lines(process, "collector listening on", 2, within=90)
    first = _children(process.pid)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    await _log_lines(process, "collector listening on", 3, within=90)
    second = _children(process.pid)
    assert victim not in second, (first, second)
    assert len(second) == 2, (first, second)
    exited = rf"worker exited unexpectedly: worker=\d pid={victim} status='signal SIGKILL'"
    assert re.search(exited, process.log())
    await wait_ready(process.base, process)
    process.kill()  # SIGKILL: no drain, no forwarding; the kernel ends the workers
    deadline = time.monotonic() + 10
    while alive := _alive(second):
        assert time.monotonic() < deadline, f"workers {alive} outlived a killed master"
        await asyncio.sleep(0.1)
