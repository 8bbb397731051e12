"""The collector's flags and environment variables: ``--reuse-port``, ``--producer``."""

from __future__ import annotations

import argparse

import pytest

from robolake.collector.errors import CollectorError
from robolake.collector.settings import (
    ENV_PRODUCER,
    ENV_REUSE_PORT,
    PRODUCERS,
    CollectorSettings,
    add_arguments,
)
from robolake.collector.sink import PRODUCER_FACTORIES


def _settings(argv: list[str]) -> CollectorSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return CollectorSettings.from_args(parser.parse_args(argv))


@pytest.fixture(autouse=True)
def _ticket_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBOLAKE_TICKET_KEY", "k" * 32)
    monkeypatch.delenv(ENV_REUSE_PORT, raising=False)


def test_reuse_port_is_off_by_default() -> None:
    assert _settings([]).reuse_port is False
    assert CollectorSettings().reuse_port is False


def test_reuse_port_flag_turns_it_on() -> None:
    assert _settings(["--reuse-port"]).reuse_port is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("On", True), ("0", False), ("no", False), ("", False)],
)
def test_reuse_port_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv(ENV_REUSE_PORT, value)
    assert _settings([]).reuse_port is expected


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_REUSE_PORT, "1")
    assert _settings(["--no-reuse-port"]).reuse_port is False
    monkeypatch.setenv(ENV_REUSE_PORT, "0")
    assert _settings(["--reuse-port"]).reuse_port is True


def test_a_malformed_environment_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_REUSE_PORT, "maybe")
    with pytest.raises(CollectorError, match=ENV_REUSE_PORT):
        _settings([])


def test_the_producer_is_librdkafka_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_PRODUCER, raising=False)
    assert _settings([]).producer == "librdkafka"
    assert _settings(["--producer", "aiokafka"]).producer == "aiokafka"
    monkeypatch.setenv(ENV_PRODUCER, "aiokafka")
    assert _settings([]).producer == "aiokafka"


def test_an_unknown_producer_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_PRODUCER, "kafka-python")
    with pytest.raises(CollectorError, match="ROBOLAKE_COLLECTOR_PRODUCER='kafka-python'"):
        _settings([])


def test_every_producer_name_has_a_client() -> None:
    assert set(PRODUCER_FACTORIES) == set(PRODUCERS)
