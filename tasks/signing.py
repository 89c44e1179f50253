"""The anchor signing key, from a file or secret mount outside Prefect; a Prefect Secret block in dev only.

Where the key comes from, first found wins:

1. ``COMPLIANCE_SIGNING_KEY_FILE``: a file holding the Ed25519 private key as hex or PEM, such as a
   Kubernetes or ECS secret mount, or a file a KMS-backed agent writes. This is the production source.
2. ``COMPLIANCE_SIGNING_KEY``: the key itself (hex or PEM) in the environment.
3. In the ``dev`` stage only, the Prefect Secret block ``compliance-signing-key``, generated on first use.
   Outside dev a Secret block is refused: the Prefect API returns a Secret's value to any caller it lets in.

Rotation in dev (`compliance keys rotate`) replaces the block; elsewhere the operator replaces the file, and
the next anchor run publishes the new public key. Anchors signed with an older key keep verifying because
every public key ever used stays published at ``keys/<key_id>.pem`` in the (write-once) anchor bucket.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compliance.anchor import key_id_for, load_private_key
from compliance.settings import Settings

__all__ = [
    "KEY_FILE_VARIABLE",
    "SECRET_BLOCK",
    "SigningKey",
    "SigningKeyError",
    "load_signing_key",
    "rotate_signing_key",
    "rotation_refusal",
]

SECRET_BLOCK = "compliance-signing-key"
KEY_FILE_VARIABLE = "COMPLIANCE_SIGNING_KEY_FILE"


class SigningKeyError(RuntimeError):
    """No usable signing key where the configuration points; the message says what to change."""


class SigningKey:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.key_id = key_id_for(key)


def _hex(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    ).hex()


def _parse(text: str, where: str) -> SigningKey:
    try:
        return SigningKey(load_private_key(text))
    except ValueError as exc:
        raise SigningKeyError(f"{where} does not hold an Ed25519 private key as hex or PEM ({exc})") from None


def load_signing_key(settings: Settings) -> SigningKey:
    """The configured signing key; in dev, a new one is generated into the Secret block on first use."""
    path = os.environ.get(KEY_FILE_VARIABLE)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SigningKeyError(f"{KEY_FILE_VARIABLE}={path}: cannot read the signing key ({exc.strerror})") from None
        return _parse(text, f"{KEY_FILE_VARIABLE}={path}")
    configured = os.environ.get("COMPLIANCE_SIGNING_KEY")
    if configured:
        return _parse(configured, "COMPLIANCE_SIGNING_KEY")
    if settings.stage != "dev":
        raise SigningKeyError(
            f"no signing key: set {KEY_FILE_VARIABLE} to a file or secret mount holding the Ed25519 private key "
            f"(hex or PEM); in {settings.stage} a Prefect Secret block is not used, because the Prefect API returns "
            "its value to any caller"
        )
    from prefect.blocks.system import Secret

    try:
        secret = Secret.load(SECRET_BLOCK, _sync=True)  # type: ignore[call-arg]
        return _parse(str(secret.get()), f"the Prefect Secret block {SECRET_BLOCK!r}")
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
    return rotate_signing_key()


def rotation_refusal(settings: Settings) -> str | None:
    """Why `compliance keys rotate` (which writes the dev Secret block) must not run here, or None."""
    if settings.stage != "dev":
        return (
            f"in {settings.stage} the signing key is the file {KEY_FILE_VARIABLE} names: write a new Ed25519 key "
            "there (e.g. `openssl genpkey -algorithm ed25519`); the next anchor run publishes its public key"
        )
    for variable in (KEY_FILE_VARIABLE, "COMPLIANCE_SIGNING_KEY"):
        if os.environ.get(variable):
            return f"{variable} is set and would override the rotated key; unset it first"
    return None


def rotate_signing_key() -> SigningKey:
    """Generate a new key and store it in the Secret block (dev); the caller publishes its public key."""
    from prefect.blocks.system import Secret

    key = Ed25519PrivateKey.generate()
    Secret(value=_hex(key)).save(SECRET_BLOCK, overwrite=True, _sync=True)  # type: ignore[call-arg]
    return SigningKey(key)
