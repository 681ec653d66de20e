"""The examples in docs/bio/*.md run, and print what the page says they print.

A page marks a block to run with the fence info ``lua run``; GitHub and other renderers
still show it as Lua.  When the next block is an ``output`` fence, the script's standard
output must equal it exactly.  Blocks run from the repository root (so paths such as
``examples/data/sample.fa`` work) under stock ``lua5.4`` and ``luajit`` with bio_stdlib on
``package.path``; a block must finish without error on both.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from bioxen_shell.paths import bio_stdlib_dir
from tests.system import require_binary

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "bio"
RUNTIMES = ["lua5.4", "luajit"]

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def doc_examples() -> list[tuple[str, int, str, str | None]]:
    """(page, line, code, expected output or None) for every ``lua run`` block."""
    found = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        blocks = list(_FENCE.finditer(text))
        for i, m in enumerate(blocks):
            if m.group(1).split() != ["lua", "run"]:
                continue
            expected = None
            if i + 1 < len(blocks) and blocks[i + 1].group(1).strip() == "output":
                between = text[m.end():blocks[i + 1].start()]
                if not between.strip():
                    expected = blocks[i + 1].group(2)
            line = text.count("\n", 0, m.start()) + 1
            found.append((page.name, line, m.group(2), expected))
    return found


EXAMPLES = doc_examples()


def test_the_docs_have_runnable_examples():
    # The runner itself must find blocks, or every page could drift unseen.
    assert len(EXAMPLES) >= 1


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("page,line,code,expected", EXAMPLES,
                         ids=[f"{p}:{n}" for p, n, _, _ in EXAMPLES])
def test_doc_example(runtime, page, line, code, expected):
    exe = require_binary(runtime)
    d = bio_stdlib_dir()
    env = {**os.environ, "LUA_PATH": f"{d}/?.lua;{d}/?/init.lua;;", "LUA_INIT": ""}
    proc = subprocess.run([exe, "-"], input=code, capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 0, f"docs/bio/{page}:{line} failed on {runtime}:\n{proc.stderr}"
    if expected is not None:
        assert proc.stdout == expected, f"docs/bio/{page}:{line} printed something else on {runtime}"
