"""Where anchors are read from: the anchor bucket over S3, or a local copy of it (``aws s3 sync``).

    store = S3Store("acme-ledger-anchors")          # boto3's own configuration: credentials, AWS_ENDPOINT_URL_S3
    store = DirectoryStore(Path("bucket-copy"))     # DIR/anchors/, DIR/proofs/, DIR/keys/<key_id>.pem

Both answer the :class:`AnchorStore` protocol. A local copy cannot tell an
object's Object Lock mode, retention or versions: it answers None, and the
verifier reports those checks as not made.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

__all__ = ["AnchorStore", "DirectoryStore", "S3Store", "s3_get_bytes"]

# Every key the verifier asks for: anchors/<cadence>.json, proofs/<cadence>.ndjson, keys/<key_id>.pem.
_KEY_RE = re.compile(r"(anchors/[0-9a-f]{32}\.json|proofs/[0-9a-f]{32}\.ndjson|keys/[A-Za-z0-9._-]{1,64}\.pem)")


class AnchorStore(Protocol):
    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""
        ...

    def lock(self, key: str) -> tuple[str | None, datetime | None] | None:
        """(Object Lock mode, retain-until) as read back from the object; None when the store cannot tell."""
        ...

    def versions(self, key: str) -> int | None:
        """How many versions the key has; None when the store cannot tell."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix``."""
        ...


def _checked(key: str) -> str:
    if _KEY_RE.fullmatch(key) is None:
        raise ValueError(f"{key!r} is not the name of an anchor, proofs or key object")
    return key


class DirectoryStore:
    """A local copy of the bucket root, as ``aws s3 sync s3://BUCKET DIR`` writes it; no network."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise FileNotFoundError(
                f"{root} is not a directory (expected a copy of the bucket: anchors/, proofs/, keys/)"
            )
        self.root = root

    def get(self, key: str) -> bytes | None:
        path = self.root / _checked(key)
        return path.read_bytes() if path.is_file() else None

    def lock(self, key: str) -> tuple[str | None, datetime | None] | None:
        return None

    def versions(self, key: str) -> int | None:
        return None

    def list(self, prefix: str) -> list[str]:
        folder = self.root / prefix.rstrip("/")
        if not folder.is_dir():
            return []
        return sorted(f"{prefix.rstrip('/')}/{p.name}" for p in folder.iterdir() if p.is_file())


def s3_get_bytes(s3: Any, bucket: str, key: str) -> bytes | None:
    """An object's bytes, or None when there is no such key."""
    from botocore.exceptions import ClientError

    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


class S3Store:
    """The anchor bucket, read with GetObject, HeadObject (Object Lock as the object carries it) and
    ListBucketVersions. ``client``: a boto3 S3 client; by default one made with boto3's own configuration."""

    def __init__(self, bucket: str, client: Any = None) -> None:
        if client is None:
            try:
                import boto3
            except ImportError:
                raise RuntimeError(
                    "reading the bucket needs boto3: pip install 'ledger-verify[s3]', or verify a local copy with --anchors DIR"
                ) from None
            client = boto3.client("s3")
        self.s3, self.bucket = client, bucket

    def get(self, key: str) -> bytes | None:
        return s3_get_bytes(self.s3, self.bucket, key)

    def lock(self, key: str) -> tuple[str | None, datetime | None] | None:
        head = self.s3.head_object(Bucket=self.bucket, Key=key)
        return head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")

    def versions(self, key: str) -> int | None:
        count = 0
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key):
            count += sum(1 for v in page.get("Versions", []) if v.get("Key") == key)
        return count

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys
