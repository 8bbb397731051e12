"""Prometheus for the local stack, from Debian's ``prometheus`` package.

The package is not installed system-wide (its maintainer scripts would start a system service):
``apt-get download`` fetches the .deb and ``dpkg-deb -x`` unpacks it into the cache, which brings
``prometheus`` and ``promtool`` (used by ``make test`` to check the rules in deploy/prometheus/).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Final

from robolake.stack.errors import StackError
from robolake.stack.paths import cache_dir, deploy_dir

log = logging.getLogger(__name__)

PACKAGE: Final = "prometheus"


def root() -> Path:
    """Where the unpacked package lives in the cache."""
    return cache_dir() / "prometheus" / "root"


def binary_path(name: str = "prometheus") -> Path:
    """Path of ``prometheus`` or ``promtool`` inside the unpacked package."""
    return root() / "usr" / "bin" / name


def _download(into: Path) -> Path:
    def attempt() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "download", PACKAGE], cwd=into, capture_output=True, text=True, check=False
        )

    result = attempt()
    if result.returncode != 0 and os.geteuid() == 0:
        # A fresh machine has no package lists yet.
        update = subprocess.run(["apt-get", "update"], capture_output=True, text=True, check=False)
        if update.returncode != 0:
            raise StackError(f"apt-get update failed:\n{update.stderr[-4000:]}")
        result = attempt()
    if result.returncode != 0:
        raise StackError(
            f"apt-get download {PACKAGE} failed (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-4000:]}\n(as root, run `apt-get update` first)"
        )
    debs = sorted(into.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise StackError(f"apt-get download {PACKAGE} produced no .deb in {into}")
    return debs[-1]


def install() -> Path:
    """Unpack Debian's Prometheus into the cache once; return the ``prometheus`` binary."""
    binary = binary_path()
    if binary.is_file():
        return binary
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise StackError("apt-get and dpkg-deb are needed to install Prometheus from Debian")
    target = root()
    staging = target.with_name("root.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="robolake-prometheus-") as tmp:
        deb = _download(Path(tmp))
        log.info("unpacking %s into %s", deb.name, target)
        result = subprocess.run(
            ["dpkg-deb", "-x", str(deb), str(staging)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise StackError(f"dpkg-deb -x {deb.name} failed:\n{result.stderr[-4000:]}")
        (staging / "VERSION").write_text(deb.name.split("_")[1] + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    if not binary.is_file():
        raise StackError(f"{deb.name} did not contain usr/bin/prometheus")
    return binary


def version() -> str:
    """The Debian version of the unpacked package."""
    path = root() / "VERSION"
    return path.read_text().strip() if path.is_file() else "unknown"


def targets_dir(home: Path) -> Path:
    """File-based service discovery: each robolake service drops ``<name>.json`` here."""
    return home / "targets"


def write_config(home: Path, *, minio_port: int, port: int) -> Path:
    """Write ``prometheus.yml``: itself, MinIO, robolake services (file_sd), and the rules."""
    home.mkdir(parents=True, exist_ok=True)
    targets_dir(home).mkdir(exist_ok=True)
    rules_dir = deploy_dir() / "prometheus" / "rules"
    rule_files = sorted(str(p) for p in rules_dir.glob("*.yml")) if rules_dir.is_dir() else []
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": rule_files,
        "scrape_configs": [
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            },
            {
                "job_name": "minio",
                "metrics_path": "/minio/v2/metrics/cluster",
                "static_configs": [{"targets": [f"127.0.0.1:{minio_port}"]}],
            },
            {
                "job_name": "robolake",
                "file_sd_configs": [
                    {"files": [str(targets_dir(home) / "*.json")], "refresh_interval": "5s"}
                ],
            },
        ],
    }
    path = home / "prometheus.yml"
    # JSON is valid YAML, and needs no YAML library here.
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def server_command(home: Path, config: Path, *, port: int) -> list[str]:
    """The command line of the Prometheus server."""
    return [
        str(binary_path()),
        f"--config.file={config}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=7d",
    ]


def is_ready(url: str) -> bool:
    """Whether Prometheus's readiness endpoint answers 200."""
    with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:  # noqa: S310
        return bool(response.status == 200)
