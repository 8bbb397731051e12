"""``robolake episodes list|show`` and ``robolake export lerobot``: the readers from a shell.

Both take the same filters (:func:`add_filter_arguments` → :class:`EpisodeFilter`) and the dataset
URL (``--dataset s3://BUCKET``, default ``ROBOLAKE_S3_BUCKET``). Organisations come from the
index; ``--devices-file`` (default ``ROBOLAKE_DEVICES_FILE``) is only the legacy fallback for
index rows written before the collector stamped them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from robolake.dataset.episodes import EpisodeFilter, EpisodeInfo
from robolake.episode.shards import QUALITY_FLAGS


def _datetime(text: str) -> dt.datetime:
    """ISO date or date-time; naive values are UTC."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The dataset and filter options shared by every reader command."""
    parser.add_argument("--dataset", default=None, metavar="s3://BUCKET",
                        help="dataset URL (default: s3:// of ROBOLAKE_S3_BUCKET)")  # fmt: skip
    parser.add_argument(
        "--devices-file", type=Path, default=os.environ.get("ROBOLAKE_DEVICES_FILE") or None,
        help="device registry, only for the organisation of index rows written before the "
        "index had one (default: ROBOLAKE_DEVICES_FILE)",
    )  # fmt: skip
    group = parser.add_argument_group("filters (repeat an option to allow several values)")
    group.add_argument("--scene", action="append", default=[], help="scene, e.g. warehouse")
    group.add_argument("--task", help="case-insensitive substring of the task instruction")
    group.add_argument("--robot-type", action="append", default=[], help="robot type")
    group.add_argument("--capture-point", action="append", default=[], help="capture point id")
    group.add_argument("--organisation", action="append", default=[], help="organisation")
    group.add_argument("--episode", action="append", default=[], help="episode id")
    group.add_argument("--since", type=_datetime, help="started at or after (ISO date/time, UTC)")
    group.add_argument("--before", type=_datetime, help="started before (ISO date/time, UTC)")
    done = group.add_mutually_exclusive_group()
    done.add_argument("--complete", dest="complete", action="store_true", default=None,
                      help="only complete episodes")  # fmt: skip
    done.add_argument("--incomplete", dest="complete", action="store_false",
                      help="only incomplete episodes")  # fmt: skip
    group.add_argument("--flag", action="append", default=[], choices=QUALITY_FLAGS,
                       help="must carry this quality flag")  # fmt: skip
    group.add_argument("--no-flag", action="append", default=[], choices=QUALITY_FLAGS,
                       help="must not carry this quality flag")  # fmt: skip
    group.add_argument("--clean", action="store_true", help="no quality flag at all")


def filter_from_args(args: argparse.Namespace) -> EpisodeFilter:
    """The :class:`EpisodeFilter` the options describe."""
    return EpisodeFilter(
        scenes=tuple(args.scene),
        task=args.task,
        robot_types=tuple(args.robot_type),
        capture_points=tuple(args.capture_point),
        organisations=tuple(args.organisation),
        episode_ids=tuple(args.episode),
        started_from=args.since,
        started_before=args.before,
        complete=args.complete,
        with_flags=tuple(args.flag),
        without_flags=tuple(args.no_flag),
        clean=args.clean,
    )


def add_parsers(subparsers: Any) -> None:
    """Register ``episodes`` and ``export``."""
    episodes = subparsers.add_parser(
        "episodes", help="find episodes in the dataset (list, show)",
        description="List and inspect episodes through the episodes index on S3.",
    )  # fmt: skip
    actions = episodes.add_subparsers(dest="episodes_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="a table of the matching episodes")
    add_filter_arguments(listing)
    listing.add_argument("--limit", type=int, default=None, help="print at most this many rows")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_list)
    delete = actions.add_parser(
        "delete",
        help="erase episodes from every table (row-level delete, audited)",
        description="Remove every row of the episodes from every Iceberg table (the stream types "
        "and the episodes index) in new snapshots, and record who, why and when in the "
        "erasures_v1 table. The bytes leave storage once older snapshots are expired and "
        "orphans removed (robolake compact --expire --remove-orphans). Needs the tables "
        "(ROBOLAKE_CATALOG_URI).",
    )
    delete.add_argument("episode_ids", nargs="+", metavar="EPISODE_ID")
    delete.add_argument("--reason", required=True, help="why (kept in the audit table)")
    delete.add_argument(
        "--by",
        default=os.environ.get("ROBOLAKE_OPERATOR") or os.environ.get("USER") or "unknown",
        help="who asks (default $ROBOLAKE_OPERATOR, else $USER)",
    )
    delete.set_defaults(func=_delete)
    show = actions.add_parser("show", help="one episode: index fields and streams")
    show.add_argument("episode_id")
    add_filter_arguments(show)
    show.set_defaults(func=_show)

    export = subparsers.add_parser(
        "export", help="export episodes to training formats (lerobot)",
        description="Export the matching episodes to a training format.",
    )  # fmt: skip
    formats = export.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    lerobot = formats.add_parser(
        "lerobot", help="LeRobot v3.0 datasets, one per robot type and feature set",
        description="Write LeRobot v3.0 datasets (meta/, data/, videos/) under --out.",
    )  # fmt: skip
    add_filter_arguments(lerobot)
    lerobot.add_argument("--out", type=Path, required=True, help="new or empty output directory")
    lerobot.add_argument("--fps", type=int, required=True, help="frame rate to align streams to")
    lerobot.add_argument("--no-videos", action="store_true", help="leave camera streams out")
    lerobot.set_defaults(func=_export_lerobot)


