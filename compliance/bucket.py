"""The anchor bucket's hardening as documents (pure): its bucket policy, default encryption, lifecycle, and
the IAM policy templates of the two roles that touch it.

    >>> policy = anchor_bucket_policy("acme-anchors", https_only=True)
    >>> [s["Sid"] for s in policy["Statement"]]
    ['DenyInsecureTransport', 'DenyObjectDeletes', 'DenyBucketDelete']

What lives in the bucket: ``anchors/<cadence>.json`` (small signed objects),
``proofs/<cadence>.ndjson`` (one line per tenant of the cadence) and
``keys/<key_id>.pem`` (the public keys). Anchors and proofs move to Glacier
Instant Retrieval after :data:`GLACIER_IR_DAYS`: an auditor reads both for
every anchor an export names, and Glacier IR serves a read in milliseconds
with the same API, so verification is unchanged. The public keys stay in
S3 Standard: they are a few hundred bytes each and read on every
verification.

The bucket policy denies object deletes, the governance bypass and deleting
the bucket to every principal, and (where requests can be made over TLS)
any request over plain HTTP. It deliberately denies nothing of the bucket's
own management (its policy, its Object Lock default): the deployers must be
able to change those, e.g. to move the default from GOVERNANCE to
COMPLIANCE; IAM decides who they are.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "GLACIER_IR_DAYS",
    "IAM_ROLES",
    "LIFECYCLE_PREFIXES",
    "WRITER_PREFIXES",
    "anchor_bucket_policy",
    "anchor_encryption",
    "anchor_lifecycle",
    "https_only_applies",
    "iam_policy_template",
    "kms_key_arn",
]

GLACIER_IR_DAYS = 90
LIFECYCLE_PREFIXES = ("anchors/", "proofs/")
WRITER_PREFIXES = ("anchors/", "proofs/", "keys/")
IAM_ROLES = ("anchor-writer", "watchdog")
OBJECT_DELETES = ("s3:DeleteObject", "s3:DeleteObjectVersion")


def https_only_applies(endpoint_url: str | None) -> bool:
    """Whether the HTTPS-only deny can be applied: AWS itself (no endpoint) or an https endpoint. Against a
    plain-http endpoint (the local S3 server) every request would be refused by it."""
    return endpoint_url is None or urlsplit(endpoint_url).scheme == "https"


def anchor_bucket_policy(bucket: str, *, https_only: bool) -> dict[str, Any]:
    statements: list[dict[str, Any]] = []
    if https_only:
        statements.append(
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        )
    statements += [
        {
            "Sid": "DenyObjectDeletes",
            "Effect": "Deny",
            "Principal": "*",
            "Action": [*OBJECT_DELETES, "s3:BypassGovernanceRetention"],
            "Resource": f"arn:aws:s3:::{bucket}/*",
        },
        {
            "Sid": "DenyBucketDelete",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:DeleteBucket",
            "Resource": f"arn:aws:s3:::{bucket}",
        },
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def anchor_encryption(kms_key_id: str | None) -> dict[str, Any]:
    """SSE-KMS with an S3 Bucket Key (one data key per bucket and period, not a KMS call per object) when a
    key is configured; SSE-S3 otherwise (dev only: staging and prod require the key)."""
    if kms_key_id:
        default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_id}
        return {"Rules": [{"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}]}
    return {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def anchor_lifecycle() -> dict[str, Any]:
    return {
        "Rules": [
            {
                "ID": f"{prefix.rstrip('/')}-to-glacier-ir",
                "Status": "Enabled",
                "Filter": {"Prefix": prefix},
                "Transitions": [{"Days": GLACIER_IR_DAYS, "StorageClass": "GLACIER_IR"}],
            }
            for prefix in LIFECYCLE_PREFIXES
        ]
    }


def kms_key_arn(kms_key_id: str) -> str:
    """An IAM resource for the key: the ARN as configured, or any region's and account's key of that id."""
    return kms_key_id if kms_key_id.startswith("arn:") else f"arn:aws:kms:*:*:key/{kms_key_id}"


def iam_policy_template(role: str, bucket: str, kms_key_id: str | None) -> dict[str, Any]:
    """The identity policy of ``role``: ``anchor-writer`` (the anchor flow and `keys rotate`) writes locked
    objects under its three prefixes and can neither delete, bypass a governance lock nor set a legal hold;
    ``watchdog`` only reads (the anchors read back and the bucket's configuration)."""
    bucket_arn, objects = f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"
    if role == "anchor-writer":
        statements: list[dict[str, Any]] = [
            {
                "Sid": "WriteLockedObjects",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:PutObjectRetention", "s3:GetObject"],
                "Resource": [f"{bucket_arn}/{prefix}*" for prefix in WRITER_PREFIXES],
            },
            {
                # Without it a missing object answers 403 instead of 404, and "not written yet" looks denied.
                "Sid": "ListOwnPrefixes",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket_arn,
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in WRITER_PREFIXES]}},
            },
            {
                "Sid": "NeverDeleteOrBypass",
                "Effect": "Deny",
                "Action": [*OBJECT_DELETES, "s3:BypassGovernanceRetention", "s3:PutObjectLegalHold"],
                "Resource": objects,
            },
        ]
        kms_actions = ["kms:GenerateDataKey", "kms:Decrypt"]
    elif role == "watchdog":
        statements = [
            {
                "Sid": "ReadAnchors",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectRetention"],
                "Resource": objects,
            },
            {
                "Sid": "ReadBucketConfiguration",
                "Effect": "Allow",
                "Action": [
                    "s3:ListBucketVersions",
                    "s3:GetBucketVersioning",
                    "s3:GetBucketObjectLockConfiguration",
                    "s3:GetBucketPublicAccessBlock",
                    "s3:GetEncryptionConfiguration",
                    "s3:GetBucketPolicy",
                    "s3:GetLifecycleConfiguration",
                ],
                "Resource": bucket_arn,
            },
        ]
        kms_actions = ["kms:Decrypt"]
    else:
        raise ValueError(f"role {role!r}: use one of {', '.join(IAM_ROLES)}")
    if kms_key_id:
        statements.append(
            {"Sid": "UseAnchorKey", "Effect": "Allow", "Action": kms_actions, "Resource": kms_key_arn(kms_key_id)}
        )
    return {"Version": "2012-10-17", "Statement": statements}
