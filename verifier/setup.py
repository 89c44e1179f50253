"""Plain Python by default, so that an auditor installs with no compiler. The ledger's own install sets
LEDGER_VERIFY_COMPILE=1 (Makefile), which compiles the same modules with mypyc, as the ledger's hot path."""

import os

from setuptools import setup

COMPILED = [
    "ledger_verify/jcs.py",
    "ledger_verify/timefmt.py",
    "ledger_verify/merkle.py",
    "ledger_verify/rows.py",
    "ledger_verify/chain.py",
    "ledger_verify/export.py",
]

ext_modules = []
if os.environ.get("LEDGER_VERIFY_COMPILE") == "1" and os.environ.get("COMPLIANCE_NO_COMPILE") != "1":
    from mypyc.build import mypycify  # the ledger's build has mypy; a failure here must not pass unnoticed

    ext_modules = mypycify(COMPILED, opt_level="3")

setup(ext_modules=ext_modules)
