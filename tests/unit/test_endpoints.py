from __future__ import annotations

from dataclasses import replace

import pytest

from robolake.endpoints import (
    ENV_CATALOG_URI,
    ENV_KAFKA_BOOTSTRAP,
    ENV_S3_ACCESS_KEY,
    ENV_S3_ENDPOINT,
    ENV_S3_SECRET_KEY,
    Endpoints,
    EndpointsError,
)


def test_round_trip_through_environment() -> None:
    endpoints = Endpoints(
        kafka_bootstrap="127.0.0.1:9092",
        s3_endpoint="https://s3.local:9000",
        s3_access_key="key",
        s3_secret_key="very-secret",
        prometheus_url="http://127.0.0.1:9090",
        catalog_uri="http://127.0.0.1:8181",
    )
    assert endpoints.to_env()[ENV_CATALOG_URI] == "http://127.0.0.1:8181"
    again = Endpoints.from_env(endpoints.to_env())
    assert again == endpoints
    assert again.s3_secure
    assert again.s3_host == "s3.local:9000"


def test_secret_is_not_in_repr() -> None:
    endpoints = Endpoints("k:1", "http://s:2", "user", "very-secret")
    assert "very-secret" not in repr(endpoints)


def test_missing_variables_are_all_named() -> None:
    with pytest.raises(EndpointsError) as info:
        Endpoints.from_env({ENV_S3_ACCESS_KEY: "x"})
    message = str(info.value)
    for name in (ENV_KAFKA_BOOTSTRAP, ENV_S3_ENDPOINT, ENV_S3_SECRET_KEY):
        assert name in message
    assert ENV_S3_ACCESS_KEY not in message.split(";")[0]


def test_catalog_is_optional_and_its_properties_are_pyiceberg_rest_config() -> None:
    without = Endpoints("k:1", "http://127.0.0.1:2", "user", "very-secret")
    assert ENV_CATALOG_URI not in without.to_env()
    assert Endpoints.from_env(without.to_env()).catalog_uri is None
    with pytest.raises(EndpointsError, match=ENV_CATALOG_URI):
        without.catalog_properties()

    props = replace(without, catalog_uri="http://127.0.0.1:8181").catalog_properties()
    assert props == {
        "type": "rest",
        "uri": "http://127.0.0.1:8181",
        "s3.endpoint": "http://127.0.0.1:2",
        "s3.access-key-id": "user",
        "s3.secret-access-key": "very-secret",
        "s3.region": "us-east-1",
        "s3.path-style-access": "true",
        "s3.force-virtual-addressing": "false",
    }
