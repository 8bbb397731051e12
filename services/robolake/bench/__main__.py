"""``python -m robolake.bench`` (``make bench``): every figure next to its ceiling, one run.

Starts a private stack (``--state-dir``, default ``~/.local/state/robolake/bench-stack``),
measures the ceilings (Kafka's ProducerPerformance / ConsumerPerformance at robolake's record
size, MinIO PUT at the shard size), then robolake's collector, writer and end-to-end figures, and
prints a table of ratios against the targets of the benchmark issue; the same figures go to a
JSON file. ``--smoke`` runs every step tiny, for CI, so the benchmark keeps working.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from robolake.bench.report import measure, render, say
from robolake.stack.paths import default_state_dir
from robolake.stack.stack import Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m robolake.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench.json"))
    parser.add_argument("--state-dir", type=Path, default=None, help="stack state directory")
    parser.add_argument(
        "--keep-state",
        action="store_true",
        help="keep the default bench stack's data (topics, buckets, logs) instead of deleting "
        "it after the run (a --state-dir given is never deleted)",
    )
    args = parser.parse_args(argv)
    state = args.state_dir or default_state_dir().with_name("bench-stack")
    stack = Stack(state)
    began = time.monotonic()
    say(f"bench stack in {state}")
    endpoints = stack.up(progress=say)
    try:
        with tempfile.TemporaryDirectory(prefix="robolake-bench-") as tmp:
            report = asyncio.run(
                measure(endpoints, Path(tmp), state / "kafka" / "log4j2.properties", args.smoke)
            )
    finally:
        stack.down(progress=say)
        if args.state_dir is None and not args.keep_state:
            # Every run fills topics and buckets with gigabytes nobody reads again.
            shutil.rmtree(state, ignore_errors=True)
    report["seconds"] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(render(report))
    print(f"\n({report['seconds']:.0f} s; figures in {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
