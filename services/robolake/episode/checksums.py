"""The contract's checksum: sha256 of the exact bytes, in two spellings.

- Kafka header ``checksum`` and the episodes index: ``sha256:<64 lower-case hex digits>``.
- HTTP: the standard ``Content-Digest: sha-256=:<base64>:`` header (RFC 9530), so devices can use
  ordinary HTTP tooling.

sha256 because it is in the standard library, fast (hardware-accelerated on current CPUs) and
strong enough that the writer can use (episode_id, stream, seq, checksum) to tell a replayed
chunk from a different chunk under the same key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Final

from robolake.episode.errors import ContractViolation

CHECKSUM_ALGORITHM: Final = "sha256"
_CHECKSUM = re.compile(r"^sha256:[0-9a-f]{64}$")
_DIGEST_ENTRY = re.compile(r"^\s*sha-256\s*=\s*:([A-Za-z0-9+/=]+):\s*$")


def checksum(data: bytes | bytearray | memoryview) -> str:
    """``sha256:<hex>`` of ``data``."""
    return f"{CHECKSUM_ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def is_checksum(text: str) -> bool:
    """Whether ``text`` is spelled ``sha256:<64 lower-case hex digits>``."""
    return _CHECKSUM.fullmatch(text) is not None


def verify_checksum(data: bytes | bytearray | memoryview, expected: str) -> str:
    """Raise ``checksum_mismatch`` unless ``data`` hashes to ``expected``; return the checksum
    (so callers that also need it, like the record builder, hash the bytes only once)."""
    if not is_checksum(expected):
        raise ContractViolation(
            "checksum_mismatch",
            f"checksum {expected[:80]!r} is not spelled sha256:<64 lower-case hex digits>",
        )
    actual = checksum(data)
    if actual != expected:
        raise ContractViolation(
            "checksum_mismatch",
            f"body hashes to {actual}, the request declared {expected}; the bytes were damaged "
            "in transit -- send the chunk again",
        )
    return actual


def content_digest(data: bytes | bytearray | memoryview) -> str:
    """The RFC 9530 ``Content-Digest`` value of ``data``."""
    encoded = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return f"sha-256=:{encoded}:"


def checksum_from_content_digest(header: str) -> str:
    """The ``sha256:<hex>`` spelling of a ``Content-Digest`` header's sha-256 entry."""
    for entry in header.split(","):
        match = _DIGEST_ENTRY.match(entry)
        if match is None:
            continue
        try:
            digest = base64.b64decode(match.group(1), validate=True)
        except binascii.Error:
            break
        if len(digest) == hashlib.sha256().digest_size:
            return f"{CHECKSUM_ALGORITHM}:{digest.hex()}"
        break
    raise ContractViolation(
        "checksum_mismatch",
        f"Content-Digest {header[:80]!r} has no valid sha-256 entry; send "
        "'Content-Digest: sha-256=:<base64 of the body's sha256>:'",
    )
