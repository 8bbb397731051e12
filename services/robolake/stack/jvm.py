"""The Java the stack's JVM components run on, found once for Kafka and the Iceberg catalog.

``$JAVA_HOME`` wins over ``PATH`` so that a machine with several JDKs (Java 17 and 25 side by
side under ``/usr/lib/jvm``) runs the one the developer chose.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from robolake.stack.errors import StackError


def _tool(name: str) -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / name).is_file():
        return str(Path(java_home) / "bin" / name)
    return shutil.which(name)


def java() -> str:
    """The ``java`` launcher (Java 17 or newer)."""
    found = _tool("java")
    if found is None:
        raise StackError(
            "Java 17+ is not installed; install it (Debian: apt-get install default-jre)"
        )
    return found


def javac() -> str:
    """The ``javac`` compiler: the catalog's loopback launcher is compiled once at install."""
    found = _tool("javac")
    if found is None:
        raise StackError(
            "javac (a Java 17+ JDK) is not installed; the Iceberg catalog's launcher is compiled "
            "once at install (Debian: apt-get install default-jdk-headless)"
        )
    return found


def resolve_classpath(
    pom: Path, lib: Path, *, what: str, version: str, properties: Mapping[str, str], expect: str
) -> Path:
    """Copy ``pom``'s runtime classpath into ``lib`` with Maven, once.

    Resolved into a staging folder and renamed only when complete (``expect`` is a jar that must
    be there), with a marker file, so an interrupted download is never taken for an install.
    """
    marker = lib / ".complete"
    if marker.is_file():
        return lib
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is not installed; install it (Debian: apt-get install maven)")
    staging = lib.with_name("lib.partial")
    shutil.rmtree(staging, ignore_errors=True)
    logging.getLogger(__name__).info("resolving %s %s with Maven into %s", what, version, lib)
    defines = [f"-D{name}={value}" for name, value in properties.items()]
    result = subprocess.run(
        [
            "mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}", "-DincludeScope=runtime", *defines,
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise StackError(
            f"mvn could not resolve {what} {version} (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-4000:]}"
        )
    if not (staging / expect).is_file():
        raise StackError(f"mvn finished but {expect} is not in {staging}")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    marker.write_text(version + "\n")
    return lib
