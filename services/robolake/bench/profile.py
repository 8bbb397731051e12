"""``python -m robolake.bench.profile STACKS.txt``: where a py-spy profile's samples went.

py-spy's ``--format raw`` writes collapsed stacks, one ``frame;frame;...;leaf count`` line per
distinct stack, each frame ``function (file:line)``. This reads one and prints, as Markdown, the
functions with the most *self* samples (the leaf: where the CPU was) and the most *total*
samples (anywhere on the stack: what the time was spent for), each with its share of all
samples, and the self samples summed by package (the first part of the frame's file:
``aiokafka``, ``robolake``, ``asyncio``...). ``bench/peers.py --profile DIR`` writes the stacks
(``make profile``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: ``function (file:line)``: the line is dropped, so a function's lines add up.
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """``function (file)`` of a raw frame, its line number dropped."""
    match = _FRAME.match(frame.strip())
    return f"{match['function']} ({match['file']})" if match else frame.strip()


def package(name: str) -> str:
    """The package of a :func:`frame_name`: ``aiokafka`` for ``... (aiokafka/conn.py)``."""
    file = name.rpartition(" (")[2].rstrip(")")
    return file.split("/", 1)[0].removesuffix(".py")


@dataclass
class Profile:
    samples: int
    self_samples: Counter[str]
    total_samples: Counter[str]

    @classmethod
    def parse(cls, lines: Iterable[str]) -> Profile:
        self_samples: Counter[str] = Counter()
        total_samples: Counter[str] = Counter()
        samples = 0
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            # --subprocesses roots each stack at "process PID:"cmdline""; not a function.
            frames = [frame_name(f) for f in stack.split(";") if not f.startswith("process ")]
            if not frames:
                continue
            n = int(count)
            samples += n
            self_samples[frames[-1]] += n
            for name in set(frames):
                total_samples[name] += n
        return cls(samples, self_samples, total_samples)

    def by_package(self) -> Counter[str]:
        packages: Counter[str] = Counter()
        for name, n in self.self_samples.items():
            packages[package(name)] += n
        return packages

    def table(self, which: str, top: int) -> str:
        """``which``: "self" or "total" samples per function, or "package" (self samples)."""
        counts = {"self": self.self_samples, "total": self.total_samples}.get(which)
        column = "function (file)"
        if counts is None:
            counts, which, column = self.by_package(), "self", "package"
        lines = [f"| {which} samples | share | {column} |", "|---:|---:|---|"]
        for name, n in counts.most_common(top):
            share = n / self.samples if self.samples else 0.0
            lines.append(f"| {n:,} | {share:.1%} | `{name}` |")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robolake.bench.profile", description=__doc__)
    parser.add_argument("stacks", type=Path, nargs="+", help="py-spy --format raw files")
    parser.add_argument("--top", type=int, default=10, help="rows per table")
    args = parser.parse_args(argv)
    for path in args.stacks:
        with path.open() as fh:
            profile = Profile.parse(fh)
        print(f"## {path} ({profile.samples:,} samples)\n")
        print(profile.table("self", args.top) + "\n")
        print(profile.table("total", args.top) + "\n")
        print(profile.table("package", args.top) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
