"""Reading a device's JSON documents (manifest, completion) so that whatever passes is storable.

Python's :mod:`json` accepts more than the contract can store or other readers can read back:
``NaN`` / ``Infinity`` (non-standard JSON, written back out as such), ``1e999`` (read as
``inf``), integers of any size (the index keeps them in int64 columns), lone UTF-16 surrogates
through ``\\ud800`` escapes (valid JSON text, but not encodable to UTF-8, so Parquet refuses
them), duplicate object keys (the last silently wins, so two readers may see two documents),
bytes in UTF-16/32 (auto-detected) and nesting deep enough to exhaust the interpreter's stack.
Each of these once got past the collector and crashed the writer, or made it 500.

:func:`load_document` is the one door for both services: it refuses every such input with the
caller's ``reason`` and a message saying what to change, before any schema is consulted.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final, NoReturn

from robolake.episode.errors import ContractViolation, Reason

#: Deepest nesting of arrays/objects a document may have; real manifests use four or five.
MAX_DEPTH: Final = 32
#: Integers must fit the index's int64 columns.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class _Refused(Exception):
    """Internal: a hook of the JSON decoder found something the contract refuses."""


def _constant(name: str) -> NoReturn:
    raise _Refused(f"{name} is not JSON (RFC 8259 has no NaN or Infinity); send a finite number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text} overflows a 64-bit float; send a finite number")
    return value


def _int(text: str) -> int:
    if len(text) > 20:  # cheaper than converting a megabyte of digits
        raise _Refused(f"integer of {len(text)} digits does not fit 64 bits")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Refused(f"integer {text} does not fit 64 bits")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _Refused(f"object key {key!r} appears twice; send each key once")
        document[key] = value
    return document


def _walk(document: object) -> str | None:
    """The first problem the decoder's hooks cannot see (depth, surrogates), or None.

    Iterative, so that checking depth cannot itself run out of stack.
    """
    stack: list[tuple[object, int, str]] = [(document, 0, "$")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return f"{where} holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is no text"
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                return f"{where} nests deeper than {MAX_DEPTH} levels"
            if isinstance(value, dict):
                for key, item in value.items():
                    if _SURROGATE.search(key):
                        return f"{where} has a key with a lone UTF-16 surrogate"
                    stack.append((item, depth + 1, f"{where}.{key}"))
            else:
                stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))
    return None


def load_document(data: bytes | str, *, what: str, reason: Reason) -> Any:
    """Parse a device's UTF-8 JSON ``data`` (a ``what``, e.g. "manifest") within the contract.

    Raises :class:`ContractViolation` with ``reason`` for anything the contract cannot store:
    non-UTF-8 bytes, syntax errors, non-finite or out-of-range numbers, duplicate keys, lone
    surrogates, nesting deeper than :data:`MAX_DEPTH`.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError as exc:
        raise ContractViolation(reason, f"{what} is not UTF-8: {exc}") from exc
    try:
        document = json.loads(
            text,
            parse_constant=_constant,
            parse_float=_float,
            parse_int=_int,
            object_pairs_hook=_object,
        )
    except _Refused as exc:
        raise ContractViolation(reason, f"{what}: {exc}") from None
    except RecursionError:
        raise ContractViolation(
            reason, f"{what} nests deeper than {MAX_DEPTH} levels; flatten it"
        ) from None
    except json.JSONDecodeError as exc:
        raise ContractViolation(reason, f"{what} is not JSON: {exc}") from exc
    problem = _walk(document)
    if problem is not None:
        raise ContractViolation(reason, f"{what}: {problem}")
    return document
