"""DuckDB over the tables a real writer filled, offline (no extension download at run time).

Two ways, because an extension loads only into the DuckDB version it was built for:

- the project's pinned DuckDB (dev: 2.0.0) queries the tables through pyiceberg, which plans
  the scan of a snapshot and hands DuckDB Arrow (``DataScan.to_duckdb``); part of ``make test``;
- DuckDB's own ``iceberg`` extension attaches the REST catalog and reads the metadata and data
  files itself. The extension packages (``duckdb-extension-iceberg``/``-httpfs``/``-avro``)
  exist up to DuckDB 1.5.5 and DuckDB 2.0.0 refuses them ("The file was built specifically for
  DuckDB version 'v1.5.5'"), so this runs in ``make interop``'s venv, with DuckDB 1.5.5.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import duckdb
import pytest
from engines_harness import FilledLake, pyiceberg_counts

from robolake.endpoints import Endpoints
from robolake.lake import layout


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The one value of a one-row query (fetchall: DuckDB 2.0 keeps a fetchone's result open)."""
    rows = con.execute(sql).fetchall()
    assert len(rows) == 1, rows
    return rows[0][0]


async def test_pinned_duckdb_queries_every_table_through_pyiceberg_at_a_pinned_snapshot(
    filled_lake: FilledLake,
) -> None:
    tables = filled_lake.tables()
    expected = pyiceberg_counts(tables)
    assert layout.INDEX_TABLE in expected
    assert expected["joint_state_v1"] > 0
    assert expected["image_v1"] > 0
    pinned = {name: tables.load(name).current_snapshot() for name in expected}

    con = duckdb.connect()
    for name in expected:
        snapshot = pinned[name]
        assert snapshot is not None, f"{name} has no snapshot"
        scan = tables.load(name).scan(snapshot_id=snapshot.snapshot_id)
        scan.to_duckdb(name, connection=con)
        assert _one(con, f"SELECT count(*) FROM {name}") == expected[name], name
    episodes = _one(con, f"SELECT count(DISTINCT episode_id) FROM {layout.INDEX_TABLE}")
    assert episodes == len(filled_lake.produced.episodes)

    # More data lands; the pinned snapshots still read exactly what they read before.
    await filled_lake.produce(range(704, 706))
    await filled_lake.run_writer()
    later = pyiceberg_counts(filled_lake.tables())
    assert later["joint_state_v1"] > expected["joint_state_v1"]
    for name, snapshot in pinned.items():
        assert snapshot is not None
        again = filled_lake.tables().load(name).scan(snapshot_id=snapshot.snapshot_id)
        con = again.to_duckdb(name, connection=duckdb.connect())
        assert _one(con, f"SELECT count(*) FROM {name}") == expected[name], name


# -- DuckDB's iceberg extension (make interop) ---------------------------------------------------


