"""One test's own corner of the shared stack: its bucket, and an Iceberg namespace named after it
(tables live in the catalog, not the bucket, so a fresh bucket alone would share tables)."""

from __future__ import annotations

import dataclasses
import re

from robolake.endpoints import Endpoints


def isolated(endpoints: Endpoints, bucket: str) -> Endpoints:
    """``endpoints`` with ``bucket`` as the dataset bucket and a namespace of its own."""
    namespace = "t_" + re.sub(r"[^a-z0-9]", "_", bucket.lower())
    return dataclasses.replace(endpoints, s3_bucket=bucket, catalog_namespace=namespace)
