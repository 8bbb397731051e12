"""Finding and reading the contract files in ``schemas/``.

The files in ``schemas/`` are the single source of truth, so every module reads them through
:func:`schemas_dir` -- one place decides where they are. The package is installed editable from
``services/``, so the files are found by walking up from this module to the repository's
``schemas/``; deployments that ship the package elsewhere point ``ROBOLAKE_SCHEMAS_DIR`` at them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

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
