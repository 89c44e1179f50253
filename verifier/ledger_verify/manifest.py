"""The export manifest (SPEC §4): v2 is signed like an anchor, by a key the trust file pins.

A manifest attests the export's filter, row count, rows and file digest. It
is ``{"v": 2, "kind": "export-manifest", …, "signature": {"alg": "ed25519",
"key_id", "sig"}}``, ``sig`` over the JCS bytes of the parsed manifest without
its ``signature`` member; ``kind`` keeps a manifest's signature from passing for
an anchor's. A v1 manifest is unsigned and is accepted only when asked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ledger_verify.anchors import check_signature
from ledger_verify.errors import VerificationFailure
from ledger_verify.store import AnchorStore
from ledger_verify.trust import Trust

__all__ = ["MANIFEST_KIND", "check_manifest", "load_manifest"]

MANIFEST_KIND = "export-manifest"


def load_manifest(data: bytes) -> dict[str, Any]:
    """The parsed manifest; raises ``manifest`` when it is not a JSON object."""
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise VerificationFailure("manifest", f"the manifest is not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise VerificationFailure("manifest", "the manifest is not a JSON object")
    return manifest


def check_manifest(manifest: Mapping[str, Any], trust: Trust, store: AnchorStore, *, allow_unsigned: bool) -> str:
    """Check who attests the manifest; returns how it was accepted ("signed by <key_id>", or unsigned).
    Raises ``manifest`` (another bucket, an unknown version, an unsigned one not allowed), ``untrusted_key``
    or ``bad_signature``."""
    bucket = manifest.get("anchor_bucket")
    if bucket is not None and bucket != trust.anchor_bucket:
        raise VerificationFailure(
            "manifest",
            f"the manifest names the anchor bucket {str(bucket)[:100]!r}; the trust file names {trust.anchor_bucket!r}",
        )
    version = manifest.get("v")
    if version == 1 and "signature" not in manifest:
        if not allow_unsigned:
            raise VerificationFailure(
                "manifest",
                "the manifest is unsigned (v1): its row count and digest are self-declared; ask for a new export, "
                "or pass --allow-unsigned-manifest to accept it as it is",
            )
        return "unsigned (v1), accepted by --allow-unsigned-manifest: its rows, count and digest are not attested"
    if version != 2 or manifest.get("kind") != MANIFEST_KIND:
        raise VerificationFailure("manifest", f'the manifest is not a v2 "{MANIFEST_KIND}" (v {version!r})')
    signature = manifest.get("signature")
    key_id = signature.get("key_id") if isinstance(signature, dict) else None
    public = trust.public_key(store, key_id, "the manifest")  # type: ignore[arg-type]
    check_signature(manifest, public, "the manifest")
    return f"signed by {key_id}"
