"""The local stack: real Kafka, MinIO and Prometheus on loopback, without Docker.

Each component is installed once into a cache (``~/.cache/robolake`` or ``$ROBOLAKE_CACHE_DIR``)
from the ordinary package registries: Kafka's jars by Maven, MinIO by ``go install``, Prometheus
from Debian's package. The components run as child processes in their own sessions with their data
and logs in a state directory; ``robolake stack down`` stops exactly the processes it started.
"""
