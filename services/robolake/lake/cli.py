"""``robolake tables``: the Iceberg tables of the deployment, from their snapshot summaries."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any


def add_parsers(subparsers: Any) -> None:
    tables = subparsers.add_parser(
        "tables",
        help="list the dataset's Iceberg tables: snapshot, files, rows, bytes",
        description="Every table in ROBOLAKE_CATALOG_NAMESPACE (default robolake) of the catalog "
        "at ROBOLAKE_CATALOG_URI, read from each current snapshot's summary (no listing).",
    )
    tables.add_argument("--json", action="store_true", help="one JSON object per table")
    tables.set_defaults(func=_tables)


def _tables(args: argparse.Namespace) -> int:
    from robolake.endpoints import Endpoints
    from robolake.lake.catalog import LakeTables
    from robolake.lake.status import render, status

    endpoints = Endpoints.from_env()
    rows = status(LakeTables.from_endpoints(endpoints))
    if args.json:
        for row in rows:
            print(json.dumps({**asdict(row), "average_file_bytes": row.average_file_bytes}))
    else:
        print(f"namespace {endpoints.catalog_namespace} at {endpoints.catalog_uri}")
        print(render(rows))
    return 0
