"""Where the local stack keeps its installs (cache) and its running state.

The cache survives across stacks and test runs, so only the first start on a machine downloads and
builds anything; the state directory holds one stack's data, configuration, logs and PIDs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from robolake.stack.errors import StackError

ENV_CACHE_DIR: Final = "ROBOLAKE_CACHE_DIR"
ENV_STATE_DIR: Final = "ROBOLAKE_STATE_DIR"
ENV_DEPLOY_DIR: Final = "ROBOLAKE_DEPLOY_DIR"


def cache_dir() -> Path:
    """The install cache: ``$ROBOLAKE_CACHE_DIR``, else ``$XDG_CACHE_HOME/robolake``."""
    if explicit := os.environ.get(ENV_CACHE_DIR):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "robolake"


def default_state_dir() -> Path:
    """The default stack state: ``$ROBOLAKE_STATE_DIR``, else ``$XDG_STATE_HOME/robolake/stack``."""
    if explicit := os.environ.get(ENV_STATE_DIR):
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "robolake" / "stack"


def deploy_dir() -> Path:
    """The repository's ``deploy/`` folder (pom, Prometheus rules), found from this file.

    ``$ROBOLAKE_DEPLOY_DIR`` overrides it for installs that are not a checkout.
    """
    if explicit := os.environ.get(ENV_DEPLOY_DIR):
        return Path(explicit)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "deploy"
        if (candidate / "local" / "pom.xml").is_file():
            return candidate
    raise StackError(
        "cannot find the repository's deploy/ folder from "
        f"{Path(__file__).resolve()}; set {ENV_DEPLOY_DIR} to it"
    )
