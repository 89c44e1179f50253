"""The hot path compiled: mypyc turns the pure modules every event passes through into C extensions.

Behaviour is identical compiled or not (the same tests run against both); COMPLIANCE_NO_COMPILE=1,
or a build without mypy, installs them as plain Python. Everything else is in pyproject.toml.
"""

import os

from setuptools import setup

HOT_PATH = [
    "compliance/jcs.py",
    "compliance/events.py",
    "compliance/chain.py",
    "compliance/timefmt.py",
    "compliance/exports.py",
]
# The verification core (hashed bytes, Merkle proofs, the export verifier) is the ledger-verify package in
# verifier/, installed first and compiled there (LEDGER_VERIFY_COMPILE=1); mypy reads its types from source.
os.environ["MYPYPATH"] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "verifier")

ext_modules = []
if os.environ.get("COMPLIANCE_NO_COMPILE") != "1":
    try:
        from mypyc.build import mypycify

        ext_modules = mypycify(HOT_PATH, opt_level="3")
    except (Exception, SystemExit) as exc:  # no compiler, no mypy, a type error: plain Python, same behaviour
        print(f"compliance: not compiling the hot path ({exc!r})")

setup(ext_modules=ext_modules)
