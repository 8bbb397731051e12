"""Issue 15, defect 8: the writer's memory cap counts what buffered chunks really cost.

The cap used to count a chunk's bytes as received. A chunk of one joint-state row is ~1.2 KB
on the wire but ~9.4 KB in the writer (its Arrow table, arrays, schema, key), so a device
sending tiny chunks held the writer far above its cap (1.07 GB RSS at a 512 MiB cap in an
audit). Measured in a fresh interpreter, so nothing else in the test run moves its RSS.
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import gc, json
from robolake.episode.records import chunk_record, manifest_record
from robolake.episode.chunks import encode_chunk
from robolake.episode.synthetic import SyntheticSpec, generate_episode
from robolake.writer.batcher import FlushPolicy
from robolake.writer.partition import PartitionWriter

def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

class Record:
    def __init__(self, offset, meta, value):
        self.topic, self.partition, self.offset = "chunks", 0, offset
        self.key, self.value, self.headers = meta.key, value, meta.headers()

episode = generate_episode(SyntheticSpec(seed=5, duration_s=2.0, cameras=()))
manifest = episode.manifest
tiny = {name: encode_chunk(episode.streams[name].slice(0, 1), manifest.stream(name).stream_type)
        for name in ("joint_state", "imu", "events")}
value = episode.manifest_bytes()
records = [Record(0, manifest_record(manifest, value), value)]
for i in range(1, 20_001):
    name = ("joint_state", "imu", "events")[i % 3]
    data = bytes(tiny[name])
    records.append(Record(i, chunk_record(manifest, name, i, data), data))
w = PartitionWriter("chunks", 0, policy=FlushPolicy(2**40, 1e9))
gc.collect()
before = rss()
for r in records:
    assert w.accept(r).outcome == "stored"
gc.collect()
print(json.dumps({"rss": rss() - before, "held": w.held_bytes, "wire": w.buffer.nbytes}))
"""


def test_buffered_tiny_chunks_are_counted_at_what_they_cost() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], check=True, capture_output=True, text=True, timeout=300
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"20,000 one-row chunks: {figures}")
    # The cap's figure covers the memory the buffer really took (some slack for the ledger
    # and episode state, which are not data and are bounded by the dedup window).
    assert figures["rss"] <= 1.25 * figures["held"] + 8 * 2**20, figures
    assert figures["held"] > 4 * figures["wire"], figures
