"""RFC 9457 problem details: every error the collector answers with.

Each reason has a stable ``type`` URI (``https://robolake.dev/problems/<reason>``) and a fixed HTTP
status. Validation reasons come from the episode contract (``schemas/validation-reasons.v1.json``);
the collector adds its own below. Devices branch on ``reason`` (also a member of the body), never
on the human ``detail``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from typing import Final, Literal

from aiohttp import web

from robolake.episode.errors import ContractViolation
from robolake.episode.schemas import load_json

PROBLEM_TYPE_BASE: Final = "https://robolake.dev/problems/"
PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
#: Where a problem response keeps its reason for the metrics middleware.
REASON_KEY: Final = web.ResponseKey("reason", str)
VALIDATION_REASONS_FILE: Final = "validation-reasons.v1.json"

CollectorReason = Literal[
    "unauthorized",
    "forbidden",
    "ticket_invalid",
    "not_found",
    "method_not_allowed",
    "episode_conflict",
    "payload_too_large",
    "unsupported_media_type",
    "bad_request",
    "malformed_request",
    "request_timeout",
    "quota_exceeded",
    "overloaded",
    "kafka_unavailable",
    "draining",
    "internal_error",
]

STATUS: Final[dict[str, int]] = {
    "unauthorized": 401,
    "forbidden": 403,
    "ticket_invalid": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "episode_conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "bad_request": 400,
    "malformed_request": 400,
    "request_timeout": 408,
    "quota_exceeded": 429,
    "overloaded": 503,
    "kafka_unavailable": 503,
    "draining": 503,
    "internal_error": 500,
}

TITLES: Final[dict[str, str]] = {
    "unauthorized": "Missing, unknown or revoked device token",
    "forbidden": "This device may not write to this episode",
    "ticket_invalid": "Upload ticket missing, forged or expired",
    "not_found": "No such resource",
    "method_not_allowed": "Method not allowed on this resource",
    "episode_conflict": "Episode already registered with a different manifest",
    "payload_too_large": "Request body too large",
    "unsupported_media_type": "Unsupported Content-Type",
    "bad_request": "Invalid request",
    "malformed_request": "Not a valid HTTP/1.1 request",
    "request_timeout": "Request body too slow",
    "quota_exceeded": "Device over its upload quota",
    "overloaded": "Collector at capacity",
    "kafka_unavailable": "Kafka unavailable; nothing was acknowledged",
    "draining": "Collector shutting down",
    "internal_error": "Unexpected error in the collector; nothing was acknowledged",
}


@functools.cache
def _contract_statuses() -> dict[str, int]:
    """HTTP statuses of the contract's validation reasons, from the schema file that lists them."""
    document = load_json(VALIDATION_REASONS_FILE)
    return {
        str(entry["reason"]): int(entry["http_status"])
        for entry in document["reasons"]
        if entry.get("http_status") is not None
    }


def status_of(reason: str) -> int:
    """HTTP status of a collector or contract reason (422 for any other violation)."""
    return STATUS.get(reason) or _contract_statuses().get(reason, 422)


def problem(
    reason: str,
    detail: str,
    *,
    instance: str | None = None,
    retry_after: float | None = None,
    extra: Mapping[str, object] | None = None,
) -> web.Response:
    """An ``application/problem+json`` response for ``reason``."""
    status = status_of(reason)
    body: dict[str, object] = {
        "type": PROBLEM_TYPE_BASE + reason,
        "title": TITLES.get(reason, reason.replace("_", " ")),
        "status": status,
        "detail": detail,
        "reason": reason,
    }
    if instance:
        body["instance"] = instance
    if extra:
        body.update({k: v for k, v in extra.items() if v is not None and k not in body})
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        body["retry_after"] = retry_after
    response = web.Response(
        status=status,
        body=json.dumps(body, default=str).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )
    response[REASON_KEY] = reason  # for the metrics middleware, without re-parsing the body
    return response


def from_violation(violation: ContractViolation, *, instance: str | None = None) -> web.Response:
    """The problem response for a contract violation (422 unless the contract says otherwise)."""
    context: dict[str, object] = {
        k: v
        for k, v in violation.context.items()
        if isinstance(v, str | int | float) and k not in ("instance", "retry_after", "reason")
    }
    return problem(
        violation.reason,
        violation.message,
        instance=instance,
        extra={"retriable": violation.retriable, **context},
    )
