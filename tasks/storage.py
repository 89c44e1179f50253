"""S3 clients and bucket provisioning, in plain S3 calls (AWS S3, MinIO or the local moto server)."""

from __future__ import annotations

import base64
import json
import os
import zlib
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from ledger_verify.store import s3_get_bytes as get_bytes

from compliance.bucket import anchor_bucket_policy, anchor_encryption, anchor_lifecycle
from compliance.posture import MANAGEMENT_ACTIONS, BucketFacts, StoredObject
from compliance.settings import AWS_CREDENTIAL_VARIABLES, Settings, SettingsError

__all__ = [
    "MultipartWriter",
    "UploadMismatch",
    "bucket_exists",
    "bucket_facts",
    "get_bytes",
    "provision_anchor_bucket",
    "provision_export_bucket",
    "s3_client",
    "set_lock_mode",
    "stored_object",
]

_DEV_KEY = "compliance-dev"


def s3_client(settings: Settings, *, sign_payloads: bool = True) -> Any:
    """A boto3 S3 client for the configured endpoint (unset: AWS itself), with the keys of the AwsCredentials
    block the settings name when it holds some, else boto3's default credential chain.

    ``sign_payloads=False`` is for a client that only sends bodies carrying their own CRC32, which S3 checks
    (:class:`MultipartWriter`): it leaves out the SHA-256 of each body in the request's signature, which
    botocore computes over plain HTTP (a local endpoint) and already leaves out over HTTPS with a checksum."""
    kwargs: dict[str, Any] = {
        "config": Config(
            signature_version="s3v4",
            retries={"max_attempts": 4, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            s3={"addressing_style": "path", **({} if sign_payloads else {"payload_signing_enabled": False})},
        ),
        "region_name": os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
    }
    if settings.s3_endpoint_url:
        kwargs["endpoint_url"] = settings.s3_endpoint_url
    session = _credentials_block_session(settings.aws_credentials_block) if settings.aws_credentials_block else None
    if session is not None:
        return session.client("s3", **kwargs)
    # The local S3 server takes any key; only in dev, and only where nothing else is configured, is that key
    # filled in. Staging and prod always use boto3's default chain (environment, profile, SSO, web identity,
    # container or instance role), whatever the endpoint.
    ambient = any(os.environ.get(v) for v in AWS_CREDENTIAL_VARIABLES)
    if settings.s3_endpoint_url and settings.stage == "dev" and not ambient:
        kwargs["aws_access_key_id"] = kwargs["aws_secret_access_key"] = _DEV_KEY
    return boto3.client("s3", **kwargs)


def _credentials_block_session(name: str) -> Any:
    """A boto3 session from the prefect-aws ``AwsCredentials`` block ``name`` when it holds keys (or a profile or
    a role to assume); None when it holds nothing of the kind, which leaves boto3's default chain."""
    from prefect_aws import AwsCredentials

    try:
        creds: Any = AwsCredentials.load(name, _sync=True)  # type: ignore[call-arg]
    except ValueError:
        raise SettingsError(
            f"COMPLIANCE_AWS_CREDENTIALS_BLOCK names the AwsCredentials block {name!r}, which is not saved on the "
            "Prefect server; save it, or clear the setting to use boto3's default chain"
        ) from None
    if not (creds.aws_access_key_id or creds.profile_name or creds.assume_role_arn):
        return None
    return creds.get_boto3_session()


def bucket_exists(s3: Any, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise
    return True


def _create(s3: Any, bucket: str, **extra: Any) -> bool:
    if bucket_exists(s3, bucket):
        return False
    region = s3.meta.region_name
    if region and region != "us-east-1":
        extra["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(Bucket=bucket, **extra)
    return True


def provision_anchor_bucket(
    s3: Any,
    bucket: str,
    *,
    mode: str,
    retention_days: int,
    kms_key_id: str | None = None,
    https_only: bool | None = None,
    deny_deletes: bool = True,
) -> bool:
    """Create the anchor bucket in its WORM posture, or bring an existing one's hardening up to date; returns
    whether it was created.

    At creation: Object Lock (which turns on versioning) with its default mode and retention. Every time:
    versioning, public access blocked, default encryption (SSE-KMS with ``kms_key_id`` and a bucket key;
    SSE-S3 without one, as in dev), the lifecycle moving anchors and proofs to Glacier IR, and the policy
    (:func:`compliance.bucket.anchor_bucket_policy`; replaced whole, as is the lifecycle). The Object Lock
    default of an existing bucket is left as it is: `compliance bucket lock-mode` changes it.
    ``https_only`` (None: when the client's endpoint is https, as AWS's is) adds the deny of plain HTTP.
    """
    created = _create(s3, bucket, ObjectLockEnabledForBucket=True)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if created:
        s3.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": mode, "Days": retention_days}},
            },
        )
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=anchor_encryption(kms_key_id))
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=anchor_lifecycle())
    if https_only is None:
        https_only = urlsplit(s3.meta.endpoint_url).scheme == "https"
    if deny_deletes:
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(anchor_bucket_policy(bucket, https_only=https_only)))
    return created


