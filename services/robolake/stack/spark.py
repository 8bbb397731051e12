"""Apache Spark against the local stack's Iceberg tables: the jars and the configuration.

Tooling for ``make interop`` (``tests/integration/interop/``), which proves that engines robolake
did not write read and maintain its tables. Iceberg's Spark runtime and AWS bundle are resolved
by Maven from ``deploy/local/spark-interop/pom.xml`` into the install cache, once, the way the
stack resolves Kafka's and the catalog's jars, and handed to Spark as local jars: Spark downloads
nothing at run time (no ``spark.jars.packages``). pyspark itself is installed by ``make interop``
into its own virtualenv, never into the dev one.

``python -m robolake.stack.spark install`` resolves the jars and prints their paths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from robolake.endpoints import Endpoints
from robolake.stack.catalog import ICEBERG_VERSION
from robolake.stack.jvm import resolve_classpath
from robolake.stack.paths import cache_dir, deploy_dir

#: Spark minor and Scala version of ``iceberg-spark-runtime-<this>``; must match
#: ``spark.runtime`` in deploy/local/spark-interop/pom.xml and the pyspark ``make interop``
#: installs (4.1.x is built for Scala 2.13).
SPARK_RUNTIME: Final = "4.1_2.13"
#: Kept small: the suite shares a 2-core machine with the stack and a writer.
DRIVER_MEMORY: Final = "1g"
MASTER: Final = "local[2]"

_POM: Final = Path("local") / "spark-interop" / "pom.xml"


def lib_dir() -> Path:
    """Where the jars of :data:`ICEBERG_VERSION` for :data:`SPARK_RUNTIME` are cached."""
    return cache_dir() / "spark-interop" / f"{ICEBERG_VERSION}-{SPARK_RUNTIME}" / "lib"


def install() -> list[Path]:
    """Resolve the jars with Maven once; later calls return the cached jars at once."""
    lib = resolve_classpath(
        deploy_dir() / _POM,
        lib_dir(),
        what="Iceberg's Spark runtime",
        version=f"{ICEBERG_VERSION} (Spark {SPARK_RUNTIME})",
        properties={"iceberg.version": ICEBERG_VERSION, "spark.runtime": SPARK_RUNTIME},
        expect=f"iceberg-spark-runtime-{SPARK_RUNTIME}-{ICEBERG_VERSION}.jar",
    )
    return sorted(lib.glob("*.jar"))


def catalog_conf(endpoints: Endpoints, name: str) -> dict[str, str]:
    """Spark properties for an Iceberg catalog ``name`` on the endpoints' REST catalog.

    The same REST catalog pyiceberg uses (:meth:`Endpoints.catalog_properties`), with Iceberg's
    Java S3FileIO for the files: path-style requests to MinIO, an explicit region, and the keys as
    FileIO properties (not ``AWS_*`` variables, which the test's process does not set).
    The result holds the secret key: hand it to Spark, never to a log.
    """
    if not endpoints.catalog_uri:
        raise ValueError("the endpoints have no Iceberg catalog (ROBOLAKE_CATALOG_URI)")
    prefix = f"spark.sql.catalog.{name}"
    return {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "rest",
        f"{prefix}.uri": endpoints.catalog_uri,
        f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        f"{prefix}.s3.endpoint": endpoints.s3_endpoint,
        f"{prefix}.s3.path-style-access": "true",
        f"{prefix}.s3.access-key-id": endpoints.s3_access_key,
        f"{prefix}.s3.secret-access-key": endpoints.s3_secret_key,
        f"{prefix}.client.region": endpoints.s3_region,
    }


def session_conf(endpoints: Endpoints, name: str, jars: list[Path]) -> dict[str, str]:
    """Every property of a local Spark session on the tables: jars, extensions, catalog."""
    return {
        "spark.master": MASTER,
        "spark.driver.memory": DRIVER_MEMORY,
        "spark.jars": ",".join(str(j) for j in jars),
        "spark.sql.extensions": (
            "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
        ),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "2",
        "spark.ui.enabled": "false",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
        **catalog_conf(endpoints, name),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robolake.stack.spark", description=__doc__)
    parser.add_argument("action", choices=["install"])
    parser.parse_args(argv)
    for jar in install():
        print(jar)
    return 0


if __name__ == "__main__":
    sys.exit(main())
