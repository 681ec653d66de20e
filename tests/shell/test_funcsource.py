"""bioxen.funcsource: the source of a function, for shipping it to VMs."""
from __future__ import annotations


def source(engine, name):
    return engine.show(f"require('bioxen.funcsource').source_of({name})")


def test_repl_function(engine):
    engine.show("function double(x)\n  return x * 2\nend")
    assert source(engine, "double") == '"function(x)\\n  return x * 2\\nend"'


def test_local_function_and_method(engine):
    engine.show("local function sq(n) return n * n end")
    assert source(engine, "sq") == '"function(n) return n * n end"'
    engine.show("obj = {}\nfunction obj:name(a) return a end")
    assert source(engine, "obj.name") == '"function(self, a) return a end"'


def test_anonymous_function_in_an_expression(engine):
    engine.show("f = setmetatable({}, {}) and function(a, b) return a + b end")
    assert source(engine, "f") == '"function(a, b) return a + b end"'


def test_round_trip_through_load(engine):
    engine.show("function gc(s)\n  local n = 0\n  for c in s:gmatch('[GC]') do n = n + 1 end\n  return n / #s\nend")
    engine.show("local src = require('bioxen.funcsource').source_of(gc)\n"
                "rebuilt = (loadstring or load)('return ' .. src)()")
    assert engine.show("rebuilt('GGCA')") == "0.75"


def test_script_and_command_line_functions(engine, tmp_path):
    script = tmp_path / "lib.lua"
    script.write_text("-- a library\nfunction from_file(v)\n  return v + 1\nend\n")
    assert engine.run_file(str(script)).ok
    assert source(engine, "from_file") == '"function(v)\\n  return v + 1\\nend"'
    assert engine.execute("function from_e(z) return z end").ok
    assert source(engine, "from_e") == '"function(z) return z end"'


def test_failures_give_reasons(engine):
    out = engine.show("select(2, require('bioxen.funcsource').source_of(string.rep))")
    assert "built-in" in out
    out = engine.show("select(2, require('bioxen.funcsource').source_of(42))")
    assert "expected a function" in out


def test_upvalues_are_reported(engine):
    engine.show("do local k = 3; function uses_k(x) return x * k end end")
    assert engine.show("require('bioxen.funcsource').upvalues(uses_k)") == '{"k"}'


def test_names_read_from_the_repls_locals_are_reported(engine):
    # A REPL keeps its top-level locals in its own environment, not as upvalues: a function
    # sent to a VM would find them nil there.  Declared names, fields and keys do not count.
    engine.show("local k = 3")
    engine.show("local fasta = {}")
    engine.show("function uses(x) local y = x * k return fasta, {k = 1}, y.k, string.rep('a', 2) end")
    engine.show("function shadows(k) for fasta in pairs({}) do end return k end")
    names = "require('bioxen.funcsource').session_locals"
    src = "require('bioxen.funcsource').source_of"
    assert engine.show(f"{names}(uses, {src}(uses))") == '{"k", "fasta"}'
    assert engine.show(f"{names}(shadows, {src}(shadows))") == "{}"
    # a function of a script (real globals) has none
    engine.show("g = 1")
    assert engine.show(f"{names}(string.rep, 'function() return g end')") == "{}"
