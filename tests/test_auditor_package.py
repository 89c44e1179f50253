"""The auditor's package alone (ledger-verify in a fresh virtualenv, nothing else of the project) against a
real export: it verifies, and every tamper docs/auditor-guide.md lists is caught with its code.

The virtualenv is made once per session with `pip install ./verifier[s3]` from a copy of verifier/ holding
only its sources: what an auditor installs, and proof that it needs no compiler and none of the ledger.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ledger_verify.chain import stored_body

from compliance.anchor import anchor_key, proofs_key, public_key_pem, signed
from compliance.settings import Settings
from tasks.anchoring import anchor_once
from tasks.db import connect
from tasks.drain import drain_pending
from tasks.exports import queue_export, run_job
from tasks.outbox import emit_batch
from tasks.signing import SigningKey
from tasks.storage import s3_client
from tasks.trust import deployment_trust
from tests.conftest import REPO, sample_event
from tests.test_anchor import KEY

pytestmark = pytest.mark.slow

GUIDE = REPO / "docs" / "auditor-guide.md"
HYPERLINK = '=HYPERLINK("http://x")'
WINDOW = {"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}
EXAMPLE_BUCKET = "acme-ledger-anchors"  # the bucket name the guide's commands use


def guide_blocks() -> list[str]:
    """The guide's ```sh blocks, in order: the install, then what an auditor runs."""
    return re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S)


@pytest.fixture(scope="session")
def auditor_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a copy of verifier/'s sources and the virtualenv the guide's install block makes."""
    home = tmp_path_factory.mktemp("auditor")
    ignore = shutil.ignore_patterns("*.so", "build", "*.egg-info", "__pycache__")  # the sources alone
    shutil.copytree(REPO / "verifier", home / "verifier", ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    install = guide_blocks()[0]
    done = subprocess.run(["bash", "-ec", install], cwd=home, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return home


def venv_python(home: Path) -> Path:
    return home / "ledger-verify-env" / "bin" / "python"


def test_the_package_installs_alone_as_plain_python(auditor_home: Path) -> None:
    py = venv_python(auditor_home)
    probe = (
        "import importlib.util as u, ledger_verify.export as e;"
        "print(e.__file__);"
        "print(sorted(m for m in ('prefect', 'psycopg', 'polars', 'orjson', 'mypy', 'compliance', 'tasks')"
        " if u.find_spec(m)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the virtualenv alone, as the auditor's
    out = subprocess.run(
        [str(py), "-c", probe], capture_output=True, text=True, cwd="/", env=env, check=True
    ).stdout.split("\n")
    assert out[0].endswith("export.py")  # no compiled module: an auditor needs no compiler
    assert out[1] == "[]"  # nothing of the ledger, nor its dependencies


@pytest.fixture
def export_dir(settings: Settings, tmp_path: Path) -> tuple[Settings, Path]:
    """A fully anchored CSV export with its signed manifest and the deployment's trust file, in one folder;
    one event's actor_id is a spreadsheet formula."""
    events = [sample_event(i, tenant=f"tenant-{i % 3}") for i in range(45)]
    events[7]["actor_id"] = HYPERLINK
    with connect(settings, "compliance_writer") as conn, conn.transaction():
        emit_batch(conn, events)
    drain_pending.fn(settings)
    anchor_once(settings, KEY)
    job = queue_export(settings, operator="ops@example.com", fmt="csv", filter_text=WINDOW)
    outcome = run_job(settings, job, signing_key=KEY)
    assert outcome is not None
    data = s3_client(settings).get_object(Bucket=settings.export_bucket, Key=outcome.data_key)["Body"].read()
    (tmp_path / "events.csv").write_bytes(data)  # as the operator's download link hands it over
    manifest = s3_client(settings).get_object(Bucket=settings.export_bucket, Key=outcome.manifest_key)["Body"].read()
    (tmp_path / "manifest.json").write_bytes(manifest)
    (tmp_path / "trust.json").write_text(json.dumps(deployment_trust(settings, signing=KEY).as_json()))
    return settings, tmp_path


