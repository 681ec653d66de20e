"""The REPL engine on every lupa runtime: completeness, printing, errors, locals, interrupts."""
from __future__ import annotations

import threading

import pytest

from bioxen_shell.engine import ShellExit
from tests.waiting import eventually, when

# ---------------------------------------------------------------- completeness


@pytest.mark.parametrize(
    "src, status",
    [
        ("1 + 1", "complete"),
        ("x = 1", "complete"),
        ("for i = 1, 3 do", "incomplete"),       # 'end' expected near <eof> / '<eof>'
        ("function f(a)", "incomplete"),
        ("if x then", "incomplete"),
        ("t = {", "incomplete"),
        ("print(", "incomplete"),
        ("x = 1 +", "incomplete"),
        ("s = [[long", "incomplete"),
        ("--[[ open comment", "incomplete"),
        ("repeat", "incomplete"),
        ("x = = 1", "invalid"),
        ("end", "invalid"),
        ("x = 1 )", "invalid"),
        ("s = 'unfinished", "invalid"),          # no further line can finish a short string
        (":help", "complete"),
        ("", "complete"),
        ("=1+1", "complete"),
    ],
)
def test_is_complete(repl, src, status):
    assert repl.is_complete(src)[0] == status


def test_indent_hint_follows_nesting(repl):
    assert repl.is_complete("for i = 1, 3 do") == ("incomplete", 2)
    assert repl.is_complete("function f()\n  if x then") == ("incomplete", 4)
    assert repl.is_complete("t = {\n  a = {") == ("incomplete", 4)
    assert repl.is_complete("do\nend\nwhile true do")[1] == 2


def test_indent_hint_follows_the_indent_option(repl):
    assert repl.is_complete("for i = 1, 3 do") == ("incomplete", 2)
    repl.set_option("indent", 4)
    assert repl.is_complete("for i = 1, 3 do") == ("incomplete", 4)


def test_multiline_chunk_runs_after_completion(repl):
    src = "function add(a, b)\n  return a + b\nend"
    assert repl.is_complete(src)[0] == "complete"
    repl.show(src)
    assert repl.show("add(2, 3)") == "5"


# -------------------------------------------------------------------- printing


def test_expressions_print_their_values(repl):
    assert repl.show("1 + 1") == "2"
    assert repl.show("'a', nil, true") == '"a"\tnil\ttrue'
    assert repl.show("x = 1") == ""            # statements print nothing
    assert repl.show("(function() end)()") == ""  # no values, nothing printed


def test_underscore_holds_last_result(repl):
    repl.show("{10, 20}")
    assert repl.show("_[2]") == "20"
    assert repl.show("_ + 1") == "21"


def test_print_and_io_write_go_to_the_shell_output(repl):
    repl.show("print('a', 1, nil)")
    repl.show("io.write('b', 2, '\\n')")
    repl.show("io.stdout:write('c\\n')")
    assert repl.take_output() == b"a\t1\tnil\nb2\nc\n"


def test_stdout_is_a_file_as_lua_sees_it(repl):
    assert repl.show("io.type(io.stdout), io.write('x') == io.stdout, io.output() == io.stdout") == '"file"\ttrue\ttrue'
    assert repl.take_output() == b"x"
    result = repl.eval_line("io.write('ok', {})")
    assert result.message.decode().endswith(":1: bad argument #2 to 'write' (string expected, got table)")


def test_binary_strings_cross_intact(repl):
    repl.show("print(string.char(0, 255, 10))")
    assert repl.take_output() == b"\x00\xff\n\n"
    assert repl.show("#string.char(0, 255)") == "2"


# ---------------------------------------------------------------------- locals


def test_top_level_locals_persist(repl):
    repl.show("local x = 41")
    assert repl.show("x + 1") == "42"
    repl.show("local a, b = 1, 2")
    assert repl.show("a + b") == "3"
    repl.show("local function sq(n) return n * n end")
    assert repl.show("sq(7)") == "49"
    repl.show("local none")
    assert repl.show("none") == "nil"


def test_locals_do_not_leak_into_globals(repl):
    repl.show("local hidden = 1")
    assert repl.show("rawget(_G, 'hidden')") == "nil"
    assert repl.show("hidden") == "1"


def test_block_locals_stay_block_locals(repl):
    repl.show("do local inner = 5 end")
    assert repl.show("inner") == "nil"


def test_closure_sees_later_changes_to_a_repl_local(repl):
    repl.show("local count = 0")
    repl.show("function bump() count = count + 1 end")
    repl.show("bump(); bump()")
    assert repl.show("count") == "2"


# ---------------------------------------------------------------------- errors


def test_runtime_error_has_user_frames_only(repl):
    repl.show("function inner() error('boom') end\nfunction outer() inner() end")
    result = repl.eval_line("outer()")
    assert not result.ok and result.kind == "error"
    assert result.message.decode().endswith(":1: boom")
    tb = result.traceback.decode()
    assert tb.startswith("stack traceback:")
    assert "inner" in tb and "outer" in tb
    # no shell-internal frames
    for internal in ("xpcall", "bioxen/shell", "init.lua", "[C]: in ?"):
        assert internal not in tb


def test_syntax_error(repl):
    result = repl.eval_line("x = = 1")
    assert result.kind == "syntax"
    assert "near '='" in result.message.decode()