def set_lock_mode(s3: Any, bucket: str, mode: str) -> None:
    """Change the bucket's default Object Lock mode, keeping its default retention. Objects already written
    keep the lock they were written with."""
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    rule = lock.get("Rule", {}).get("DefaultRetention", {})
    retention = {"Days": rule["Days"]} if rule.get("Days") else {"Years": rule["Years"]}
    s3.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": mode, **retention}},
        },
    )


def provision_export_bucket(s3: Any, bucket: str, *, expire_days: int = 30) -> bool:
    """Create the export bucket: versioned, private, encrypted, objects expiring after ``expire_days``."""
    if not _create(s3, bucket):
        return False
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "expire-exports",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "exports/"},
                    "Expiration": {"Days": expire_days},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": expire_days},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ]
        },
    )
    return True


def stored_object(s3: Any, bucket: str, key: str) -> StoredObject:
    """One object's versions and lock, as the watchdog reads anchors back (read-only calls). A delete marker
    counts as a version: an anchor hidden behind one is as gone as a deleted one."""
    listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    versions = [v for v in listing.get("Versions", []) if v["Key"] == key]
    markers = [m for m in listing.get("DeleteMarkers", []) if m["Key"] == key]
    if not versions:
        return StoredObject(key, 0, None, None)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound", "405"):
            return StoredObject(key, 0, None, None)  # the newest version is a delete marker
        raise
    return StoredObject(
        key, len(versions) + len(markers), head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
    )


