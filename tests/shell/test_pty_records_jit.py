"""In a real terminal: `:jit` on a runtime without LuaJIT, and sequence records printing
through their __tostring (docs/shell.md, "How results print")."""
from __future__ import annotations

import pytest

from tests.shell.test_pty import PROMPT, pexpect, spawn


@pytest.fixture
def lua54():
    child = spawn("--runtime", "lua54")
    yield child
    if child.isalive():
        child.terminate(force=True)


def test_jit_says_it_needs_luajit_and_records_print_as_biopython(lua54):
    lua54.send(":jit on\r")
    lua54.expect_exact(":jit needs LuaJIT; this runtime is Lua 5.4 (switch with :runtime luajit)")
    lua54.expect_exact(PROMPT)
    lua54.send('require("bio.fasta").parse(">s1 a test\\nACGT\\n")[1]\r')
    for line in ("ID: s1", "Name: s1", "Description: s1 a test", "Number of features: 0", "Seq('ACGT')"):
        lua54.expect_exact(line + "\r\n")
    lua54.expect_exact(PROMPT)
    # inside a table: Biopython's repr(record), as Python shows a list of records
    lua54.send('require("bio.fasta").parse(">s1 a test\\nACGT\\n>s2\\nGG\\n")\r')
    lua54.expect_exact("SeqRecord(seq=Seq('ACGT'), id='s1', name='s1', description='s1 a test', dbxrefs=[]),")
    lua54.expect_exact("SeqRecord(seq=Seq('GG'), id='s2', name='s2', description='s2', dbxrefs=[])")
    lua54.expect_exact(PROMPT)
    lua54.sendcontrol("d")
    lua54.expect(pexpect.EOF)
