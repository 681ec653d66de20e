"""Completion computed on the Lua side."""
from __future__ import annotations

import os


def words(engine, text):
    return [w for w, _start, _meta in engine.complete(text)]


def test_globals_and_keywords(engine):
    assert "print" in words(engine, "pri")
    assert "function" in words(engine, "x = func")


def test_fields_after_dot(engine):
    out = engine.complete("string.fo")
    assert ("format", -2, "function") in out


def test_methods_after_colon_follow_index_tables(engine):
    engine.show("Base = {greet = function(self) end, size = 3}")
    engine.show("obj = setmetatable({own = 1}, {__index = Base})")
    assert set(words(engine, "obj.")) >= {"own", "greet", "size"}
    assert words(engine, "obj:") == ["greet"]          # methods only after ':'


def test_string_methods(engine):
    engine.show("s = 'acgt'")
    assert "upper" in words(engine, "s:up")


def test_repl_locals_complete(engine):
    engine.show("local my_local_value = 1")
    assert words(engine, "my_loc") == ["my_local_value"]


def test_index_functions_are_never_called(engine):
    engine.show("called = false")
    engine.show("trap = setmetatable({}, {__index = function() called = true end})")
    words(engine, "trap.x")
    assert engine.show("called") == "false"


def test_no_completion_inside_strings_and_numbers(engine):
    assert words(engine, "x = 'pri") == []
    assert words(engine, "x = 1.5") == []


def test_meta_commands(engine):
    assert "help" in words(engine, ":he")
    assert words(engine, ":runt") == ["runtime"]
    assert words(engine, ":runtime lua5") == ["lua51", "lua52", "lua53", "lua54", "lua55"]


def test_module_names_in_require(engine, tmp_path, monkeypatch):
    (tmp_path / "mymods").mkdir()
    (tmp_path / "mymods" / "alpha.lua").write_text("return {}")
    monkeypatch.setenv("BIOXEN_PATH", str(tmp_path))
    engine.reset()  # package.path is read when the state is built
    assert "mymods.alpha" in words(engine, 'require "mymods.al')
    assert "bioxen.shell.pretty" in words(engine, "require('bioxen.shell.pre")


def test_paths_after_run(engine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "script.lua").write_text("")
    (tmp_path / "sub").mkdir()
    assert words(engine, ":run scr") == ["script.lua"]
    assert words(engine, ":run su") == ["sub/"]
    assert os.path.basename(words(engine, f":run {tmp_path}/scr")[0]) == "script.lua"


# ---------------------------------------------------------------- lazy modules


def lua_names(engine, expr):
    """The sorted keys of a Lua table, read in Lua (what completion must match)."""
    out = engine.show(f"local n = {{}} for k in pairs({expr}) do n[#n+1] = k end table.sort(n) "
                      "return table.concat(n, ' ')")
    return out.strip().strip('"').split()


def test_lazy_submodules_are_offered_without_loading_them(engine):
    engine.show('local bio = require "bio"')
    assert engine.show('package.loaded["bio.kmer"]').strip() == "nil"
    out = engine.complete("bio.")
    submodules = lua_names(engine, "bio._modules")
    assert [w for w, _s, meta in out if meta == "module"] == submodules
    assert "seq" in submodules and "_modules" in [w for w, _s, _m in out]
    assert engine.show('package.loaded["bio.kmer"]').strip() == "nil"  # listing loads nothing


def test_going_into_a_lazy_submodule_loads_it(engine):
    engine.show('local bio = require "bio"')
    public = [n for n in lua_names(engine, 'require("bio.kmer")') if not n.startswith("_")]
    engine.reset()
    engine.show('local bio = require "bio"')
    assert [w for w in words(engine, "bio.kmer.") if not w.startswith("_")] == public
    assert engine.show('package.loaded["bio.kmer"] ~= nil') == "true"
    assert "gc_fraction" in words(engine, "bio.seq.gc_")
    assert words(engine, "bio.nosuch.") == []


def first_doc_line(module):
    path = os.path.join(os.path.dirname(__file__), "..", "..", "bio_stdlib", "bio", module + ".lua")
    with open(path, encoding="utf-8") as f:
        return f.readline().lstrip("-").strip()


def test_help_describes_a_lazy_submodule_and_the_package(engine):
    engine.show('local bio = require "bio"')
    out = engine.show(":help bio.seq")
    assert out.startswith("bio.seq: table\n")
    assert first_doc_line("seq") in out
    out = engine.show(":help bio")
    assert first_doc_line("init") in out
    assert "modules (loaded on first use): " + ", ".join(lua_names(engine, "bio._modules")) in out
    assert "bio.seq" in words(engine, ":help bio.se")


# ------------------------------------------------- t[1]. and calls: no side effects


def test_fields_after_a_constant_index(engine):
    engine.show('t = {{name = "x", seq = "acgt"}, k = {deep = 1}, [true] = {yes = 1}}')
    assert words(engine, "t[1].") == ["name", "seq"]
    assert words(engine, 't["k"].') == ["deep"]
    assert words(engine, "t[ [[k]] ].") == ["deep"]
    assert words(engine, "t[true].") == ["yes"]
    assert "upper" in words(engine, "t[1].seq:up")
    engine.show("i = 1")
    assert words(engine, "t[i].") == []               # not a constant: not looked up
    assert words(engine, "t[2].") == []


