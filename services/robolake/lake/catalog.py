"""The catalog and robolake's tables in it: created and evolved idempotently (``robolake init``).

:class:`LakeTables` is the narrow interface the writer, readers and operators use: load a table,
make sure the table of a stream type exists with every contract column. It caches what it loaded;
callers refresh when they need the newest snapshot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import pyarrow as pa
import requests
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    RESTError,
    TableAlreadyExistsError,
)
from pyiceberg.io import FileIO
from pyiceberg.table import Table

from robolake.endpoints import Endpoints
from robolake.episode.shards import episodes_index, shard_schema
from robolake.episode.stream_types import StreamType
from robolake.lake import layout
from robolake.lake.errors import CatalogUnavailable, LakeError
from robolake.lake.schema import (
    EVOLVING_PROPERTIES,
    TABLE_PROPERTIES,
    iceberg_schema,
    partition_spec,
    sort_order,
    table_arrow_schema,
    with_field_ids,
)

log = logging.getLogger(__name__)

#: Errors that mean "the catalog or storage did not answer": retried, never a crash.
UNAVAILABLE: Final = (requests.exceptions.RequestException, OSError, RESTError)


def open_catalog(endpoints: Endpoints, name: str = "robolake") -> Catalog:
    """pyiceberg's catalog for the endpoints (REST by default; see ``docs/tables.md``)."""
    try:
        return load_catalog(name, **endpoints.catalog_properties())
    except UNAVAILABLE as exc:
        raise CatalogUnavailable(
            f"cannot reach the catalog at {endpoints.catalog_uri}: {exc}"
        ) from exc


@dataclass(frozen=True)
class TableInfo:
    """What a data file of a table needs: its name, bucket-key prefix and file schema."""

    name: str
    prefix: str
    #: The contract's Arrow schema as the table holds it, with the table's field ids.
    file_schema: pa.Schema


