"""How fast a bag converts, and in how much memory: the numbers behind docs/recordings.md.

    python -m robolake.recordings.bench BAG.mcap [--candidates robolake rosbags mcap-raw mcap-ros2]

Each candidate runs in a child process of its own, so its peak RSS is its own:

- ``robolake``: the whole conversion, both passes (:func:`~robolake.recordings.prepare` checks
  every message, then :meth:`~robolake.recordings.Recording.batches` builds every Arrow batch).
- ``rosbags``: one pass of rosbags decoding every message (what each of robolake's passes
  starts from).
- ``mcap-raw``: one pass of the ``mcap`` library reading every message without decoding: the
  ceiling of any Python MCAP reader.
- ``mcap-ros2``: one pass of ``mcap`` + ``mcap-ros2-support`` decoding every message (the
  alternative to rosbags; it decodes ``ros2msg`` schemas only).

The ``mcap`` candidates need those two packages, which robolake does not depend on; install them
in a separate environment with rosbags and robolake to compare.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("robolake", "rosbags", "mcap-raw", "mcap-ros2")
_FIELDS = {
    "device_id": "bench",
    "capture_point_id": "bench",
    "robot_type": "bench",
    "scene": "lab",
    "task": "bench",
    "operator": "bench",
}


def _run(candidate: str, path: Path) -> int:
    """Messages (or rows) the candidate went through."""
    if candidate == "robolake":
        from robolake.recordings import prepare

        recording = prepare(path, fields=_FIELDS)
        return sum(table.num_rows for _, table in recording.batches())
    if candidate == "rosbags":
        from rosbags.highlevel import AnyReader

        count = 0
        with AnyReader([path]) as reader:
            for connection, _, raw in reader.messages():
                reader.deserialize(raw, connection.msgtype)
                count += 1
        return count
    # The mcap packages are optional and untyped: imported by name, used as Any.
    mcap_reader: Any = importlib.import_module("mcap.reader")
    with path.open("rb") as fh:
        if candidate == "mcap-raw":
            return sum(1 for _ in mcap_reader.make_reader(fh).iter_messages())
        decoder: Any = importlib.import_module("mcap_ros2.decoder")
        reader = mcap_reader.make_reader(fh, decoder_factories=[decoder.DecoderFactory()])
        return sum(1 for _ in reader.iter_decoded_messages())


def _child(candidate: str, path: Path) -> None:
    began = time.perf_counter()
    count = _run(candidate, path)
    seconds = time.perf_counter() - began
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"count": count, "seconds": seconds, "peak_rss_mib": peak_kib / 1024}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bag", type=Path, help="a .mcap file")
    parser.add_argument("--candidates", nargs="+", choices=CANDIDATES, default=list(CANDIDATES))
    parser.add_argument("--child", choices=CANDIDATES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.bag)
        return 0
    size_mb = args.bag.stat().st_size / 1e6
    print(f"{args.bag}: {size_mb:.1f} MB")
    print(f"{'candidate':<10} {'messages':>9} {'seconds':>8} {'MB/s':>7} {'peak RSS MiB':>13}")
    for candidate in args.candidates:
        child = [sys.executable, "-m", "robolake.recordings.bench", str(args.bag)]
        done = subprocess.run(
            [*child, "--child", candidate],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
            print(f"{candidate:<10} {reason}")
            continue
        result = json.loads(done.stdout)
        print(
            f"{candidate:<10} {result['count']:>9} {result['seconds']:>8.2f} "
            f"{size_mb / result['seconds']:>7.1f} {result['peak_rss_mib']:>13.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
