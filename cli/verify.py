"""`compliance verify export` and `compliance trust show`: thin callers of the auditor's package."""

from __future__ import annotations

import argparse
import json

from compliance.settings import Settings, SettingsError

__all__ = ["add_trust_commands", "cmd_trust_show", "cmd_verify_export"]


def cmd_verify_export(args: argparse.Namespace) -> int:
    """Exactly `ledger-verify export`; the bucket named by the trust file is read with this deployment's S3
    client when COMPLIANCE_S3_ENDPOINT_URL is set (the local stack), else with boto3's own configuration."""
    from ledger_verify.cli import run_export

    client = None
    try:
        settings = Settings.from_env()
    except SettingsError:
        settings = None  # an auditor's machine: nothing of the deployment is configured
    if settings is not None and settings.s3_endpoint_url:
        from tasks.storage import s3_client

        client = s3_client(settings)
    return run_export(args, client=client)


def cmd_trust_show(args: argparse.Namespace) -> int:
    from cli.main import EXIT_OK, fail, resolve_settings
    from tasks.signing import load_signing_key
    from tasks.trust import TrustProblem, deployment_trust

    settings = resolve_settings(s3=True)
    try:
        trust = deployment_trust(settings, signing=load_signing_key(settings))
    except TrustProblem as exc:
        fail(str(exc))
    if args.json:
        print(json.dumps(trust.as_json(), indent=2))
    else:
        print(f"anchor bucket:       {trust.anchor_bucket}")
        print(f"lock mode:           {trust.lock_mode}")
        print(f"GOVERNANCE until:    {trust.governance_until or '-'}")
        print(f"min retention days:  {trust.min_retention_days}")
        for key_id, fingerprint in sorted(trust.keys.items()):
            print(f"key {key_id}:  sha256 {fingerprint}")
        print("hand the --json form to the auditor out of band; `ledger-verify export FILE --trust FILE` reads it")
    return EXIT_OK


def add_trust_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    trust = sub.add_parser("trust", help="the auditor's trust file").add_subparsers(dest="trust_command", required=True)
    show = trust.add_parser("show", help="bucket, pinned keys, lock mode and retention an auditor should trust")
    show.add_argument("--json", action="store_true", help="the trust file itself")
    show.set_defaults(func=cmd_trust_show)
