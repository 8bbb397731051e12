"""Three writers of one group with one elected committer (``--committer elected``), against the
real broker and catalog, under the faults the Iceberg sink's users met worst:

- three writers drain a topic together: exactly one is elected, every commit lands through it
  with no conflict at all (with each process committing its own, three writers conflicted 2.6
  times per commit), and every chunk is stored once;
- the elected committer is killed with -9 holding requests: another is elected, reads them
  again from the request topic, and nothing is lost or doubled;
- the elected committer is frozen past its session timeout while the others go on (a new one is
  elected), then thawed with requests in hand: it rewinds no offset and doubles nothing.

Each test counts against what was produced, value for value, through the tables' snapshots.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from minio import Minio
from writer_harness import (
    Produced,
    WriterProcess,
    assert_exact,
    indexed,
    produce_episodes,
    sigkill,
    spawn_writer,
    wait_until,
    writer_settings,
)

from robolake.endpoints import Endpoints
from robolake.lake import layout
from robolake.lake.catalog import LakeTables
from robolake.lake.offsets import recorded
from robolake.writer.settings import ENV_COMMITTER_PAUSE, WriterSettings

ELECTED = "elected committer of group"


def _elected(writers: list[WriterProcess]) -> list[WriterProcess]:
    """The writers whose last election message says they hold the role."""
    holding = []
    for writer in writers:
        lines = [
            line
            for line in writer.log().splitlines()
            if ELECTED in line or "no longer the elected committer" in line
        ]
        if lines and "no longer" not in lines[-1]:
            holding.append(writer)
    return holding


def _conflicts(writers: list[WriterProcess]) -> list[int]:
    """Conflicts of every commit the writers logged."""
    pattern = re.compile(r"committed \d+ flush\(es\) to \d+ tables in [\d.]+ s \((\d+) conflicts")
    return [int(n) for w in writers for n in pattern.findall(w.log())]


def _index_offsets(endpoints: Endpoints, topic: str) -> dict[int, int]:
    tables = LakeTables.from_endpoints(endpoints)
    return recorded(tables.load(layout.INDEX_TABLE).metadata, topic).offsets


async def _all_indexed(s3: Minio, endpoints: Endpoints, produced: Produced, what: str) -> None:
    await wait_until(
        lambda: len(indexed(s3, endpoints.s3_bucket, tables=endpoints)) == len(produced.episodes),
        timeout=180,
        what=what,
    )


async def _holding(writer: WriterProcess) -> None:
    """Until the elected committer (with ``ROBOLAKE_WRITER_COMMITTER_PAUSE``) holds a batch."""
    await wait_until(
        lambda: "before committing (fault injection)" in writer.log(),
        timeout=60,
        what="the elected committer holding requests",
    )


def _stop(writers: list[WriterProcess]) -> None:
    for writer in writers:
        if writer.proc.poll() is None:
            writer.signal(signal.SIGTERM)
    for writer in writers:
        writer.wait()


def _spawn_group(
    tmp_path: Path,
    endpoints: Endpoints,
    settings: WriterSettings,
    *,
    first_env: dict[str, str] | None = None,
) -> list[WriterProcess]:
    """Three writers; the first is started alone and elected before the others join (the
    eldest keeps the role), with ``first_env`` (fault injection) for it only."""
    first = spawn_writer(tmp_path / "w0.log", endpoints, settings, env=first_env)
    writers = [first]
    try:
        deadline = time.monotonic() + 60
        while ELECTED not in first.log():
            assert time.monotonic() < deadline, "the first writer was not elected"
            assert first.proc.poll() is None, first.log()[-2000:]
            time.sleep(0.2)
        writers += [spawn_writer(tmp_path / f"w{i}.log", endpoints, settings) for i in (1, 2)]
        deadline = time.monotonic() + 90
        while not all(re.search(r"assigned partitions \[\d", w.log()) for w in writers):
            assert time.monotonic() < deadline, "the three writers did not share the partitions"
            time.sleep(0.2)
    except BaseException:
        for writer in writers:
            writer.kill()
        raise
    return writers


async def test_three_writers_commit_through_one_elected_committer_without_conflicts(
    endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    settings = writer_settings(
        kafka_topic, dlq_topic, record="tables", committer="elected", commit_interval_s=2.0
    )
    produced = Produced()
    writers = _spawn_group(tmp_path, endpoints, settings)
    try:
        await produce_episodes(endpoints, kafka_topic, range(700, 712), produced)
        await _all_indexed(s3_client, endpoints, produced, "every episode indexed")
        # Before the stop: as the elected one leaves, another takes over, as it should.
        elections = [line for w in writers for line in w.log().splitlines() if ELECTED in line]
        _stop(writers)
    finally:
        for writer in writers:
            writer.kill()
    assert len(elections) == 1, f"the role moved as writers joined: {elections}"
    committing = [w for w in writers if "flush(es) to" in w.log()]
    assert len(committing) >= 2, "the partitions did not spread over the writers"
    conflicts = _conflicts(writers)
    assert conflicts, "no commit was logged"
    assert sum(conflicts) == 0, f"commits conflicted with one committer: {conflicts}"
    assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)


async def test_killing_the_elected_committer_loses_and_doubles_nothing(
    endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    settings = writer_settings(
        kafka_topic, dlq_topic, record="tables", committer="elected", commit_interval_s=1.0
    )
    produced = Produced()
    # The first (elected) holds each batch 3 s before committing: killed with requests in hand.
    writers = _spawn_group(tmp_path, endpoints, settings, first_env={ENV_COMMITTER_PAUSE: "3"})
    first, rest = writers[0], writers[1:]
    try:
        await produce_episodes(endpoints, kafka_topic, range(720, 728), produced)
        await _holding(first)
        sigkill(first)
        at_kill = len(indexed(s3_client, endpoints.s3_bucket, tables=endpoints))
        await wait_until(lambda: len(_elected(rest)) == 1, timeout=90, what="a new election")
        await _all_indexed(s3_client, endpoints, produced, "every episode indexed after the kill")
        _stop(rest)
    finally:
        for writer in writers:
            writer.kill()
    # The requests it held are read again from the request topic by its successor (it had not
    # committed past them), or asked again by their writers after a timeout.
    assert at_kill < len(produced.episodes), "nothing was left to commit at the kill"
    assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)


async def test_a_thawed_zombie_committer_rewinds_and_doubles_nothing(
    endpoints: Endpoints, kafka_topic: str, dlq_topic: str, s3_client: Minio, tmp_path: Path
) -> None:
    settings = writer_settings(
        kafka_topic, dlq_topic, record="tables", committer="elected", commit_interval_s=1.0
    )
    produced = Produced()
    writers = _spawn_group(tmp_path, endpoints, settings, first_env={ENV_COMMITTER_PAUSE: "3"})
    zombie, rest = writers[0], writers[1:]
    try:
        await produce_episodes(endpoints, kafka_topic, range(740, 746), produced)
        await _holding(zombie)
        zombie.signal(signal.SIGSTOP)  # frozen with a batch in hand, past its session timeout
        frozen_at = time.monotonic()
        held = zombie.log().count("before committing (fault injection)")
        await wait_until(lambda: len(_elected(rest)) == 1, timeout=90, what="a new election")
        await _all_indexed(s3_client, endpoints, produced, "every episode indexed, zombie frozen")
        assert time.monotonic() - frozen_at > settings.session_timeout_s
        offsets = _index_offsets(endpoints, kafka_topic)
        zombie.signal(signal.SIGCONT)
        await wait_until(
            lambda: (
                re.search(r"answered commit request \S+ .* (already|fenced)", zombie.log())
                is not None
            ),
            timeout=60,
            what="the thawed zombie committing the batch it held",
        )
        await produce_episodes(endpoints, kafka_topic, range(746, 749), produced)
        await _all_indexed(s3_client, endpoints, produced, "later episodes indexed after the thaw")
        after = _index_offsets(endpoints, kafka_topic)
        assert all(after.get(p, -1) >= o for p, o in offsets.items()), "an offset was rewound"
        _stop(writers)
    finally:
        if zombie.proc.poll() is None:
            zombie.signal(signal.SIGCONT)
        for writer in writers:
            writer.kill()
    assert held >= 1
    assert_exact(s3_client, endpoints.s3_bucket, produced, tables=endpoints)
