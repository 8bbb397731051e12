"""An Apache Iceberg REST catalog for the local stack: Iceberg's own server, on loopback.

The server is ``org.apache.iceberg.rest.RESTCatalogServer`` from iceberg-open-api's
``test-fixtures`` jar. That jar declares no dependencies, so ``deploy/local/iceberg-rest/pom.xml``
names its classpath and ``mvn dependency:copy-dependencies`` caches it once per version, the way
the Kafka jars are cached. Behind the REST API it runs Iceberg's JDBC catalog on a SQLite *file*
in the state directory (the server's default is an in-memory database, which forgets every table
on restart) and writes table metadata to MinIO through S3FileIO.

Two things the upstream server does that the stack must not:

- it listens on 0.0.0.0 and has no host option. The stack runs it through
  ``LoopbackRESTCatalogServer`` (``deploy/local/iceberg-rest/src``), compiled once against the
  cached jars, which wires the same backend catalog, adapter and servlet to a connector bound to
  127.0.0.1;
- at INFO it logs every catalog property, an S3 secret among them if one is configured. The S3
  credentials therefore reach it as ``AWS_*`` variables (the SDK's default chain), never as
  catalog properties, and its catalog-properties logger is raised to WARN besides.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Final

from robolake.stack.errors import StackError
from robolake.stack.jvm import java, javac, resolve_classpath
from robolake.stack.paths import cache_dir, deploy_dir

log = logging.getLogger(__name__)

#: Must match ``iceberg.version`` in deploy/local/iceberg-rest/pom.xml.
ICEBERG_VERSION: Final = "1.11.0"
UPSTREAM_MAIN_CLASS: Final = "org.apache.iceberg.rest.RESTCatalogServer"
MAIN_CLASS: Final = "org.apache.iceberg.rest.LoopbackRESTCatalogServer"
#: The system property the launcher reads for its listen address.
HOST_PROPERTY: Final = "robolake.catalog.host"
HOST: Final = "127.0.0.1"
#: Table metadata is small; the stack shares a 2-core machine with the services under test.
CATALOG_HEAP: Final = "-Xmx384m"
#: C1 only: the catalog serves small JSON documents, and skipping C2 cuts its start-up from
#: 3.2 to 2.0 CPU seconds (3.5 to 2.4 s to ready, measured on the 2-core machine).
CATALOG_JIT: Final = "-XX:TieredStopAtLevel=1"
#: The name the JDBC catalog stores its rows under. Pinned so that the tables in the SQLite file
#: do not depend on the upstream default ("rest_backend") staying what it is.
CATALOG_NAME: Final = "robolake"
WAREHOUSE_PREFIX: Final = "warehouse"
DATABASE_FILE: Final = "catalog.db"
#: Inherited variables with these prefixes are dropped from the server's environment: the server
#: turns every ``CATALOG_*`` variable into a catalog property, and a developer's ``AWS_PROFILE``
#: or ``AWS_SESSION_TOKEN`` would change which credentials the SDK picks.
SCRUBBED_ENV_PREFIXES: Final = ("CATALOG_", "AWS_")
#: The logger that prints every catalog property at INFO.
_PROPERTIES_LOGGER: Final = UPSTREAM_MAIN_CLASS

_POM: Final = Path("local") / "iceberg-rest" / "pom.xml"
_LAUNCHER_SOURCE: Final = (
    Path("local") / "iceberg-rest" / "src" / "org" / "apache" / "iceberg" / "rest"
    / "LoopbackRESTCatalogServer.java"
)  # fmt: skip


def install_dir() -> Path:
    """Where the server of :data:`ICEBERG_VERSION` is cached."""
    return cache_dir() / "iceberg-rest" / ICEBERG_VERSION


def lib_dir() -> Path:
    """The server's jars."""
    return install_dir() / "lib"


def _launcher_source() -> Path:
    return deploy_dir() / _LAUNCHER_SOURCE


def launcher_dir() -> Path:
    """The compiled launcher, named by its source's digest so an edited source is recompiled."""
    digest = hashlib.sha256(_launcher_source().read_bytes()).hexdigest()[:12]
    return install_dir() / f"launcher-{digest}"


