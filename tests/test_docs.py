"""Every command quoted in docs/ exists, and every block marked `sh safe` runs cleanly against a stack."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import build_parser
from compliance.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = Path(__file__).resolve().parent.parent / "README.md"
SAFE_BLOCK = re.compile(r"```sh safe\n(.*?)```", re.DOTALL)
COMMAND = re.compile(r"^compliance ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)")
FENCE = re.compile(r"```[a-z ]*\n(.*?)```", re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")


def quoted_code(text: str) -> list[str]:
    """Code in fenced blocks (line by line) and in inline code spans, including after `&&` or `|`."""
    pieces = [line for block in FENCE.findall(text) for line in block.splitlines()]
    pieces += INLINE.findall(FENCE.sub("", text))
    return [part.strip() for piece in pieces for part in re.split(r"&&|\|\||;|\$\(", piece)]


def safe_commands() -> list[str]:
    out = []
    for doc in sorted(DOCS.glob("*.md")):
        for block in SAFE_BLOCK.findall(doc.read_text()):
            out += [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]
    return out


def test_docs_mark_some_commands_safe() -> None:
    assert len(safe_commands()) >= 5


@pytest.mark.parametrize("command", sorted(set(safe_commands())))
def test_safe_doc_command_runs(command: str, settings: Settings, env_for) -> None:
    env = {**os.environ, **env_for(settings), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(shlex.split(command), capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


def test_every_compliance_command_in_the_docs_exists() -> None:
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    text = README.read_text() + "".join(d.read_text() for d in DOCS.glob("*.md"))
    found = {m.group(1) for code in quoted_code(text) if (m := COMMAND.match(code))}
    assert len(found) > 20
    for words in found:
        first, *rest = words.split()
        assert first in subcommands, f"`compliance {words}` is quoted in the docs but does not exist"
        sub = subcommands[first]
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        if nested and rest and not rest[0].startswith("-"):
            assert rest[0] in nested[0].choices, f"`compliance {words}` is quoted in the docs but does not exist"
