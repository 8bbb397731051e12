"""The Java the stack's JVM components run on, found once for Kafka and the Iceberg catalog.

``$JAVA_HOME`` wins over ``PATH`` so that a machine with several JDKs (Java 17 and 25 side by
side under ``/usr/lib/jvm``) runs the one the developer chose.
"""

from __future__ import annotations

import os
import shutil
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
