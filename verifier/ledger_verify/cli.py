"""``ledger-verify``: the auditor's command line (and the body of ``compliance verify export``).

    ledger-verify export events.csv --trust trust.json                 # the bucket, read with boto3
    ledger-verify export events.csv --trust trust.json --anchors copy/  # a local copy, no network
    ledger-verify trust trust.json                                      # print what a trust file pins

Exit status: 0 everything verified; 1 something did not (the first failure is
named); 2 the command itself cannot run (a missing file, an unusable trust file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ledger_verify.errors import VerificationFailure
from ledger_verify.export import ExportReport, ExportVerifier
from ledger_verify.manifest import load_manifest
from ledger_verify.parquet import ParquetUnavailable
from ledger_verify.store import AnchorStore, DirectoryStore, S3Store
from ledger_verify.trust import Trust, TrustError

__all__ = ["add_export_arguments", "main", "run_export"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="the export: events.csv, events.ndjson or events.parquet")
    p.add_argument("--trust", required=True, help="the trust file the operator handed over (bucket, keys, lock rules)")
    p.add_argument("--manifest", help="the export's manifest.json (default: manifest.json beside the file)")
    p.add_argument(
        "--anchors", metavar="DIR", help="verify against a local copy of the bucket (aws s3 sync) with no network"
    )
    p.add_argument("--allow-pending", action="store_true", help="accept rows not yet anchored (counted, not proven)")
    p.add_argument("--allow-unsigned-manifest", action="store_true", help="accept a v1 (unsigned) manifest, saying so")
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")
    p.add_argument(
        "--jobs",
        type=_positive,
        metavar="N",
        help="processes checking one CSV or NDJSON file (default: every CPU this process may use)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def _usage(message: str) -> int:
    print(f"ledger-verify: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_export(args: argparse.Namespace, *, client: Any = None) -> int:
    """Verify one export as the arguments of :func:`add_export_arguments` say; ``client``: the boto3 S3 client
    to read the trusted bucket with (default: one made with boto3's own configuration)."""
    data = Path(args.file)
    if not data.is_file():
        return _usage(f"{data}: no such file")
    try:
        trust = Trust.load(Path(args.trust))
    except TrustError as exc:
        return _usage(str(exc))
    manifest_path = Path(args.manifest) if args.manifest else data.with_name("manifest.json")
    report = ExportReport(str(data))
    manifest = None
    try:
        if not manifest_path.is_file():
            raise VerificationFailure(
                "manifest", f"no manifest at {manifest_path}: without it the export's completeness cannot be checked"
            )
        manifest = load_manifest(manifest_path.read_bytes())
    except VerificationFailure as exc:
        report.failure = exc
    if report.failure is None:
        store: AnchorStore
        if args.anchors:
            try:
                store = DirectoryStore(Path(args.anchors))
            except FileNotFoundError as exc:
                return _usage(str(exc))
        else:
            try:
                store = S3Store(trust.anchor_bucket, client)
            except RuntimeError as exc:
                return _usage(str(exc))
        verifier = ExportVerifier(
            store,
            trust,
            manifest,
            allow_pending=args.allow_pending,
            allow_unsigned_manifest=args.allow_unsigned_manifest,
            jobs=args.jobs,
        )
        try:
            report = verifier.verify_file(data)
        except ParquetUnavailable as exc:
            return _usage(str(exc))
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def _show_trust(args: argparse.Namespace) -> int:
    try:
        trust = Trust.load(Path(args.trust_file))
    except TrustError as exc:
        return _usage(str(exc))
    print(json.dumps(trust.as_json(), indent=2))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ledger-verify", description="Verify a compliance-ledger export, trusting only the trust file."
    )
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="check an export against the anchors its trust file pins")
    add_export_arguments(ex)
    ex.set_defaults(func=run_export)
    tr = sub.add_parser("trust", help="check a trust file and print what it pins")
    tr.add_argument("trust_file")
    tr.set_defaults(func=_show_trust)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
