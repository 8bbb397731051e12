"""MinIO for the local stack: S3-compatible storage on loopback.

Built once with ``go install github.com/minio/minio@<pinned version>`` into the cache. The MinIO
project publishes its releases as ``RELEASE.<date>`` git tags; the Go module proxy reachable here
refuses those tags (403 "not available"), so the pin is the module pseudo-version of one commit.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Final

from robolake.stack.errors import StackError
from robolake.stack.paths import cache_dir

log = logging.getLogger(__name__)

MINIO_MODULE: Final = "github.com/minio/minio"
#: Pinned commit of MinIO (2026-02-12). Bump deliberately: a rebuild takes minutes.
MINIO_VERSION: Final = "v0.0.0-20260212201848-7aac2a2c5b7c"
ROOT_USER: Final = "robolake"


def binary_path() -> Path:
    """Where the pinned MinIO binary is cached."""
    return cache_dir() / "minio" / MINIO_VERSION / "minio"


def install() -> Path:
    """Build MinIO once with ``go install``; later calls return the cached binary at once."""
    binary = binary_path()
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise StackError(
            "Go is not installed; it is needed once to build MinIO (apt-get install golang)"
        )
    staging = binary.parent / "bin.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log.info("building MinIO %s with go install (first run only, takes minutes)", MINIO_VERSION)
    env = dict(os.environ, GOBIN=str(staging), CGO_ENABLED="0")
    result = subprocess.run(
        [go, "install", f"{MINIO_MODULE}@{MINIO_VERSION}"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    built = staging / "minio"
    if result.returncode != 0 or not built.is_file():
        raise StackError(
            f"go install {MINIO_MODULE}@{MINIO_VERSION} failed (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-4000:]}"
        )
    built.rename(binary)
    shutil.rmtree(staging, ignore_errors=True)
    return binary


def root_password(home: Path) -> str:
    """The stack's MinIO root password: generated once per state directory, stored 0600."""
    path = home / "root-password"
    if path.is_file():
        return path.read_text().strip()
    home.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return password


def server_command(home: Path, *, port: int, console_port: int) -> list[str]:
    """The command line of the MinIO server (data under ``home/data``)."""
    return [
        str(binary_path()),
        "server",
        "--quiet",
        "--address",
        f"127.0.0.1:{port}",
        "--console-address",
        f"127.0.0.1:{console_port}",
        str(home / "data"),
    ]


def server_env(home: Path) -> dict[str, str]:
    """The server's environment: its own root credentials, no console, public metrics."""
    return {
        "MINIO_ROOT_USER": ROOT_USER,
        "MINIO_ROOT_PASSWORD": root_password(home),
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
        "MINIO_PROMETHEUS_AUTH_TYPE": "public",
    }


def is_ready(endpoint: str) -> bool:
    """Whether MinIO's readiness endpoint answers 200."""
    url = f"{endpoint}/minio/health/ready"
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback http URL
        return bool(response.status == 200)


def version() -> str:
    """What the cached binary says of its version, plus the pinned module version."""
    result = subprocess.run(
        [str(binary_path()), "--version"], capture_output=True, text=True, check=False
    )
    reported = result.stdout.split()[2] if len(result.stdout.split()) > 2 else "unknown"
    return f"MinIO {MINIO_VERSION} (go install; binary reports {reported})"