def auditor_env(settings: Settings, home: Path) -> dict[str, str]:
    """What an auditor's shell holds: the package's virtualenv on PATH and read access to the bucket."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCE_") and k != "PYTHONPATH"}
    env.update(
        PATH=str(home / "ledger-verify-env" / "bin") + os.pathsep + env["PATH"],
        AWS_ENDPOINT_URL_S3=settings.s3_endpoint_url or "",
        AWS_ACCESS_KEY_ID="compliance-dev",
        AWS_SECRET_ACCESS_KEY="compliance-dev",
        AWS_DEFAULT_REGION="us-east-1",
    )
    return env


def ledger_verify(settings: Settings, home: Path, folder: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [
            str(home / "ledger-verify-env" / "bin" / "ledger-verify"),
            "export",
            "events.csv",
            "--trust",
            "trust.json",
            "--json",
            *extra,
        ],
        cwd=folder,
        env=auditor_env(settings, home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def code_of(settings: Settings, home: Path, folder: Path, *extra: str) -> str:
    rc, report = ledger_verify(settings, home, folder, *extra)
    assert rc == 1 and report["failure"] is not None, report
    return str(report["failure"]["code"])


def test_a_genuine_export_verifies_with_the_package_alone_and_its_formula_cell_is_neutralised(
    auditor_home: Path, export_dir: tuple[Settings, Path]
) -> None:
    settings, folder = export_dir
    text = (folder / "events.csv").read_text()
    assert '"\'=HYPERLINK(""http://x"")"' in text  # one more leading quote: a spreadsheet shows text
    rc, report = ledger_verify(settings, auditor_home, folder)
    assert rc == 0, report
    assert report["rows"] == 45 and report["anchored_rows"] == 45 and report["manifest"] == f"signed by {KEY.key_id}"
    assert report["lock_retention_versions_checked"] is True


def test_every_command_of_the_auditor_guide_runs(auditor_home: Path, export_dir: tuple[Settings, Path]) -> None:
    settings, folder = export_dir
    env = auditor_env(settings, auditor_home)
    for block in guide_blocks()[1:]:
        script = block.replace(EXAMPLE_BUCKET, settings.anchor_bucket)
        # An install block (the Parquet extra) runs where the guide's first block made the environment; the
        # rest in the folder an auditor was handed. (This test runs after the one that finds no polars there.)
        where = auditor_home if "pip install" in block else folder
        done = subprocess.run(["bash", "-ec", script], cwd=where, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, script + done.stdout + done.stderr
    assert json.loads((folder / "workpaper.json").read_text())["ok"] is True
    offline = subprocess.run(
        ["ledger-verify", "export", "events.csv", "--trust", "trust.json", "--anchors", "bucket-copy"],
        cwd=folder,
        env={**env, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"},  # nothing listens there: no network is used
        capture_output=True,
        text=True,
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "NOT checked" in offline.stdout


# ---------------------------------------------------------------- tampers, each caught with its code


def rows(folder: Path) -> list[str]:
    return (folder / "events.csv").read_bytes().decode().split("\r\n")


def write_rows(folder: Path, lines: list[str]) -> None:
    (folder / "events.csv").write_bytes("\r\n".join(lines).encode())


def manifest_of(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "manifest.json").read_text()))


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_changed_payload_byte_is_a_hash_mismatch(auditor_home: Path, export_dir: tuple[Settings, Path]) -> None:
    settings, folder = export_dir
    lines = rows(folder)
    lines[5] = lines[5].replace('""method"":""password""', '""method"":""passwore""', 1)
    write_rows(folder, lines)
    assert code_of(settings, auditor_home, folder) == "hash_mismatch"


def test_a_blanked_cadence_with_the_hash_recomputed_is_pending(
    auditor_home: Path, export_dir: tuple[Settings, Path]
) -> None:
    settings, folder = export_dir
    import csv
    import io

    lines = rows(folder)
    last = max(i for i, line in enumerate(lines) if line.startswith("tenant-0,"))  # no later row links to it
    cells = next(csv.reader(io.StringIO(lines[last])))
    cells[9] = cells[9].replace("password", "sso")
    body = stored_body(cells, int(cells[1]), cells[9], cells[10])
    cells[12] = hashlib.sha256(bytes.fromhex(cells[11]) + body).hexdigest()
    cells[13] = cells[14] = cells[15] = ""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    lines[last] = out.getvalue()
    write_rows(folder, lines)
    assert code_of(settings, auditor_home, folder) == "pending"
    # Allowed pending rows do not let it through: the signed manifest's digest no longer matches.
    assert code_of(settings, auditor_home, folder, "--allow-pending") == "data_sha256"


def test_a_manifest_pointing_at_another_bucket_is_refused(
    auditor_home: Path, export_dir: tuple[Settings, Path]
) -> None:
    settings, folder = export_dir
    manifest = manifest_of(folder)
    manifest["anchor_bucket"] = "forger-bucket"
    write_manifest(folder, manifest)
    assert code_of(settings, auditor_home, folder) == "manifest"


def test_a_new_key_published_under_a_new_key_id_is_untrusted(
    auditor_home: Path, export_dir: tuple[Settings, Path]
) -> None:
    settings, folder = export_dir
    forger = SigningKey(Ed25519PrivateKey.generate())
    s3_client(settings).put_object(
        Bucket=settings.anchor_bucket, Key=f"keys/{forger.key_id}.pem", Body=public_key_pem(forger.key)
    )
    manifest = manifest_of(folder)
    del manifest["signature"]
    manifest["row_count"] -= 1
    write_manifest(folder, signed(manifest, forger.key, forger.key_id))
    assert code_of(settings, auditor_home, folder) == "untrusted_key"


def test_a_second_version_of_an_anchor_object_is_refused(auditor_home: Path, export_dir: tuple[Settings, Path]) -> None:
    settings, folder = export_dir
    s3 = s3_client(settings)
    (cid,) = manifest_of(folder)["cadences"]
    same = s3.get_object(Bucket=settings.anchor_bucket, Key=anchor_key(cid))["Body"].read()
    s3.put_object(Bucket=settings.anchor_bucket, Key=anchor_key(cid), Body=same)  # the same bytes, a new version
    assert code_of(settings, auditor_home, folder) == "versions"


def test_a_governance_anchor_against_a_compliance_trust_file_is_refused(
    auditor_home: Path, export_dir: tuple[Settings, Path]
) -> None:
    settings, folder = export_dir
    trust = json.loads((folder / "trust.json").read_text())
    assert trust["lock_mode"] == "GOVERNANCE"
    (folder / "trust.json").write_text(json.dumps({**trust, "lock_mode": "COMPLIANCE"}))
    assert code_of(settings, auditor_home, folder) == "lock_mode"
    # Anchors made before the deployment moved to COMPLIANCE stay GOVERNANCE: the file says until when.
    (folder / "trust.json").write_text(
        json.dumps({**trust, "lock_mode": "COMPLIANCE", "governance_until": "2999-01-01T00:00:00.000000Z"})
    )
    assert ledger_verify(settings, auditor_home, folder)[0] == 0


def test_a_shortened_retention_is_refused(auditor_home: Path, export_dir: tuple[Settings, Path]) -> None:
    settings, folder = export_dir
    (cid,) = manifest_of(folder)["cadences"]
    s3_client(settings).put_object_retention(
        Bucket=settings.anchor_bucket,
        Key=proofs_key(cid),
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(hours=1)},
        BypassGovernanceRetention=True,
    )
    assert code_of(settings, auditor_home, folder) == "retention"


def test_a_trust_file_asking_more_retention_than_the_bucket_keeps_is_refused(
    auditor_home: Path, export_dir: tuple[Settings, Path]
) -> None:
    settings, folder = export_dir
    trust = json.loads((folder / "trust.json").read_text())
    (folder / "trust.json").write_text(json.dumps({**trust, "min_retention_days": 30}))
    assert code_of(settings, auditor_home, folder) == "retention"


@pytest.mark.parametrize("field", ["row_count", "data_sha256"])
def test_a_changed_manifest_count_or_digest_breaks_its_signature(
    auditor_home: Path, export_dir: tuple[Settings, Path], field: str
) -> None:
    settings, folder = export_dir
    manifest = manifest_of(folder)
    manifest[field] = manifest[field] + 1 if field == "row_count" else "0" * 64
    write_manifest(folder, manifest)
    assert code_of(settings, auditor_home, folder) == "bad_signature"
    # Unsigned (v1) and accepted as such, the changed figure itself is what fails.
    del manifest["signature"], manifest["kind"]
    manifest["v"] = 1
    write_manifest(folder, manifest)
    assert code_of(settings, auditor_home, folder) == "manifest"  # unsigned, not allowed
    assert code_of(settings, auditor_home, folder, "--allow-unsigned-manifest") == field


def test_a_forged_manifest_signature_is_refused(auditor_home: Path, export_dir: tuple[Settings, Path]) -> None:
    settings, folder = export_dir
    manifest = manifest_of(folder)
    sig = bytearray(base64.b64decode(manifest["signature"]["sig"]))
    sig[0] ^= 1
    manifest["signature"]["sig"] = base64.b64encode(bytes(sig)).decode()
    write_manifest(folder, manifest)
    assert code_of(settings, auditor_home, folder) == "bad_signature"


def test_an_anchor_signature_cannot_pass_for_a_manifest(auditor_home: Path, export_dir: tuple[Settings, Path]) -> None:
    settings, folder = export_dir
    (cid,) = manifest_of(folder)["cadences"]
    anchor = json.loads(
        s3_client(settings).get_object(Bucket=settings.anchor_bucket, Key=anchor_key(cid))["Body"].read()
    )
    (folder / "manifest.json").write_text(json.dumps(anchor))  # a genuinely signed object, but not a manifest
    assert code_of(settings, auditor_home, folder) == "manifest"
