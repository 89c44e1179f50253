"""Operators (docs/operator-runbook.md, Operators): the one form of an address, enrolment secrets, and the refusals an operator meets.

    >>> normalise_address("  Ops@Example.COM\\t")
    'ops@example.com'
    >>> OperatorRefused.from_verdict("TENANT_NOT_GRANTED: ops@x holds no grant on globex").code
    'TENANT_NOT_GRANTED'

Codes are checked by the database (``compliance.operator_authenticate``), which alone reads the secrets;
this module only makes new secrets and the ``otpauth://`` URI an authenticator app scans.
"""

from __future__ import annotations

import base64
import re
import unicodedata

__all__ = [
    "OPERATOR_CODES",
    "TENANT_ID",
    "OperatorRefused",
    "checked_address",
    "enrolment_qr",
    "enrolment_uri",
    "new_secret",
    "normalise_address",
    "secret_base32",
]

OPERATOR_CODES = ("OPERATOR_NOT_ALLOWED", "OPERATOR_NOT_AUTHENTICATED", "TENANT_NOT_GRANTED")
ISSUER = "compliance-ledger"
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+$")
TENANT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # docs/format.md §1's tenant_id


class OperatorRefused(PermissionError):
    """An operator action refused with a docs/format.md §4 code; the message says what to change. Nothing was read, and
    nothing written but a refused code's failure count."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")

    @classmethod
    def from_verdict(cls, verdict: str) -> OperatorRefused:
        """From the database's ``'<CODE>: <message>'`` answer."""
        code, _, message = verdict.partition(": ")
        if code not in OPERATOR_CODES:
            raise ValueError(f"not an operator refusal: {verdict!r}")
        return cls(code, message)


def normalise_address(address: str | None) -> str:
    """Trimmed, case-folded, NFC: the form every table, check and rate limit uses."""
    return unicodedata.normalize("NFC", (address or "").strip().casefold())


def checked_address(address: str | None) -> str:
    """The normalised address, refused (ValueError naming what to change) unless it looks like one."""
    addr = normalise_address(address)
    if not _ADDRESS.match(addr) or len(addr) > 254:
        raise ValueError(f"{address!r} is not an e-mail address; give the operator's address, e.g. ops@example.com")
    return addr


def new_secret() -> bytes:
    """A fresh 160-bit TOTP secret (RFC 4226 recommends 160 bits for SHA-1)."""
    import secrets

    return secrets.token_bytes(20)


def secret_base32(secret: bytes) -> str:
    return base64.b32encode(secret).decode().rstrip("=")


def enrolment_uri(address: str, secret: bytes) -> str:
    """The ``otpauth://totp/...`` URI (SHA-1, 6 digits, 30 s) an authenticator app scans."""
    import pyotp

    return pyotp.TOTP(secret_base32(secret)).provisioning_uri(name=address, issuer_name=ISSUER)


def enrolment_qr(uri: str) -> str:
    """The URI as a QR code drawn with block characters, for a terminal."""
    import io

    import segno

    out = io.StringIO()
    segno.make(uri, error="m").terminal(out=out, compact=True)
    return out.getvalue()