def test_non_string_error_values(repl):
    result = repl.eval_line("error({code = 42})")
    assert "code = 42" in result.message.decode()
    result = repl.eval_line("error(setmetatable({}, {__tostring = function() return 'custom' end}))")
    assert result.message == b"custom"


def test_state_survives_an_error(repl):
    repl.show("local kept = 'yes'")
    assert not repl.eval_line("error('x')").ok
    assert repl.show("kept") == '"yes"'


def test_os_exit_unwinds_instead_of_killing(engine):
    closed = []
    engine.on_close(lambda: closed.append(True))
    with pytest.raises(ShellExit) as info:
        engine.eval_line("pcall(os.exit, 7)")  # pcall cannot swallow it
    assert info.value.code == 7
    engine.close()
    assert closed == [True]


def test_os_exit_boolean_codes(engine):
    with pytest.raises(ShellExit) as info:
        engine.execute("os.exit(false)")
    assert info.value.code == 1
    with pytest.raises(ShellExit) as info:
        engine.execute("os.exit(true)")
    assert info.value.code == 0


# ------------------------------------------------------------------ interrupts

RUNAWAYS = [
    "while true do end",
    "while true do pcall(function() while true do end end) end",   # pcall must not swallow it
    "coroutine.wrap(function() while true do end end)()",           # nor a coroutine hide it
    "local function spin() local i = 0 while true do i = i + 1 end end spin()",
]


def interrupt_once_started(engine):
    """``with interrupt_once_started(engine):`` -- Ctrl-C as soon as the code calls
    ``started()``, so it never comes before the code runs (nor waits on a clock)."""
    return when(engine.started_signal(), engine.interrupt, "the code to start")


@pytest.mark.parametrize("code", RUNAWAYS)
def test_interrupt_runaway_loop(repl, code):
    repl.show("local state = 'intact'")
    # Not a speed test (bench/interrupt.py measures the latency): the loops never end by
    # themselves, so an interrupted result proves the interrupt ended them.
    with interrupt_once_started(repl):
        result = repl.eval_line("started() " + code)
    assert result.kind == "interrupted"
    assert result.message == b"interrupted!"
    # the shell is usable and its state intact; the flag does not leak
    assert repl.show("state") == '"intact"'
    assert repl.show("1 + 1") == "2"
    assert not repl.interrupted()


def test_interrupt_reports_where_it_stopped(repl):
    repl.show("function spin()\n  started()\n  while true do end\nend")
    with interrupt_once_started(repl):
        result = repl.eval_line("spin()")
    assert result.kind == "interrupted"
    assert "spin" in result.traceback.decode()


def test_interrupted_flag_is_visible_to_python_callbacks(make_engine):
    engine = make_engine("lua54")
    seen = []
    waiting = threading.Event()

    def wait_like_a_vm():
        waiting.set()
        if not eventually(engine.interrupted):
            return b"timeout"
        seen.append(True)
        return b"stopped"

    engine.set_global("wait_vm", wait_like_a_vm)
    with when(waiting.is_set, engine.interrupt, "the callback to wait"):
        result = engine.eval_line("wait_vm()")
    assert seen == [True]
    assert result.kind in ("ok", "interrupted")


# ------------------------------------------------------------------ scripts, -e


def test_run_file_sets_arg_and_varargs(engine, tmp_path):
    script = tmp_path / "s.lua"
    script.write_text("#!/usr/bin/env bioxen\nprint(arg[0] == ..., #arg, ...)\nresult = select('#', ...)\n")
    result = engine.run_file(str(script), [str(script), "b"])
    assert result.ok, result.error_text()
    assert engine.take_output() == b"true\t2\t" + str(script).encode() + b"\tb\n"
    assert engine.show("result") == "2"


def test_run_file_error_names_file_and_line(engine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Lua shortens long chunk names; keep this one short
    (tmp_path / "bad.lua").write_text("local x = 1\n\nerror('broken')\n")
    result = engine.run_file("bad.lua")
    assert result.message.decode() == "bad.lua:3: broken"
    assert "in main chunk" in result.traceback.decode()


def test_execute_expression_prints(engine):
    assert engine.execute("1 + 2").output == b"3"
    assert engine.execute("x = 1").output == b""


def test_error_in_an_expression_names_the_users_line(repl):
    # `error('x')` is compiled as an expression; the call must not be a tail
    # call, or LuaJIT/5.1 would blame the engine's own frame.
    result = repl.eval_line("error('oops')")
    assert result.message == f"{repl.chunk_stem}[1]:1: oops".encode()
    assert repl.execute("error('again')").message == b"(command line):1: again"


def test_trailing_semicolon_and_comment_in_expressions(repl):
    assert repl.show("1 + 1;") == "2"
    assert repl.show("2 + 2 -- four") == "4"


@pytest.mark.parametrize("runtime", ["lua54", "lua55", "vm:lua54"])
def test_attribute_locals(make_engine, runtime):
    engine = make_engine(runtime)
    engine.show("local k <const> = 10")
    assert engine.show("k + 1") == "11"
    engine.show("closed = false")
    engine.show("local h <close> = setmetatable({}, {__close = function() closed = true end})")
    assert engine.show("closed") == "true"  # closed at the end of its own input


def test_print_heavy_output_stays_in_order(repl):
    repl.show("for i = 1, 3000 do print(i) end")
    lines = repl.take_output().split(b"\n")
    assert lines[:3] == [b"1", b"2", b"3"] and lines[-2] == b"3000"