def _open(args: argparse.Namespace) -> Any:
    from robolake.dataset.reader import RobolakeDataset

    return RobolakeDataset.open(args.dataset, devices_file=args.devices_file)


def _row(e: EpisodeInfo) -> dict[str, Any]:
    return {
        "episode_id": e.episode_id,
        "started_at": e.started_at.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round((e.ended_at - e.started_at).total_seconds(), 1),
        "robot_type": e.robot_type,
        "scene": e.scene,
        "capture_point": e.capture_point_id,
        "organisation": e.organisation,
        "complete": "yes" if e.complete else "no",
        "flags": ",".join(e.quality_flags) or "-",
        "task": e.task,
    }


def render_table(rows: list[dict[str, Any]]) -> str:
    """Rows as an aligned text table (the header from the first row's keys)."""
    if not rows:
        return "no episodes match"
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(str(r[h])) for r in rows)) for h in headers}
    lines = ["  ".join(h.ljust(widths[h]) for h in headers)]
    lines += ["  ".join(str(r[h]).ljust(widths[h]) for h in headers) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _list(args: argparse.Namespace) -> int:
    found = _open(args).episodes(filter_from_args(args))
    shown = found[: args.limit] if args.limit is not None else found
    if args.json:
        for episode in shown:
            print(json.dumps(_row(episode)))
        return 0
    print(render_table([_row(e) for e in shown]))
    print(f"{len(found)} episode(s)" + (f", {len(shown)} shown" if len(shown) < len(found) else ""))
    return 0


def _show(args: argparse.Namespace) -> int:
    data = _open(args)
    episode = data.episode(args.episode_id)
    for key, value in _row(episode).items():
        print(f"{key:<14}{value}")
    print(f"{'device':<14}{episode.device_id}")
    print(f"{'operator':<14}{episode.operator}")
    print(f"{'tags':<14}{', '.join(episode.tags) or '-'}")
    print(f"{'shard files':<14}{len(episode.shard_files)}")
    print()
    rows = [
        {
            "stream": s.name,
            "type": s.stream_type_key,
            "rows": s.rows,
            "chunks": s.chunks,
            "rate_hz": _rate(s.rows, s.first_t_ns, s.last_t_ns),
        }
        for s in episode.streams
    ]
    print(render_table(rows))
    return 0


def _rate(rows: int, first: int | None, last: int | None) -> str:
    if rows < 2 or first is None or last is None or last <= first:
        return "-"
    return f"{(rows - 1) / ((last - first) / 1e9):.1f}"


def _export_lerobot(args: argparse.Namespace) -> int:
    from robolake.dataset.lerobot_export import ExportOptions, export_lerobot

    results = export_lerobot(
        _open(args), args.out, ExportOptions(fps=args.fps, videos=not args.no_videos),
        filter_from_args(args),
    )  # fmt: skip
    for result in results:
        print(f"{result.root}: {len(result.episodes)} episodes, {result.frames} frames "
              f"({result.robot_type}; {len(result.features)} features)")  # fmt: skip
    return 0


def _delete(args: argparse.Namespace) -> int:
    from robolake.endpoints import Endpoints
    from robolake.lake.erasure import erase

    report = erase(Endpoints.from_env(), args.episode_ids, reason=args.reason, requested_by=args.by)
    print(report.render())
    print("audited in table erasures_v1; expire snapshots and remove orphans to free bytes")
    return 0