def bucket_facts(s3: Any, bucket: str) -> BucketFacts:
    """Read the anchor bucket's configuration (read-only calls)."""

    def call(fn: Any, **kw: Any) -> Any:
        try:
            return fn(Bucket=bucket, **kw)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket",):
                raise
            return None

    versioning = (call(s3.get_bucket_versioning) or {}).get("Status")
    lock = (call(s3.get_object_lock_configuration) or {}).get("ObjectLockConfiguration", {})
    rule = lock.get("Rule", {}).get("DefaultRetention", {})
    days = rule.get("Days") or (rule.get("Years", 0) * 365 if rule.get("Years") else None)
    pab = (call(s3.get_public_access_block) or {}).get("PublicAccessBlockConfiguration", {})
    enc = (call(s3.get_bucket_encryption) or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    default_enc = enc[0].get("ApplyServerSideEncryptionByDefault", {}) if enc else {}
    policy = _policy_facts((call(s3.get_bucket_policy) or {}).get("Policy"))
    lifecycle = (call(s3.get_bucket_lifecycle_configuration) or {}).get("Rules", [])
    return BucketFacts(
        versioning=versioning,
        lock_enabled=lock.get("ObjectLockEnabled") == "Enabled",
        default_mode=rule.get("Mode"),
        default_days=days,
        public_access_blocked=bool(pab)
        and all(
            pab.get(k) for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
        ),
        encryption=default_enc.get("SSEAlgorithm"),
        kms_key_id=default_enc.get("KMSMasterKeyID"),
        bucket_key=bool(enc and enc[0].get("BucketKeyEnabled")),
        transitions=_glacier_ir_transitions(lifecycle),
        **policy,
    )


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def _policy_facts(policy_text: str | None) -> dict[str, Any]:
    """What the bucket policy denies to everyone: deletes, plain HTTP, bucket management."""
    denies, https_only, management = False, False, set()
    for st in json.loads(policy_text).get("Statement", []) if policy_text else []:
        if st.get("Effect") != "Deny":
            continue
        actions = _actions(st)
        secure = st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
        if str(secure).lower() == "false":
            https_only = https_only or "s3:*" in actions
            continue
        if st.get("Condition"):
            continue  # a conditional deny neither guarantees deletes are refused nor blocks management outright
        if any(a in ("s3:DeleteObjectVersion", "s3:DeleteObject*", "s3:*") for a in actions):
            denies = True
        management |= {m for m in MANAGEMENT_ACTIONS if m in actions or "s3:*" in actions or "s3:PutBucket*" in actions}
    return {
        "policy_denies_deletes": denies,
        "policy_https_only": https_only,
        "policy_denies_management": tuple(sorted(management)),
    }


def _glacier_ir_transitions(rules: list[dict[str, Any]]) -> tuple[tuple[str, int], ...]:
    out = []
    for rule in rules:
        if rule.get("Status") != "Enabled":
            continue
        prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
        for tr in rule.get("Transitions", []):
            if tr.get("StorageClass") == "GLACIER_IR" and tr.get("Days") is not None:
                out.append((prefix, int(tr["Days"])))
    return tuple(sorted(out))


class UploadMismatch(RuntimeError):
    """The stored object is not what was written (size or checksum); the message says which."""


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode("ascii")


# Parts of one size before the size doubles: from 8 MiB, 10,000 parts hold more than S3's largest object
# (5 TiB), and no part exceeds its largest part (5 GiB).
PARTS_PER_SIZE = 1_000


class MultipartWriter:
    """A write-only stream into one S3 object: parts of ``part_size`` bytes are uploaded by a background
    thread while the caller keeps writing, so producing and uploading overlap. Small objects become one
    PUT. :meth:`close` completes the upload; :meth:`abort` discards it (nothing is left behind).

    Parts are small (8 MiB) so that the first leaves soon after writing starts and little is left to send
    once it ends; their size doubles every :data:`PARTS_PER_SIZE` parts, so an object of any size S3 takes
    stays within its 10,000 parts.

    Each part carries its CRC32, which S3 checks on arrival, and the object gets a composite CRC32 (the
    CRC of the parts' CRCs): S3 then has no whole-object checksum to compute when the upload completes,
    which it would otherwise do over the entire object."""

    def __init__(
        self, s3: Any, bucket: str, key: str, *, content_type: str, part_size: int = 8 * 2**20, in_flight: int = 2
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.s3, self.bucket, self.key, self.content_type = s3, bucket, key, content_type
        self.part_size = part_size
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.futures: list[Any] = []
        self.pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="s3-part")
        self.in_flight = in_flight
        self.size = 0
        self.checksum: str | None = None  # the CRC32 S3 should hold once closed (composite for parts)

    def write(self, data: bytes) -> None:
        self.buffer += data
        self.size += len(data)
        while len(self.buffer) >= self.part_size:
            part = bytes(self.buffer[: self.part_size])
            del self.buffer[: self.part_size]
            self._submit(part)

    def _submit(self, part: bytes) -> None:
        if self.upload_id is None:
            self.upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                ContentType=self.content_type,
                ChecksumAlgorithm="CRC32",
                ChecksumType="COMPOSITE",
            )["UploadId"]
        number = len(self.futures) + 1
        # Bound the memory held by parts waiting for the network.
        pending = [f for f in self.futures if not f.done()]
        if len(pending) >= self.in_flight:
            pending[0].result()
        self.futures.append(self.pool.submit(self._upload, number, part))
        if number % PARTS_PER_SIZE == 0:
            self.part_size *= 2

    def _upload(self, number: int, part: bytes) -> dict[str, Any]:
        crc = _crc32(part)
        got = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=part, ChecksumCRC32=crc
        )
        return {"PartNumber": number, "ETag": got["ETag"], "ChecksumCRC32": crc}

    def close(self) -> None:
        try:
            if self.upload_id is None:
                body = bytes(self.buffer)
                self.checksum = _crc32(body)
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=body,
                    ContentType=self.content_type,
                    ChecksumCRC32=self.checksum,
                )
                return
            if self.buffer:
                self._submit(bytes(self.buffer))
                self.buffer.clear()
            parts = [f.result() for f in self.futures]
            composite = b"".join(base64.b64decode(p["ChecksumCRC32"]) for p in parts)
            self.checksum = _crc32(composite)
            self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            self.abort()
            raise
        finally:
            self.pool.shutdown(wait=True)

    def verify(self) -> None:
        """After :meth:`close`: the stored object's size and CRC32 (whole, or composite of the parts) are those
        written; raises :class:`UploadMismatch` naming what differs. Catches an upload that lost bytes on
        the way (a truncated body, a dropped part) before anything reports the object complete."""
        attrs = self.s3.get_object_attributes(Bucket=self.bucket, Key=self.key, ObjectAttributes=["Checksum", "ObjectSize"])
        where = f"s3://{self.bucket}/{self.key}"
        if attrs.get("ObjectSize") != self.size:
            raise UploadMismatch(f"{where} holds {attrs.get('ObjectSize')} bytes; {self.size} were written")
        # AWS keeps the CRC32 of every object written with one; the local S3 server only of multipart objects.
        # A single PUT carried its CRC32, which S3 checks on arrival.
        stored = attrs.get("Checksum", {}).get("ChecksumCRC32")
        if stored is not None and stored != self.checksum:
            raise UploadMismatch(f"{where} has CRC32 {stored}; {self.checksum} was written")

    def abort(self) -> None:
        for f in self.futures:
            f.cancel()
        self.pool.shutdown(wait=True)
        if self.upload_id is not None:
            try:
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            except (ClientError, BotoCoreError):
                pass  # S3 unreachable: the bucket's AbortIncompleteMultipartUpload rule removes the parts
            self.upload_id = None
