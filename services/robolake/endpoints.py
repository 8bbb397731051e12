"""Where robolake's services find Kafka, S3, the Iceberg catalog and Prometheus: one set of
environment variables.

The local stack prints these (``robolake stack up --env``), ``deploy/docker-compose.yml`` sets the
same names, and every service reads them through :meth:`Endpoints.from_env`, so a deployment is
configured one way everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from robolake.errors import RobolakeError

ENV_KAFKA_BOOTSTRAP: Final = "ROBOLAKE_KAFKA_BOOTSTRAP"
ENV_S3_ENDPOINT: Final = "ROBOLAKE_S3_ENDPOINT"
ENV_S3_ACCESS_KEY: Final = "ROBOLAKE_S3_ACCESS_KEY"
ENV_S3_SECRET_KEY: Final = "ROBOLAKE_S3_SECRET_KEY"
ENV_S3_REGION: Final = "ROBOLAKE_S3_REGION"
ENV_S3_BUCKET: Final = "ROBOLAKE_S3_BUCKET"
ENV_PROMETHEUS_URL: Final = "ROBOLAKE_PROMETHEUS_URL"
ENV_CATALOG_URI: Final = "ROBOLAKE_CATALOG_URI"
ENV_CATALOG_NAMESPACE: Final = "ROBOLAKE_CATALOG_NAMESPACE"

DEFAULT_S3_REGION: Final = "us-east-1"
DEFAULT_S3_BUCKET: Final = "robolake"
DEFAULT_CATALOG_NAMESPACE: Final = "robolake"


class EndpointsError(RobolakeError):
    """The environment does not say where Kafka or S3 is."""


@dataclass(frozen=True)
class Endpoints:
    """Addresses and credentials of the systems robolake talks to.

    ``s3_secret_key`` is excluded from ``repr`` so that logging an ``Endpoints`` never leaks it.
    ``catalog_uri`` is optional: services that do not use Iceberg tables run without one.
    """

    kafka_bootstrap: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str = field(repr=False)
    s3_region: str = DEFAULT_S3_REGION
    s3_bucket: str = DEFAULT_S3_BUCKET
    prometheus_url: str | None = None
    catalog_uri: str | None = None
    #: The Iceberg namespace holding every table of this deployment.
    catalog_namespace: str = DEFAULT_CATALOG_NAMESPACE

    @property
    def s3_secure(self) -> bool:
        """Whether the S3 endpoint uses TLS."""
        return self.s3_endpoint.startswith("https://")

    @property
    def s3_host(self) -> str:
        """``host:port`` of the S3 endpoint, the form the ``minio`` client takes."""
        return self.s3_endpoint.split("://", 1)[-1].rstrip("/")

    def to_env(self) -> dict[str, str]:
        """The environment variables that make :meth:`from_env` return this object."""
        env = {
            ENV_KAFKA_BOOTSTRAP: self.kafka_bootstrap,
            ENV_S3_ENDPOINT: self.s3_endpoint,
            ENV_S3_ACCESS_KEY: self.s3_access_key,
            ENV_S3_SECRET_KEY: self.s3_secret_key,
            ENV_S3_REGION: self.s3_region,
            ENV_S3_BUCKET: self.s3_bucket,
        }
        if self.prometheus_url:
            env[ENV_PROMETHEUS_URL] = self.prometheus_url
        if self.catalog_uri:
            env[ENV_CATALOG_URI] = self.catalog_uri
            env[ENV_CATALOG_NAMESPACE] = self.catalog_namespace
        return env

    def catalog_properties(self) -> dict[str, str]:
        """pyiceberg's configuration of the Iceberg REST catalog (``load_catalog(name, **it)``).

        The same keys work against any REST catalog (Polaris, Lakekeeper, Nessie, Iceberg's own
        server); the S3 keys are for the data files, which pyiceberg reads and writes itself.
        Path-style addressing is spelled twice because pyiceberg 0.12 ignores the Java key
        (``s3.path-style-access``) and reads its own (``s3.force-virtual-addressing``); the Java
        one is there for engines handed the same map. The result holds the secret key: hand it
        to pyiceberg, never to a log.
        """
        if not self.catalog_uri:
            raise EndpointsError(
                f"no Iceberg catalog configured; set {ENV_CATALOG_URI} (the local stack exports "
                'it: eval "$(robolake stack status --env)")'
            )
        return {
            "type": "rest",
            "uri": self.catalog_uri,
            "s3.endpoint": self.s3_endpoint,
            "s3.access-key-id": self.s3_access_key,
            "s3.secret-access-key": self.s3_secret_key,
            "s3.region": self.s3_region,
            "s3.path-style-access": "true",
            "s3.force-virtual-addressing": "false",
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Endpoints:
        """Read the endpoints from the environment; name every missing variable at once."""
        env = os.environ if environ is None else environ
        required = (ENV_KAFKA_BOOTSTRAP, ENV_S3_ENDPOINT, ENV_S3_ACCESS_KEY, ENV_S3_SECRET_KEY)
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise EndpointsError(
                f"missing environment variable(s) {', '.join(missing)}; start the local stack "
                'with `robolake stack up` and load them with `eval "$(robolake stack status '
                '--env)"`, or point them at your cluster'
            )
        return cls(
            kafka_bootstrap=env[ENV_KAFKA_BOOTSTRAP],
            s3_endpoint=env[ENV_S3_ENDPOINT],
            s3_access_key=env[ENV_S3_ACCESS_KEY],
            s3_secret_key=env[ENV_S3_SECRET_KEY],
            s3_region=env.get(ENV_S3_REGION) or DEFAULT_S3_REGION,
            s3_bucket=env.get(ENV_S3_BUCKET) or DEFAULT_S3_BUCKET,
            prometheus_url=env.get(ENV_PROMETHEUS_URL) or None,
            catalog_uri=env.get(ENV_CATALOG_URI) or None,
            catalog_namespace=env.get(ENV_CATALOG_NAMESPACE) or DEFAULT_CATALOG_NAMESPACE,
        )
