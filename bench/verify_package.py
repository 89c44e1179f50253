"""The auditor's path, timed: a clean virtualenv with only the ledger-verify package (plain Python, as an
auditor installs it), then `ledger-verify export` of a 10,000-row CSV export against the bucket; beside it,
the same verification by the ledger's own compiled build of the same modules. Prints one JSON line.

    python bench/verify_package.py [--events 10000] [--tenants 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import anchored_ledger, bench_stack
from ledger_verify import ExportVerifier, S3Store, load_manifest

from tasks.exports import queue_export, run_job
from tasks.storage import s3_client
from tasks.trust import deployment_trust

REPO = Path(__file__).resolve().parent.parent
WINDOW = {"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}


def install_package(home: Path) -> float:
    """Copy verifier/'s sources (no build artefacts) and pip-install them into a new virtualenv; seconds."""
    source = home / "verifier"
    shutil.copytree(
        REPO / "verifier", source, ignore=shutil.ignore_patterns("*.so", "build", "*.egg-info", "__pycache__")
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(home / "env")], check=True)
    subprocess.run(
        [str(home / "env" / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", f"{source}[s3]"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=100)
    args = parser.parse_args()
    with bench_stack(s3=True) as stack:
        settings, key = anchored_ledger(stack, args.events, args.tenants)
        s3 = s3_client(settings)
        job = queue_export(settings, operator="ops@example.com", fmt="csv", filter_text=WINDOW)
        outcome = run_job(settings, job, signing_key=key)
        assert outcome is not None and outcome.rows == args.events
        folder = stack.workdir / "auditor"
        folder.mkdir()
        s3.download_file("exports", outcome.data_key, str(folder / "events.csv"))
        s3.download_file("exports", outcome.manifest_key, str(folder / "manifest.json"))
        trust = deployment_trust(settings, signing=key)
        (folder / "trust.json").write_text(json.dumps(trust.as_json()))

        install_seconds = install_package(stack.workdir / "package")
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCE_") and k != "PYTHONPATH"}
        env.update(
            AWS_ENDPOINT_URL_S3=stack.s3_endpoint_url or "",
            AWS_ACCESS_KEY_ID="compliance-dev",
            AWS_SECRET_ACCESS_KEY="compliance-dev",
            AWS_DEFAULT_REGION="us-east-1",
        )
        started = time.perf_counter()
        done = subprocess.run(
            [
                str(stack.workdir / "package" / "env" / "bin" / "ledger-verify"),
                "export",
                "events.csv",
                "--trust",
                "trust.json",
                "--json",
            ],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
        )
        package_wall = time.perf_counter() - started
        package = json.loads(done.stdout)
        assert done.returncode == 0 and package["rows"] == args.events, done.stdout + done.stderr

        manifest = load_manifest((folder / "manifest.json").read_bytes())
        compiled = ExportVerifier(S3Store("anchors", s3), trust, manifest).verify_file(folder / "events.csv")
        assert compiled.ok, compiled.summary()
        print(
            json.dumps(
                {
                    "bench": "verify_package",
                    "events": args.events,
                    "tenants": args.tenants,
                    "package_install_seconds": round(install_seconds, 2),
                    "package_verify_seconds": package["seconds"],
                    "package_verify_rows_per_s": round(args.events / package["seconds"]),
                    "package_command_wall_seconds": round(package_wall, 2),
                    "install_and_verify_seconds": round(install_seconds + package_wall, 2),
                    "compiled_verify_seconds": round(compiled.seconds, 3),
                    "compiled_verify_rows_per_s": round(args.events / compiled.seconds),
                    "ok": True,
                }
            )
        )


if __name__ == "__main__":
    main()