def _install_jars() -> Path:
    return resolve_classpath(
        deploy_dir() / _POM,
        lib_dir(),
        what="the Iceberg REST catalog",
        version=ICEBERG_VERSION,
        properties={"iceberg.version": ICEBERG_VERSION},
        expect=f"iceberg-open-api-{ICEBERG_VERSION}-test-fixtures.jar",
    )


def _compile_launcher() -> Path:
    target = launcher_dir()
    if (target / ".complete").is_file():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    result = subprocess.run(
        [
            javac(), "--release", "17", "-nowarn", "-d", str(staging),
            "-cp", str(lib_dir() / "*"), str(_launcher_source()),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise StackError(
            f"javac could not compile {_launcher_source().name} against Iceberg "
            f"{ICEBERG_VERSION} (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-4000:]}"
        )
    (staging / ".complete").write_text(ICEBERG_VERSION + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def install() -> Path:
    """Resolve the server's jars with Maven and compile the launcher, each once; later calls
    return the cache at once."""
    lib = _install_jars()
    _compile_launcher()
    return lib


def warehouse(bucket: str) -> str:
    """Where the catalog puts new tables: a prefix of the dataset bucket."""
    return f"s3://{bucket}/{WAREHOUSE_PREFIX}"


def server_env(
    home: Path,
    *,
    port: int,
    s3_endpoint: str,
    s3_access_key: str,
    s3_secret_key: str,
    s3_region: str,
    bucket: str,
) -> dict[str, str]:
    """The server's environment: ``CATALOG_*`` become catalog properties (the prefix dropped,
    ``__`` read as ``-`` and ``_`` as ``.``); the S3 keys travel as ``AWS_*`` so that they are
    never catalog properties, which the server logs and can vend to clients. Creates ``home``
    and its ``tmp/``, where sqlite-jdbc unpacks its native library at every start."""
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return {
        "CATALOG_CATALOG_NAME": CATALOG_NAME,
        "CATALOG_CATALOG__IMPL": "org.apache.iceberg.jdbc.JdbcCatalog",
        "CATALOG_URI": f"jdbc:sqlite:{home / DATABASE_FILE}",
        "CATALOG_JDBC_SCHEMA__VERSION": "V1",
        "CATALOG_WAREHOUSE": warehouse(bucket),
        "CATALOG_IO__IMPL": "org.apache.iceberg.aws.s3.S3FileIO",
        "CATALOG_S3_ENDPOINT": s3_endpoint,
        "CATALOG_S3_PATH__STYLE__ACCESS": "true",
        "CATALOG_CLIENT_REGION": s3_region,
        "CATALOG_REST_PORT": str(port),
        "AWS_ACCESS_KEY_ID": s3_access_key,
        "AWS_SECRET_ACCESS_KEY": s3_secret_key,
        "AWS_REGION": s3_region,
    }


def server_command(home: Path) -> list[str]:
    """The command line of the catalog server (configured by :func:`server_env`)."""
    return [
        java(),
        CATALOG_HEAP,
        CATALOG_JIT,
        "-XX:+UseSerialGC",
        "-Djava.awt.headless=true",
        f"-Djava.io.tmpdir={home / 'tmp'}",
        f"-D{HOST_PROPERTY}={HOST}",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
        f"-Dorg.slf4j.simpleLogger.log.{_PROPERTIES_LOGGER}=warn",
        "-cp",
        f"{launcher_dir()}:{lib_dir() / '*'}",
        MAIN_CLASS,
    ]


def is_ready(url: str) -> bool:
    """Whether the catalog answers ``GET /v1/config`` with 200."""
    with urllib.request.urlopen(f"{url}/v1/config", timeout=2) as response:  # noqa: S310
        return bool(response.status == 200)


def version() -> str:
    """What ``robolake stack status`` shows of the catalog."""
    return f"Apache Iceberg {ICEBERG_VERSION} REST catalog (JDBC on SQLite, S3FileIO)"