class LakeTables:
    """robolake's tables in one namespace of one catalog."""

    def __init__(self, catalog: Catalog, namespace: str, bucket: str) -> None:
        self.catalog = catalog
        self.namespace = namespace
        self.bucket = bucket
        self._tables: dict[str, Table] = {}
        #: One file IO for every table loaded (see :func:`with_io`).
        self._io: FileIO | None = None
        self._infos: dict[str, TableInfo] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_endpoints(cls, endpoints: Endpoints) -> LakeTables:
        return cls(open_catalog(endpoints), endpoints.catalog_namespace, endpoints.s3_bucket)

    def identifier(self, table: str) -> str:
        return f"{self.namespace}.{table}"

    # -- creating and evolving --------------------------------------------------------------

    def ensure_namespace(self) -> None:
        try:
            self.catalog.create_namespace_if_not_exists(self.namespace)
        except NamespaceAlreadyExistsError:
            pass
        except UNAVAILABLE as exc:
            raise CatalogUnavailable(f"cannot create namespace {self.namespace}: {exc}") from exc

    def ensure_stream_type(self, stream_type: StreamType) -> TableInfo:
        """The table of ``stream_type``, created or evolved to hold every contract column."""
        return self.ensure_table(layout.shard_table(stream_type.key), shard_schema(stream_type))

    def ensure_index(self) -> TableInfo:
        """The episodes index table, created or evolved."""
        return self.ensure_table(layout.INDEX_TABLE, episodes_index().schema)

    def ensure_all(self, stream_types: Iterable[StreamType]) -> list[TableInfo]:
        """Namespace, index and every stream type's table (``robolake init``): idempotent."""
        self.ensure_namespace()
        return [self.ensure_index()] + [self.ensure_stream_type(t) for t in stream_types]

    def ensure_table(self, name: str, contract: pa.Schema) -> TableInfo:
        """Table ``name`` holding ``contract`` (created, or evolved by name: new optional columns
        get new field ids, existing ids never change)."""
        with self._lock:
            known = self._infos.get(name)
            if known is not None:
                return known
            try:
                info = self._create_or_evolve(name, table_arrow_schema(contract))
            except UNAVAILABLE as exc:
                raise CatalogUnavailable(f"cannot create or load table {name}: {exc}") from exc
            self._infos[name] = info
            return info

    def _create_or_evolve(self, name: str, arrow: pa.Schema) -> TableInfo:
        identifier = self.identifier(name)
        location = layout.table_location(self.bucket, self.namespace, name)
        try:
            table = self.catalog.load_table(identifier)
        except NoSuchTableError:
            schema = iceberg_schema(arrow)
            try:
                table = self.catalog.create_table(
                    identifier,
                    schema=schema,
                    location=location,
                    partition_spec=partition_spec(schema),
                    sort_order=sort_order(schema),
                    properties=dict(TABLE_PROPERTIES),
                )
                log.info("created table %s at %s", identifier, location)
            except TableAlreadyExistsError:  # another process created it meanwhile
                table = self.catalog.load_table(identifier)
        present = {c.name for c in table.schema().fields}
        missing = [f.name for f in arrow if f.name not in present]
        if missing:
            for attempt in range(5):
                try:
                    with table.update_schema() as update:
                        update.union_by_name(arrow)
                    break
                except CommitFailedException:
                    table = self.catalog.load_table(identifier)
                    if attempt == 4:
                        raise
            log.info("table %s: added columns %s", identifier, missing)
        table = self._with_properties(identifier, table)
        if table.location().rstrip("/") != location:
            raise LakeError(
                f"table {identifier} is at {table.location()}, robolake writes its files under "
                f"{location}; drop or move the table, or use another namespace"
            )
        self._tables[name] = table
        return TableInfo(
            name, layout.table_prefix(self.namespace, name), with_field_ids(arrow, table.schema())
        )

    def _with_properties(self, identifier: str, table: Table) -> Table:
        """Give a table created by an older robolake the properties added since (an operator's
        own values are kept)."""
        for attempt in range(5):
            missing = {
                key: TABLE_PROPERTIES[key]
                for key in EVOLVING_PROPERTIES
                if key not in table.properties
            }
            if not missing:
                return table
            try:
                with table.transaction() as transaction:
                    transaction.set_properties(missing)
                log.info("table %s: set %s", identifier, missing)
            except CommitFailedException:
                if attempt == 4:
                    raise
            table = self.catalog.load_table(identifier)
        return table

    def info(self, table: str) -> TableInfo:
        """The file schema of a table ensured before (KeyError otherwise: a writer bug)."""
        return self._infos[table]

    # -- reading ----------------------------------------------------------------------------

    def load(self, name: str, *, refresh: bool = True) -> Table:
        """A table, with its newest metadata unless ``refresh`` is False and it is cached."""
        try:
            cached = self._tables.get(name)
            if cached is None or refresh:
                # A new object, never an in-place refresh: flush threads share cached tables.
                loaded = self.catalog.load_table(self.identifier(name))
                if self._io is None:
                    self._io = loaded.io
                cached = with_io(loaded, self._io)
        except NoSuchTableError:
            raise
        except UNAVAILABLE as exc:
            raise CatalogUnavailable(f"cannot load table {name}: {exc}") from exc
        self._tables[name] = cached
        return cached

    def remember(self, name: str, table: Table) -> None:
        """Cache ``table`` (the result of a commit) as the newest known state of ``name``."""
        self._tables[name] = table

    def names(self) -> list[str]:
        """Every table in the namespace, sorted."""
        try:
            return sorted(ident[-1] for ident in self.catalog.list_tables(self.namespace))
        except NoSuchNamespaceError:
            return []  # nothing written yet (``robolake init`` creates the namespace)
        except UNAVAILABLE as exc:
            raise CatalogUnavailable(f"cannot list tables of {self.namespace}: {exc}") from exc

    def shard_tables(self) -> list[str]:
        return [n for n in self.names() if layout.stream_type_of(n) is not None]


def with_io(table: Table, io: FileIO) -> Table:
    """``table`` using ``io`` if both are configured alike (no per-table credentials).

    Every table load makes a new file IO, and with it a new S3 client on first use: 1.7 % of
    a draining writer's profile samples when every commit loaded its tables afresh.
    """
    if table.io is io or table.io.properties != io.properties:
        return table
    return Table(table.name(), table.metadata, table.metadata_location, io, table.catalog)
