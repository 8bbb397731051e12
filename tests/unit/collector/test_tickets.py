from __future__ import annotations

import pytest

from robolake.collector.tickets import MAX_TICKET_CHARS, TicketError, TicketSigner

KEY = b"k" * 32


def _issue(signer: TicketSigner, manifest: bytes = b'{"episode_id": "e"}') -> str:
    text, _ = signer.issue(
        device_id="robot-1", capture_point_id="cp-7", organisation="acme", manifest=manifest, ttl=60
    )
    return text


def test_ticket_round_trips_the_manifest_and_identity() -> None:
    now = [1000.0]
    signer = TicketSigner(KEY, clock=lambda: now[0])
    manifest = b'{"episode_id": "0190", "task": "pick up the cup"}'
    ticket = signer.verify(_issue(signer, manifest))
    assert ticket.manifest == manifest
    assert (ticket.device_id, ticket.capture_point_id, ticket.organisation) == (
        "robot-1",
        "cp-7",
        "acme",
    )
    assert ticket.expires_at == 1060.0


def test_another_replica_with_the_same_key_accepts_it() -> None:
    assert TicketSigner(KEY).verify(_issue(TicketSigner(KEY))).device_id == "robot-1"


def test_forged_or_foreign_tickets_are_refused() -> None:
    text = _issue(TicketSigner(KEY))
    payload, mac = text.split(".")
    with pytest.raises(TicketError, match="signature"):
        TicketSigner(b"x" * 32).verify(text)
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac
    with pytest.raises(TicketError):
        TicketSigner(KEY).verify(forged)
    with pytest.raises(TicketError, match="malformed"):
        TicketSigner(KEY).verify("garbage")


def test_expired_ticket_is_refused() -> None:
    now = [1000.0]
    signer = TicketSigner(KEY, clock=lambda: now[0])
    text = _issue(signer)
    now[0] = 1061.0
    with pytest.raises(TicketError, match="expired"):
        signer.verify(text)


def test_short_keys_and_huge_manifests_are_refused() -> None:
    with pytest.raises(TicketError, match="at least 16 bytes"):
        TicketSigner(b"short")
    import os

    with pytest.raises(TicketError, match="ticket"):
        _issue(TicketSigner(KEY), os.urandom(MAX_TICKET_CHARS))