def test_a_constant_index_never_runs_index_functions(engine):
    engine.show("calls = 0")
    engine.show("trap = setmetatable({}, {__index = function() calls = calls + 1 return {x = 1} end})")
    assert words(engine, "trap[1].") == []
    assert words(engine, "trap.field.") == []
    assert engine.show("calls") == "0"


def test_calls_are_never_made(engine):
    engine.show("calls = 0")
    engine.show("function f() calls = calls + 1 return {x = 1} end")
    engine.show("obj = {m = f}")
    assert words(engine, "f().") == []
    assert words(engine, "f():") == []
    assert words(engine, "obj:m().") == []
    assert words(engine, "f{}.") == []
    assert words(engine, 'f"x".') == []
    assert engine.show("calls") == "0"


def test_results_known_without_calling(engine):
    engine.show("s = 'acgt'")
    assert "upper" in words(engine, "('acgt'):up")
    assert "lower" in words(engine, "s:upper():lo")
    assert "lower" in words(engine, "string.rep(s, 2):lo")
    assert "rep" in words(engine, "tostring(42):re")
    assert "rep" in words(engine, "table.concat({}, ','):re")
    assert "format" in words(engine, 'require("string").fo')   # a loaded module
    assert "format" in words(engine, 'require"string".fo')
    assert words(engine, 'require("no.such.module").') == []   # never loaded by completion
    assert "concat" in words(engine, "(table).con")


# ---------------------------------------------------------------- signatures


def test_signature_of_a_builtin_with_the_current_argument(engine):
    info = engine.signature("x = string.rep(")
    assert info == {"name": "string.rep", "signature": "string.rep(s, n [, sep])",
                    "doc": "Returns n copies of s, separated by sep.", "arg": 1}
    assert engine.signature('string.rep("ab", ')["arg"] == 2
    assert engine.signature('string.rep(f(1, 2), {3, 4}, ')["arg"] == 3  # nested commas do not count
    assert engine.signature('print(string.rep("a", 2), ')["name"] == "print"
    assert engine.signature('print(string.rep("a", ')["name"] == "string.rep"


def test_signature_of_a_method_drops_self(engine):
    engine.show("s = 'acgt'")
    assert engine.signature("s:rep(")["signature"] == "s:rep(n [, sep])"
    engine.show("obj = {}")
    engine.show("function obj:scale(x, y) return x end")
    assert engine.signature("obj:scale(")["signature"] == "obj:scale(x, y)"
    assert engine.signature("obj.scale(")["signature"] == "obj.scale(self, x, y)"


def test_signature_of_repl_functions_with_their_doc(engine):
    engine.show("-- Doubles x (or multiplies it by factor).\n-- More text.\nfunction twice(x, factor) return x * (factor or 2) end")
    engine.show("function va(a, ...) return a end")
    info = engine.signature("twice(")
    assert info["signature"] == "twice(x, factor)"
    assert info["doc"] == "Doubles x (or multiplies it by factor)."
    assert engine.signature("va(1, 2, ")["signature"] == "va(a, ...)"


def test_no_signature_where_there_is_no_call(engine):
    engine.show("calls = 0")
    engine.show("function f() calls = calls + 1 return print end")
    assert engine.signature("function foo(") is None
    assert engine.signature("local function g(") is None
    assert engine.signature("x = (") is None
    assert engine.signature("undefined_fn(") is None
    assert engine.signature("f()(") is None
    assert engine.signature("print(1)") is None
    assert engine.show("calls") == "0"


def test_the_signature_line_and_help_agree(engine):
    engine.show('local bio = require "bio"')
    for name in ("string.rep", "bio.seq.gc_fraction", "bio.fasta.records", "table.concat"):
        info = engine.signature(name + "(")
        help_text = engine.show(":help " + name)
        assert help_text.splitlines()[1] == "  " + info["signature"]
        # the doc's first sentence is in :help as well (a Lua comment or the reference line)
        assert info["doc"].split()[0] in help_text


def test_the_toolbar_marks_the_argument_being_typed():
    from bioxen_shell.repl.toolbar import signature_parts

    def current(sig, name, arg):
        parts = signature_parts({"name": name, "signature": sig, "doc": "Doc.", "arg": arg})
        assert parts[-1] == ("class:toolbar.doc", "  Doc.")
        return [text for style, text in parts if style.endswith(".current")]

    assert current("string.rep(s, n [, sep])", "string.rep", 2) == ["n"]
    assert current("string.rep(s, n [, sep])", "string.rep", 3) == ["[, sep]"]
    assert current("print(...)", "print", 4) == ["..."]          # every later argument is the vararg
    assert current("f(a, b)", "f", 3) == []                      # past the last parameter


def test_the_toolbar_keeps_the_signature_text():
    from bioxen_shell.repl.toolbar import signature_parts

    for sig in ("string.rep(s, n [, sep])", "load(chunk [, chunkname [, mode [, env]]])",
                "table.insert(list, [pos,] value)", "os.clock()", "s:sub(i [, j])"):
        name = sig[:sig.index("(")]
        parts = signature_parts({"name": name, "signature": sig, "doc": None, "arg": 2})
        assert "".join(text for _style, text in parts) == f" {sig} "
