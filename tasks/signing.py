"""The anchor signing key: from COMPLIANCE_SIGNING_KEY, or a Prefect Secret block (generated on first use in dev).

The Secret block ``compliance-signing-key`` holds the private key as hex. Rotation
(`compliance keys rotate`) replaces it; anchors signed with an older key keep
verifying because every public key ever used stays published at
``keys/<key_id>.pem`` in the (write-once) anchor bucket.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compliance.anchor import key_id_for, load_private_key
from compliance.settings import Settings

__all__ = ["SECRET_BLOCK", "SigningKey", "load_signing_key", "rotate_signing_key"]

SECRET_BLOCK = "compliance-signing-key"


class SigningKey:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.key_id = key_id_for(key)


def _hex(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    ).hex()


def load_signing_key(settings: Settings) -> SigningKey:
    """The configured signing key; in dev, a new one is generated and stored on first use."""
    configured = os.environ.get("COMPLIANCE_SIGNING_KEY")
    if configured:
        return SigningKey(load_private_key(configured))
    from prefect.blocks.system import Secret

    try:
        secret = Secret.load(SECRET_BLOCK, _sync=True)  # type: ignore[call-arg]
        return SigningKey(load_private_key(str(secret.get())))
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
    if settings.stage != "dev":
        raise RuntimeError(
            f"no signing key: create the Prefect Secret block {SECRET_BLOCK!r} (hex Ed25519 private key) "
            "or set COMPLIANCE_SIGNING_KEY; keys are generated automatically only in the dev stage"
        )
    return rotate_signing_key()


def rotate_signing_key() -> SigningKey:
    """Generate a new key and store it in the Secret block; the caller publishes its public key."""
    from prefect.blocks.system import Secret

    key = Ed25519PrivateKey.generate()
    Secret(value=_hex(key)).save(SECRET_BLOCK, overwrite=True, _sync=True)  # type: ignore[call-arg]
    return SigningKey(key)
