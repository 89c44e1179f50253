"""The compliance ledger's verifier: an export, its signed manifest and the anchors, against a trust file.

    from pathlib import Path
    from ledger_verify import ExportVerifier, S3Store, Trust, load_manifest

    trust = Trust.load(Path("trust.json"))
    manifest = load_manifest(Path("manifest.json").read_bytes())
    report = ExportVerifier(S3Store(trust.anchor_bucket), trust, manifest).verify_file(Path("events.csv"))
    print(report.summary())          # report.failure: None, or the first VerificationFailure (.code, .detail)

Three stages share one inclusion verifier and one failure type: the chain
(:mod:`ledger_verify.chain`), the anchors (:mod:`ledger_verify.anchors`) and
the export (:mod:`ledger_verify.export`). Needs only ``cryptography``, and
``boto3`` to read the bucket itself, and ``polars`` to read a Parquet export (the
``parquet`` extra). docs/format.md in the repository
describes every byte it checks.
"""

from pathlib import Path as _Path


def refuse_stale_compiled(package_dir: _Path) -> None:
    """Refuse to import a package whose mypyc-compiled modules are older than their sources: they would
    silently run old code. Reinstall (`make install`), or delete the .so files to run plain Python."""
    for compiled in package_dir.glob("*.so"):
        source = package_dir / (compiled.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > compiled.stat().st_mtime + 1:
            raise ImportError(
                f"{compiled.name} is older than {source.name}: the compiled hot path is stale; "
                "run `make install` (or `pip install -e .`), or delete the .so files to run plain Python"
            )


refuse_stale_compiled(_Path(__file__).resolve().parent)

from ledger_verify.anchors import AnchorChecker, VerifiedAnchor  # noqa: E402
from ledger_verify.chain import ChainVerifier, StoredEvent  # noqa: E402
from ledger_verify.errors import CODES, InclusionError, VerificationFailure  # noqa: E402
from ledger_verify.export import ExportReport, ExportVerifier, read_rows  # noqa: E402
from ledger_verify.manifest import check_manifest, load_manifest  # noqa: E402
from ledger_verify.merkle import check_inclusion  # noqa: E402
from ledger_verify.parquet import ParquetUnavailable  # noqa: E402
from ledger_verify.store import AnchorStore, DirectoryStore, S3Store  # noqa: E402
from ledger_verify.trust import Trust, TrustError  # noqa: E402

__all__ = [
    "CODES",
    "AnchorChecker",
    "AnchorStore",
    "ChainVerifier",
    "DirectoryStore",
    "ExportReport",
    "ExportVerifier",
    "InclusionError",
    "ParquetUnavailable",
    "S3Store",
    "StoredEvent",
    "Trust",
    "TrustError",
    "VerificationFailure",
    "VerifiedAnchor",
    "check_inclusion",
    "check_manifest",
    "load_manifest",
    "read_rows",
    "refuse_stale_compiled",
]
