"""Finding and reading the contract files in ``schemas/``.

The files in ``schemas/`` are the single source of truth, so every module reads them through
:func:`schemas_dir` -- one place decides where they are. The package is installed editable from
``services/``, so the files are found by walking up from this module to the repository's
``schemas/``; deployments that ship the package elsewhere point ``ROBOLAKE_SCHEMAS_DIR`` at them.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, cast

import jsonschema
import jsonschema.protocols
import jsonschema.validators

from robolake.episode.errors import ContractError

#: Environment variable that overrides where the contract files are.
SCHEMAS_DIR_ENV: Final = "ROBOLAKE_SCHEMAS_DIR"
#: A file every schemas directory holds; tells the real one from any other ``schemas/`` folder.
_MARKER: Final = "manifest.v1.schema.json"


def schemas_dir() -> Path:
    """Return the directory holding the contract files.

    ``ROBOLAKE_SCHEMAS_DIR`` wins when set; otherwise the nearest ``schemas/`` holding the manifest
    schema above this module. Raises :class:`ContractError` when neither exists, because nothing
    in robolake can validate data without the contract.
    """
    override = os.environ.get(SCHEMAS_DIR_ENV)
    if override:
        path = Path(override)
        if not (path / _MARKER).is_file():
            raise ContractError(
                f"{SCHEMAS_DIR_ENV}={override} holds no {_MARKER}; "
                "point it at the repository's schemas/ directory or unset it"
            )
        return path
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "schemas"
        if (candidate / _MARKER).is_file():
            return candidate
    raise ContractError(
        f"no schemas/ directory with {_MARKER} above {__file__}; "
        f"set {SCHEMAS_DIR_ENV} to the repository's schemas/ directory"
    )


def load_json(relative: str | Path) -> Any:
    """Parse one JSON contract file, given its path relative to :func:`schemas_dir`."""
    path = schemas_dir() / relative
    try:
        with path.open("rb") as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise ContractError(f"contract file {path} is missing; restore it from git") from exc
    except json.JSONDecodeError as exc:
        raise ContractError(f"contract file {path} is not valid JSON: {exc}") from exc


def _pattern(
    validator: jsonschema.protocols.Validator, pattern: str, instance: object, schema: object
) -> Iterator[jsonschema.ValidationError]:
    """``pattern`` with JSON Schema's (ECMA 262) meaning of ``$``: the end of the string.

    Python's ``$`` also matches before a final newline, so ``"dev-1\\n"`` passed
    ``^[a-z0-9-]+$`` -- an identifier that then reached headers, URLs and logs.
    """
    if not isinstance(instance, str):
        return
    if _compiled(pattern).search(instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _is_integer(checker: object, instance: object) -> bool:
    """JSON Schema calls ``1.0`` an integer; the contract's integers are written without a
    fraction, because they land in int64 columns and ``9.3e18`` is no int64."""
    return isinstance(instance, int) and not isinstance(instance, bool)


#: Draft 2020-12 with ECMA 262 end anchors and fraction-free integers; every contract document
#: is checked with it.
_ContractValidator: Any = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator,
    {"pattern": _pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def contract_validator(schema: Mapping[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for one of the contract's JSON Schemas (``pattern`` anchored as in ECMA 262)."""
    return cast(jsonschema.Draft202012Validator, _ContractValidator(schema))
