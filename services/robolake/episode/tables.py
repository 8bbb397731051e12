"""Arrow schemas written as data: the type grammar and the table-description files.

Every file in ``schemas/stream_types/`` and ``schemas/tables/`` describes one Arrow schema as JSON
(``schemas/table.schema.json`` is its meta-schema). Types are strings in a small grammar rather
than pyarrow's ``str(type)``, because pyarrow's spelling changes between versions while a
fingerprint computed from the file must not.

Grammar::

    type := primitive | list<type> | large_list<type> | fixed_size_list<type, N>
          | dictionary<index, value> | struct<name: type, ...>
          | timestamp[unit] | timestamp[unit, tz]
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Final, cast

import jsonschema
import pyarrow as pa

from robolake.episode.errors import ContractError, Reason
from robolake.episode.schemas import load_json, schemas_dir

_PRIMITIVES: Final[Mapping[str, pa.DataType]] = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float16": pa.float16(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "large_string": pa.large_string(),
    "binary": pa.binary(),
    "large_binary": pa.large_binary(),
    "date32": pa.date32(),
}
_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\d+)|([<>\[\],:]))")
#: Length of a fingerprint in hex digits: 64 bits, ample to tell a few thousand type versions apart.
FINGERPRINT_HEX_DIGITS: Final = 16


class _TypeParser:
    """Recursive-descent parser of one type string; errors name the offending text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[str] = []
        pos = 0
        stripped = text.rstrip()
        while pos < len(stripped):
            match = _TOKEN.match(stripped, pos)
            if match is None:
                raise self._error(f"unexpected character at {pos}")
            self.tokens.append(match.group(match.lastindex or 0))
            pos = match.end()
        self.pos = 0

    def _error(self, what: str) -> ContractError:
        return ContractError(f"cannot parse Arrow type {self.text!r}: {what}")

    def _next(self) -> str:
        if self.pos >= len(self.tokens):
            raise self._error("unexpected end")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def _expect(self, token: str) -> None:
        got = self._next()
        if got != token:
            raise self._error(f"expected {token!r}, got {got!r}")

    def parse(self) -> pa.DataType:
        result = self._type()
        if self.pos != len(self.tokens):
            raise self._error(f"trailing {self.tokens[self.pos]!r}")
        return result

    def _type(self) -> pa.DataType:
        name = self._next()
        if name in _PRIMITIVES:
            return _PRIMITIVES[name]
        if name in ("list", "large_list"):
            self._expect("<")
            item = self._type()
            self._expect(">")
            return pa.list_(item) if name == "list" else pa.large_list(item)
        if name == "fixed_size_list":
            self._expect("<")
            item = self._type()
            self._expect(",")
            size = self._int()
            self._expect(">")
            return pa.list_(item, size)
        if name == "dictionary":
            self._expect("<")
            index = self._type()
            self._expect(",")
            value = self._type()
            self._expect(">")
            return pa.dictionary(index, value)
        if name == "struct":
            return self._struct()
        if name == "timestamp":
            self._expect("[")
            unit = self._next()
            if unit not in ("s", "ms", "us", "ns"):
                raise self._error(f"timestamp unit {unit!r} is not s, ms, us or ns")
            tz = None
            if self.tokens[self.pos : self.pos + 1] == [","]:
                self.pos += 1
                tz = self._next()
            self._expect("]")
            return pa.timestamp(unit, tz=tz)
        raise self._error(f"unknown type {name!r}")

    def _struct(self) -> pa.DataType:
        self._expect("<")
        children: list[pa.Field] = []
        while True:
            child_name = self._next()
            self._expect(":")
            children.append(pa.field(child_name, self._type()))
            separator = self._next()
            if separator == ">":
                return pa.struct(children)
            if separator != ",":
                raise self._error(f"expected ',' or '>', got {separator!r}")

    def _int(self) -> int:
        token = self._next()
        if not token.isdigit() or int(token) < 1:
            raise self._error(f"expected a positive integer, got {token!r}")
        return int(token)


def parse_type(text: str) -> pa.DataType:
    """Turn a type string of the grammar into a pyarrow type; :class:`ContractError` if invalid."""
    return _TypeParser(text).parse()


@dataclass(frozen=True)
class Constraints:
    """Limits on a field's values, checked on every chunk (see :mod:`robolake.episode.chunks`)."""

    min: float | None = None
    max: float | None = None
    max_bytes: int | None = None
    enum: tuple[str, ...] | None = None
    reason: Reason = "value_not_allowed"