def _extension(name: str) -> Path:
    """The extension file a ``duckdb-extension-<name>`` package installed for this DuckDB."""
    try:
        package = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
        pytest.skip(f"duckdb-extension-{name} is not installed (make interop's venv has it)")
    assert package.__file__ is not None
    path = Path(package.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    found = path / f"{name}.duckdb_extension"
    if not found.is_file():
        pytest.skip(
            f"duckdb-extension-{name} has no build for DuckDB {duckdb.__version__} "
            f"(it has {sorted(p.name for p in path.parent.iterdir())})"
        )
    return found


@pytest.fixture
def extensions() -> list[Path]:
    """The installed extension files (skips before any writer runs when they are missing)."""
    return [_extension(name) for name in ("httpfs", "avro", "iceberg")]


def attach(
    con: duckdb.DuckDBPyConnection, endpoints: Endpoints, extensions: list[Path], alias: str
) -> None:
    """Load the extensions from their packages, add the S3 secret, attach the REST catalog."""
    for path in extensions:
        con.execute(f"LOAD {_quoted(str(path))}")
    assert endpoints.catalog_uri
    con.execute(
        f"""CREATE SECRET minio (TYPE s3, KEY_ID {_quoted(endpoints.s3_access_key)},
            SECRET {_quoted(endpoints.s3_secret_key)}, ENDPOINT {_quoted(endpoints.s3_host)},
            URL_STYLE 'path', USE_SSL {str(endpoints.s3_secure).lower()},
            REGION {_quoted(endpoints.s3_region)})"""
    )
    con.execute(
        f"""ATTACH '' AS {alias} (TYPE iceberg, ENDPOINT {_quoted(endpoints.catalog_uri)},
            AUTHORIZATION_TYPE 'none')"""
    )


@pytest.mark.interop
def test_duckdb_iceberg_extension_attaches_the_catalog_and_counts_like_pyiceberg(
    extensions: list[Path], filled_lake: FilledLake
) -> None:
    endpoints = filled_lake.endpoints
    tables = filled_lake.tables()
    expected = pyiceberg_counts(tables)
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    attach(con, endpoints, extensions, "lake")
    ns = endpoints.catalog_namespace
    listed = {
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'lake' "
            f"AND table_schema = {_quoted(ns)}"
        ).fetchall()
    }
    assert listed == set(expected)
    for name, count in expected.items():
        assert _one(con, f"SELECT count(*) FROM lake.{ns}.{name}") == count, name

    # The same values as pyiceberg: an episode's scene and task, a joint position, t_ns bounds.
    index = tables.load(layout.INDEX_TABLE).scan().to_arrow().to_pylist()
    for row in index:
        got = con.execute(
            f"SELECT scene, task FROM lake.{ns}.{layout.INDEX_TABLE} WHERE episode_id = ?",
            [row["episode_id"]],
        ).fetchall()
        assert (row["scene"], row["task"]) in got
    joint = tables.load("joint_state_v1").scan(
        selected_fields=("episode_id", "stream", "seq", "t_ns", "position")
    )
    first = min(joint.to_arrow().to_pylist(), key=lambda r: (r["episode_id"], r["t_ns"]))
    position = con.execute(
        f"SELECT position FROM lake.{ns}.joint_state_v1 WHERE episode_id = ? AND t_ns = ?",
        [first["episode_id"], first["t_ns"]],
    ).fetchall()
    assert len(position) == 1
    assert [float(x) for x in position[0][0]] == pytest.approx(
        [float(x) for x in first["position"]]
    )

    # A pinned snapshot: the extension's AT (VERSION => id) reads the snapshot pyiceberg names.
    snapshot = tables.load("joint_state_v1").current_snapshot()
    assert snapshot is not None
    pinned = _one(
        con,
        f"SELECT count(*) FROM lake.{ns}.joint_state_v1 AT (VERSION => {snapshot.snapshot_id})",
    )
    assert pinned == expected["joint_state_v1"]


@pytest.mark.interop
def test_polars_scans_every_table_like_pyiceberg(
    filled_lake: FilledLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``polars.scan_iceberg`` on pyiceberg's tables, reading the files with its own S3 client."""
    pl = pytest.importorskip("polars", reason="polars is in make interop's venv")
    # Plan with pyiceberg, said explicitly: else polars 2.1 warns that its faster planner needs
    # the polars_iceberg package (a PerformanceWarning, an error in this suite).
    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")
    endpoints = filled_lake.endpoints
    storage = {
        "aws_endpoint_url": endpoints.s3_endpoint,
        "aws_access_key_id": endpoints.s3_access_key,
        "aws_secret_access_key": endpoints.s3_secret_key,
        "aws_region": endpoints.s3_region,
        "aws_allow_http": str(not endpoints.s3_secure).lower(),
        "aws_virtual_hosted_style_request": "false",
    }
    tables = filled_lake.tables()
    for name, count in pyiceberg_counts(tables).items():
        table = tables.load(name)
        snapshot = table.current_snapshot()
        assert snapshot is not None, name
        scan = pl.scan_iceberg(table, snapshot_id=snapshot.snapshot_id, storage_options=storage)
        assert scan.select(pl.len()).collect().item() == count, name
