"""Meta-commands: :help :run :reset :runtime :history :quit :time :source :set."""
from __future__ import annotations

import pytest

from bioxen_shell.engine import ShellExit


def test_help_lists_every_command(make_engine):
    engine = make_engine()
    out = engine.show(":help")
    for name in ("help", "run", "reset", "runtime", "history", "quit", "time", "source", "set"):
        assert f":{name}" in out


def test_help_on_a_command_and_a_value(make_engine):
    engine = make_engine()
    assert engine.show(":help run").startswith(":run FILE")
    assert "built-in function" in engine.show(":help string.rep")
    engine.show("function twice(x)\n  return 2 * x\nend")
    out = engine.show(":help twice")
    assert "defined at repl[" in out and "return 2 * x" in out


def test_unknown_command(make_engine):
    result = make_engine().eval_line(":frobnicate")
    assert not result.ok and b"unknown command :frobnicate" in result.message


def test_run_keeps_globals_and_passes_args(make_engine, tmp_path):
    engine = make_engine()
    script = tmp_path / "s.lua"
    script.write_text("loaded = {...}\n")
    assert engine.eval_line(f':run {script} one "two words"').ok
    assert engine.show("loaded") == '{"one", "two words"}'


def test_run_reports_script_errors(make_engine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.lua").write_text("\nerror('nope')\n")
    engine = make_engine()
    result = engine.eval_line(":run bad.lua")
    assert result.kind == "error" and result.message == b"bad.lua:2: nope"
    result = engine.eval_line(":run missing.lua")
    assert b"missing.lua" in result.message


def test_reset_starts_over_and_runs_cleanup(make_engine):
    engine = make_engine()
    cleaned = []
    engine.on_close(lambda: cleaned.append("vm destroyed"))
    engine.show("x = 1")
    engine.show("local y = 2")
    assert b"fresh Lua state" in engine.eval_line(":reset").output
    assert cleaned == ["vm destroyed"]
    assert engine.show("x") == "nil" and engine.show("y") == "nil"


def test_runtime_show_and_switch(make_engine):
    engine = make_engine("lua54")
    assert "runtime: lua54 (Lua 5.4)" in engine.show(":runtime")
    assert engine.eval_line(":runtime 5.1").ok
    assert engine.runtime == "lua51"
    assert engine.show("_VERSION") == '"Lua 5.1"'
    result = engine.eval_line(":runtime nope")
    assert not result.ok and b"unknown Lua runtime" in result.message
    assert engine.runtime == "lua51"


def test_history_uses_the_front_ends_history(make_engine):
    engine = make_engine()
    assert engine.show(":history") == "(no history)"
    engine.history_provider = lambda n: ["x = 1", "for i=1,2 do\nend"][-n:]
    out = engine.show(":history 5")
    assert "   1  x = 1" in out and "   2  for i=1,2 do\n      end" in out


def test_quit(make_engine):
    with pytest.raises(ShellExit) as info:
        make_engine().eval_line(":quit")
    assert info.value.code == 0


def test_time_reports_wall_and_cpu(make_engine):
    out = make_engine().show(":time 6 * 7")
    assert out.startswith("42\ntime: ") and "s wall" in out and "s CPU" in out


def test_source_command(make_engine):
    engine = make_engine()
    engine.show("function f(a) return a end")
    assert engine.show(":source f") == "function(a) return a end"
    assert b"not a function" in engine.eval_line(":source nothing").message


def test_commands_can_be_interrupted(make_engine):
    import threading

    from tests.waiting import when

    engine = make_engine()
    started = threading.Event()
    engine.set_global("started", started.set)
    engine.lua.execute(b"""
      require("bioxen.shell.commands").register{name = "spin", run = function() started() while true do end end}
    """)
    with when(started.is_set, engine.interrupt, "the command to run"):
        assert engine.eval_line(":spin").kind == "interrupted"
    assert engine.show("1") == "1"


def test_help_shows_the_doc_comment_of_a_library_function(make_engine, tmp_path, monkeypatch):
    (tmp_path / "doclib.lua").write_text(
        "local M = {}\n\n-- Count the G and C bases.\n-- s: a DNA string\nfunction M.gc(s)\n"
        "  return select(2, s:gsub('[GC]', ''))\nend\nreturn M\n")
    monkeypatch.setenv("BIOXEN_PATH", str(tmp_path))
    engine = make_engine()
    engine.reset()
    engine.show("doclib = require 'doclib'")
    out = engine.show(":help doclib.gc")
    assert "doclib.gc: function" in out
    assert "-- Count the G and C bases.\n-- s: a DNA string" in out
    assert "function(s)" in out


def test_jit_command_compiles_typed_code_only_when_asked(make_engine):
    engine = make_engine("luajit")
    # Whether the JIT starts a trace in the typed loop's own function (jit.attach's "trace"
    # events name it).  Not "is there any trace": the engine's own library code may be
    # compiled meanwhile, and on a loaded machine it was.
    traced = ("(function() local loop, seen local function on_trace(what, _, func) "
              "if what == 'start' and func == loop then seen = true end end "
              "jit.attach(on_trace, 'trace') "
              "loop = function() local s = 0 for i = 1, 1e5 do s = s + i end return s end "
              "loop() jit.attach(on_trace) return seen == true end)()")
    # default: typed code stays in the interpreter (where the interrupt hook fires)
    assert engine.show(traced) == "false"
    assert "interpreted" in engine.show(":jit")
    engine.show(":jit on")
    assert engine.show(traced) == "true"
    engine.show(":jit off")
    assert engine.show(traced) == "false"


@pytest.mark.parametrize("runtime", ["lua51", "lua54"])
def test_jit_command_on_other_runtimes_says_it_needs_luajit(make_engine, runtime):
    engine = make_engine(runtime)
    assert ":jit [on|off]" in engine.show(":help")  # listed, as on LuaJIT
    for line in (":jit", ":jit on"):
        result = engine.eval_line(line)
        assert result.kind == "error"
        assert b":jit needs LuaJIT; this runtime is Lua 5." in result.message
        assert b"unknown command" not in result.message