@dataclass(frozen=True)
class FieldSpec:
    """One column as a contract file declares it."""

    name: str
    type_text: str
    arrow_type: pa.DataType
    nullable: bool
    description: str
    unit: str | None = None
    elements: bool = False
    lerobot: str | None = None
    constraints: Constraints | None = None

    def arrow_field(self) -> pa.Field:
        """The pyarrow field, with unit and description as field metadata for readers."""
        metadata = {"description": self.description}
        if self.unit is not None:
            metadata["unit"] = self.unit
        return pa.field(self.name, self.arrow_type, nullable=self.nullable, metadata=metadata)


@dataclass(frozen=True)
class TableSpec:
    """A parsed table-description file: named, versioned, fingerprinted Arrow schema."""

    name: str
    version: int
    description: str
    fields: tuple[FieldSpec, ...]
    fingerprint: str
    path: Path | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """``<name>.v<version>``: how files, headers and shard paths name this version."""
        return f"{self.name}.v{self.version}"

    @cached_property
    def schema(self) -> pa.Schema:
        """The pyarrow schema; schema metadata names the type version and fingerprint."""
        return pa.schema(
            [f.arrow_field() for f in self.fields],
            metadata={
                "robolake.type": self.name,
                "robolake.type_version": str(self.version),
                "robolake.fingerprint": self.fingerprint,
            },
        )

    @cached_property
    def wire_schema(self) -> pa.Schema:
        """The schema chunks carry: same fields, no per-field prose, so every chunk stays lean."""
        return pa.schema(
            [pa.field(f.name, f.arrow_type, nullable=f.nullable) for f in self.fields],
            metadata=self.schema.metadata,
        )

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``; :class:`KeyError` if the table has none."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)


def fingerprint(document: Mapping[str, Any]) -> str:
    """Stable short hash of a table description, ignoring prose.

    sha256 over canonical JSON (sorted keys, no whitespace, type strings without spaces) with every
    ``description`` removed, so rewording documentation keeps the fingerprint while any change to
    names, types, nullability, units or constraints changes it.
    """

    def strip(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                k: (re.sub(r"\s+", "", v) if k == "type" and isinstance(v, str) else strip(v))
                for k, v in value.items()
                if k != "description"
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    canonical = json.dumps(strip(document), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:FINGERPRINT_HEX_DIGITS]


_META_SCHEMA_FILE: Final = "table.schema.json"


def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_json(_META_SCHEMA_FILE))


def parse_table(document: Mapping[str, Any], *, source: str = "<memory>") -> TableSpec:
    """Check ``document`` against the meta-schema and build its :class:`TableSpec`."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        raise ContractError(f"{source}: {where}: {first.message}")
    fields: list[FieldSpec] = []
    seen: set[str] = set()
    for raw in document["fields"]:
        name = raw["name"]
        if name in seen:
            raise ContractError(f"{source}: field {name!r} appears twice")
        seen.add(name)
        try:
            arrow_type = parse_type(raw["type"])
        except ContractError as exc:
            raise ContractError(f"{source}: field {name!r}: {exc}") from exc
        fields.append(
            FieldSpec(
                name=name,
                type_text=raw["type"],
                arrow_type=arrow_type,
                nullable=raw["nullable"],
                description=raw["description"],
                unit=raw.get("unit"),
                elements=raw.get("elements", False),
                lerobot=raw.get("lerobot"),
                constraints=_constraints(raw.get("constraints")),
            )
        )
        if fields[-1].elements and not _is_variable_list(arrow_type):
            raise ContractError(f"{source}: field {name!r} has elements but is not list<...>")
    path = Path(source) if source != "<memory>" else None
    return TableSpec(
        name=document["name"],
        version=document["version"],
        description=document["description"],
        fields=tuple(fields),
        fingerprint=fingerprint(document),
        path=path,
    )


def _is_variable_list(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type))


def _constraints(raw: Mapping[str, Any] | None) -> Constraints | None:
    if raw is None:
        return None
    enum: Sequence[str] | None = raw.get("enum")
    return Constraints(
        min=raw.get("min"),
        max=raw.get("max"),
        max_bytes=raw.get("max_bytes"),
        enum=tuple(enum) if enum is not None else None,
        reason=cast(Reason, raw.get("reason", "value_not_allowed")),
    )


def load_table_file(path: Path) -> TableSpec:
    """Parse one description file; its name must be ``<name>.v<version>.json``."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, json.JSONDecodeError) as exc:
        raise ContractError(f"cannot read table description {path}: {exc}") from exc
    spec = parse_table(document, source=str(path))
    if path.name != f"{spec.key}.json":
        raise ContractError(f"{path} declares {spec.key}; rename the file to {spec.key}.json")
    return spec


def load_table(relative: str) -> TableSpec:
    """Load a description from ``schemas/``, e.g. ``tables/episodes_index.v1.json``."""
    return load_table_file(schemas_dir() / relative)
