"""How fast a bag or an HDF5 episode converts, and in how much memory: the numbers behind
docs/recordings.md.

    python -m robolake.recordings.bench BAG.mcap [--candidates robolake rosbags mcap-raw mcap-ros2]
    python -m robolake.recordings.bench EPISODE.hdf5 [--candidates robolake-hdf5 h5py-read]

Each candidate runs in a child process of its own, so its peak RSS is its own:

- ``robolake``: the whole conversion, both passes (:func:`~robolake.recordings.prepare` checks
  every message, then :meth:`~robolake.recordings.Recording.batches` builds every Arrow batch).
- ``rosbags``: one pass of rosbags decoding every message (what each of robolake's passes
  starts from).
- ``mcap-raw``: one pass of the ``mcap`` library reading every message without decoding: the
  ceiling of any Python MCAP reader.
- ``mcap-ros2``: one pass of ``mcap`` + ``mcap-ros2-support`` decoding every message (the
  alternative to rosbags; it decodes ``ros2msg`` schemas only).

For an HDF5 file (``.hdf5``/``.h5``):

- ``robolake-hdf5``: the whole conversion of every episode in the file, both passes
  (:func:`~robolake.recordings.prepare_hdf5` reads and checks every mapped dataset and hashes
  the file, then the batches build every Arrow table).
- ``h5py-read``: one pass of h5py reading every mapped dataset in the converter's slices and
  nothing else: the ceiling of any reader of the file through h5py.

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
HDF5_CANDIDATES = ("robolake-hdf5", "h5py-read")
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
    if candidate in HDF5_CANDIDATES:
        return _run_hdf5(candidate, path)
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


def _run_hdf5(candidate: str, path: Path) -> int:
    """Rows converted (robolake-hdf5) or read (h5py-read) over every episode of the file."""
    from robolake.recordings import hdf5

    recordings = hdf5.prepare_hdf5(path, fields=_FIELDS, started_at="2026-03-01T00:00:00Z")
    if candidate == "robolake-hdf5":
        return sum(t.num_rows for r in recordings for _, t in r.batches())
    # prepare_hdf5 above only finds the datasets here; the child's clock restarts below.
    paths = [p for r in recordings for s in r.scan.streams.values() for p in s.datasets.values()]
    h5py: Any = importlib.import_module("h5py")
    rows = 0
    began = time.perf_counter()
    with h5py.File(str(path), "r") as f:
        for name in paths:
            ds = f[name]
            step = hdf5._slice_rows(ds)
            for start in range(0, ds.shape[0], step):
                rows += len(ds[start : start + step])
    _CLOCK["started"] = began
    return rows


#: Where a candidate's timed part starts, when it is not the whole child (h5py-read's lookup of
#: the mapped datasets is not part of reading them).
_CLOCK: dict[str, float] = {}


def _child(candidate: str, path: Path) -> None:
    began = time.perf_counter()
    count = _run(candidate, path)
    seconds = time.perf_counter() - _CLOCK.get("started", began)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"count": count, "seconds": seconds, "peak_rss_mib": peak_kib / 1024}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bag", type=Path, help="a .mcap file, or an HDF5 episode (.hdf5/.h5)")
    every = CANDIDATES + HDF5_CANDIDATES
    parser.add_argument("--candidates", nargs="+", choices=every, default=None)
    parser.add_argument("--child", choices=every, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.candidates is None:
        is_hdf5 = args.bag.suffix.lower() in (".hdf5", ".h5")
        args.candidates = list(HDF5_CANDIDATES if is_hdf5 else CANDIDATES)
    if args.child:
        _child(args.child, args.bag)
        return 0
    size_mb = args.bag.stat().st_size / 1e6
    print(f"{args.bag}: {size_mb:.1f} MB")
    print(f"{'candidate':<13} {'messages':>9} {'seconds':>8} {'MB/s':>7} {'peak RSS MiB':>13}")
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
            print(f"{candidate:<13} {reason}")
            continue
        result = json.loads(done.stdout)
        print(
            f"{candidate:<13} {result['count']:>9} {result['seconds']:>8.2f} "
            f"{size_mb / result['seconds']:>7.1f} {result['peak_rss_mib']:>13.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
