"""Per-tenant hash chains (SPEC §2).

    >>> body = canonical_body(seq=1, event_id="019a8b2c-0000-7001-8000-000000000001",
    ...     tenant_id="t", occurred_at="2026-11-22T00:00:00.000000Z",
    ...     recorded_at="2026-11-22T00:00:01.000000Z", actor_type="user", actor_id="u",
    ...     source="web", event_type="auth.signout", payload_jcs="{}", redacted_fields_jcs="[]")
    >>> event_hash(GENESIS_HASH, body).hex()[:16]
    '0af0916133618ae7'

``canonical_body`` assembles the RFC 8785 bytes of the hashed object from
parts that are already canonical (the payload and the redacted-field list are
stored in their RFC 8785 form), so chaining costs a string join and one
SHA-256, not a JSON serialization.
"""

from __future__ import annotations

import hashlib

from compliance.jcs import encode_string

__all__ = ["GENESIS_HASH", "canonical_body", "event_hash"]

GENESIS_HASH = bytes(32)
_sha256 = hashlib.sha256


def canonical_body(
    *,
    seq: int,
    event_id: str,
    tenant_id: str,
    occurred_at: str,
    recorded_at: str,
    actor_type: str,
    actor_id: str,
    source: str,
    event_type: str,
    payload_jcs: str,
    redacted_fields_jcs: str,
) -> bytes:
    """The RFC 8785 bytes of the v1 event object. Keys appear in RFC 8785 order.

    ``tenant_id``, ``event_type``, ``actor_type``, ``event_id`` and the timestamps
    must already be valid (SPEC §1): their character sets never need escaping,
    so they are written as they are; the free-text ``actor_id`` and ``source``
    are escaped. (A tampered stored value still changes the hash, so
    verification does not depend on that precondition.)
    """
    return (
        '{"actor":{"id":'
        + _quote(actor_id)
        + ',"type":"'
        + actor_type
        + '"},"event_id":"'
        + event_id
        + '","event_type":"'
        + event_type
        + '","occurred_at":"'
        + occurred_at
        + '","payload":'
        + payload_jcs
        + ',"recorded_at":"'
        + recorded_at
        + '","redacted_fields":'
        + redacted_fields_jcs
        + ',"seq":'
        + str(seq)
        + ',"source":'
        + _quote(source)
        + ',"tenant_id":"'
        + tenant_id
        + '","v":1}'
    ).encode("utf-8")


def _quote(text: str) -> str:
    """The RFC 8785 string form; printable ASCII without quote or backslash needs no escaping."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return encode_string(text)


def event_hash(prev_hash: bytes, body: bytes) -> bytes:
    """SHA-256(prev_hash || body), 32 raw bytes."""
    return _sha256(prev_hash + body).digest()
