"""Bulk enrolment files for ``robolake devices import``: CSV or JSON, checked whole first.

A file is refused whole, naming every bad line, rather than imported in part: tokens are shown
only once, so a partial import would leave the operator sorting out which rows got a token and
which did not. Fixing the file and importing it again is simpler, and nothing needs revoking.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from robolake.devices.errors import DeviceRegistryError
from robolake.devices.registry import validate_identifier

FIELDS: Final = ("device_id", "capture_point_id", "organisation")
_MAX_PROBLEMS: Final = 20

Format = Literal["csv", "json"]


@dataclass(frozen=True)
class EnrolmentRow:
    """One device to enrol, with where it came from (``line 3`` or ``item 2``) for messages."""

    where: str
    device_id: str
    capture_point_id: str
    organisation: str

    @property
    def entry(self) -> tuple[str, str, str]:
        return (self.device_id, self.capture_point_id, self.organisation)


def detect_format(name: str, text: str) -> Format:
    """By extension, else by content: a JSON array starts with ``[``."""
    lowered = name.lower()
    if lowered.endswith(".json"):
        return "json"
    if lowered.endswith(".csv"):
        return "csv"
    return "json" if text.lstrip().startswith("[") else "csv"


def parse_enrolment(name: str, text: str, fmt: Format | None = None) -> list[EnrolmentRow]:
    """Every row of an enrolment file, or one error listing every problem in it."""
    fmt = fmt or detect_format(name, text)
    problems: list[str] = []
    rows = _parse_csv(text, problems) if fmt == "csv" else _parse_json(text, problems)
    if not problems and not rows:
        problems.append("no devices in the file")
    first: dict[str, str] = {}
    for row in rows:
        if row.device_id in first:
            earlier = first[row.device_id]
            problems.append(
                f"{row.where}: device_id {row.device_id!r} repeated (first at {earlier})"
            )
        else:
            first[row.device_id] = row.where
    _refuse(name, problems)
    return rows


def check_not_enrolled(name: str, rows: Iterable[EnrolmentRow], active: set[str]) -> None:
    """Refuse the file if any of its devices already has an active token."""
    problems = [
        f"{row.where}: device {row.device_id!r} already has an active token; revoke it first"
        for row in rows
        if row.device_id in active
    ]
    _refuse(name, problems)


def _refuse(name: str, problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:_MAX_PROBLEMS]
    if len(problems) > len(shown):
        shown.append(f"... and {len(problems) - len(shown)} more")
    raise DeviceRegistryError(
        f"refusing {name}, nothing enrolled ({len(problems)} problem"
        f"{'s' if len(problems) != 1 else ''}):\n  " + "\n  ".join(shown)
    )


def _row(where: str, values: dict[str, str], problems: list[str]) -> EnrolmentRow | None:
    bad = False
    for kind in FIELDS:
        try:
            validate_identifier(kind, values[kind])
        except DeviceRegistryError as exc:
            problems.append(f"{where}: {exc}")
            bad = True
    if bad:
        return None
    return EnrolmentRow(
        where, values["device_id"], values["capture_point_id"], values["organisation"]
    )


def _parse_csv(text: str, problems: list[str]) -> list[EnrolmentRow]:
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    rows: list[EnrolmentRow] = []
    header: list[str] | None = None
    start = 1
    try:
        for record in reader:
            where, start = f"line {start}", reader.line_num + 1
            cells = [cell.strip() for cell in record]
            if not any(cells):
                continue  # blank lines, and the empty rows spreadsheets append
            if header is None:
                if sorted(cells) != sorted(FIELDS):
                    problems.append(
                        f"{where}: the header must name the columns {','.join(FIELDS)} "
                        f"(got {','.join(cells)!r})"
                    )
                    return rows
                header = cells
                continue
            if len(cells) != len(header):
                problems.append(f"{where}: {len(cells)} fields, the header has {len(header)}")
                continue
            row = _row(where, dict(zip(header, cells, strict=True)), problems)
            if row is not None:
                rows.append(row)
    except csv.Error as exc:
        problems.append(f"line {reader.line_num}: {exc}")
    return rows


def _parse_json(text: str, problems: list[str]) -> list[EnrolmentRow]:
    try:
        items: Any = json.loads(text)
    except ValueError as exc:
        problems.append(f"not valid JSON: {exc}")
        return []
    if not isinstance(items, list):
        problems.append(f"expected a JSON array of objects with keys {', '.join(FIELDS)}")
        return []
    rows: list[EnrolmentRow] = []
    for number, item in enumerate(items, start=1):
        where = f"item {number}"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object, got {type(item).__name__}")
            continue
        missing = [key for key in FIELDS if key not in item]
        unknown = sorted(str(key) for key in item if key not in FIELDS)
        not_text = [key for key in FIELDS if key in item and not isinstance(item[key], str)]
        if missing or unknown or not_text:
            for what, keys in (
                ("missing", missing),
                ("unknown", unknown),
                ("not a string", not_text),
            ):
                if keys:
                    problems.append(f"{where}: {what}: {', '.join(keys)}")
            continue
        row = _row(where, item, problems)
        if row is not None:
            rows.append(row)
    return rows
