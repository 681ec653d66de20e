"""Editing in the REPL: long strings keep their text, `stmts; expr` prints, <const>/<close>
locals live on, Enter runs what Ctrl-R found, Ctrl-X Ctrl-E edits the input in $EDITOR.

The engine-level checks run on every runtime; the terminal ones type into a real `bioxen`
in a pseudo-terminal (pexpect), or into prompt_toolkit's pipe input."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from prompt_toolkit.history import InMemoryHistory

from tests.shell.test_repl import CTRL_C, ENTER, drive
from tests.system import require_binary
from tests.waiting import PATIENCE

CTRL_R, CTRL_X, CTRL_E = "\x12", "\x18", "\x05"
ATTRIB_RUNTIMES = ["lua54", "lua55"]  # the ones with <const> and <close>


# --------------------------------------------------------------- the engine, every runtime

def test_no_indent_inside_long_strings_and_comments(engine):
    assert engine.is_complete("t = {") == ("incomplete", 2)
    assert engine.is_complete("t = { [[") == ("incomplete", 0)
    assert engine.is_complete("function f()\n  s = [==[ text") == ("incomplete", 0)
    assert engine.is_complete("if x then --[[ a note") == ("incomplete", 0)
    assert engine.is_complete("t = { [[a]],") == ("incomplete", 2)  # closed: code again


def test_statements_then_an_expression_print_it(engine):
    assert engine.is_complete("x = 5; x") == ("complete", 0)
    assert engine.show("x = 5; x") == "5"
    assert engine.show("x = 6; x;;") == "6"
    assert engine.show("local a = 2; a * 3") == "6"
    assert engine.show("a") == "2"  # the statements' locals live on as usual
    assert engine.show("do local b = 1; end; 7") == "7"  # only a top-level ';' splits
    assert engine.show("s = 'ab'; s:upper(), #s") == '"AB"\t2'
    assert engine.show("t = {}; table.insert(t, 1)") == ""  # a call with no results
    assert engine.show("y = 1;") == ""
    res = engine.eval_line("z = 1;\nerror('late')")
    assert not res.ok and res.message.endswith(b":2: late")  # line numbers as typed
    assert engine.eval_line("return 1; 2").kind == "syntax"


# ------------------------------------------------- <const> and <close>: Lua 5.4 and later

@pytest.mark.parametrize("runtime", ATTRIB_RUNTIMES)
def test_const_locals_stay_constant_on_later_inputs(make_engine, runtime):
    engine = make_engine(runtime)
    engine.show("local k <const> = 1")
    assert engine.show("k + 1") == "2"
    for src in ("k = 2", "function f() k = 3 end", "n = 0; k = n"):
        res = engine.eval_line(src)
        assert res.kind == "syntax" and b"attempt to assign to const variable 'k'" in res.message, src
    engine.show("local k = 4")  # declared again without <const>: an ordinary local
    engine.show("k = 5")
    assert engine.show("k") == "5"
    engine.show("local a <const>, b = 1, 2")
    assert engine.show("b = 3; a + b") == "4"


@pytest.mark.parametrize("runtime", ATTRIB_RUNTIMES)
def test_close_locals_are_closed_and_stay_visible(make_engine, runtime, tmp_path):
    engine = make_engine(runtime)
    engine.show("local h <close> = setmetatable({}, {__close = function(v) v.closed = true end})")
    assert engine.show("h.closed") == "true"  # closed at the end of its own input, still there
    assert b"const variable 'h'" in engine.eval_line("h = 1").message
    engine.show("local a <close>, b = nil, 2 + 3 * 4 print('same input')")
    assert engine.take_output() == b"same input\n"
    assert engine.show("a, b") == "nil\t14"
    (tmp_path / "data.txt").write_text("first line\n")
    engine.show(f"local f <close> = io.open({str(tmp_path / 'data.txt')!r}) line = f:read('l')")
    assert engine.show("line, io.type(f)") == '"first line"\t"closed file"'


@pytest.mark.parametrize("inputs", [
    ["local k <const> = 1", "k = 2"],
    ["local k <const> = 1", "local function f() return k end", "print(f() + 1)"],
    ["local t <close> = setmetatable({}, {__close = function() print('closed') end})", "print(t ~= nil)"],
])
def test_inputs_behave_as_one_chunk_in_stock_lua(make_engine, inputs):
    # Typed one by one, the inputs do what the same lines do as one chunk in lua5.4 (up to
    # when a <close> value is closed: at the end of its own input here).
    lua = require_binary("lua5.4")
    stock = subprocess.run([lua, "-"], input="\n".join(inputs), capture_output=True, text=True)
    engine = make_engine("lua54")
    out, errors = [], []
    for src in inputs:
        res = engine.eval_line(src)
        out.append(engine.take_output().decode())
        if not res.ok:
            errors.append(without_place(res.message.decode()))
    assert sorted("".join(out).splitlines()) == sorted(stock.stdout.splitlines())
    assert [without_place(line) for line in stock.stderr.splitlines()[:1]] == errors


def without_place(message: str) -> str:
    """`lua5.4: stdin:2: text` or `repl[2]:1: text` -> `text`."""
    return re.sub(r"^.*?:\d+: ", "", message)


# ----------------------------------------------------------- prompt_toolkit's pipe input

@pytest.fixture
def luajit(make_engine):
    return make_engine("luajit")


def test_long_string_typed_over_lines_keeps_its_text(luajit):
    # `[[` opens data: no indent is added on the next line, and a line of it that starts
    # with `end` is not dedented.
    drive(luajit, "t = {" + ENTER + "[[" + ENTER + "    end" + ENTER + "]]}" + ENTER + "t[1]" + ENTER)
    assert luajit.take_output() == b'"    end\\n"\n'


def test_enter_runs_a_multiline_entry_found_with_ctrl_r(luajit):
    history = InMemoryHistory()
    history.append_string("for i = 1, 2 do\n  print('row' .. i)\nend")
    history.append_string("other = 1")
    drive(luajit, CTRL_R + "'row'" + ENTER + "'after'" + ENTER, history=history)
    assert luajit.take_output() == b'row1\nrow2\n"after"\n'


def test_escape_leaves_the_search_to_edit_the_entry(luajit):
    history = InMemoryHistory()
    history.append_string("'found'")
    # Esc keeps the entry in the input, cursor on the match; End then Enter runs the edit.
    drive(luajit, CTRL_R + "found" + "\x1b" + "\x1b[F" + " .. '!'" + ENTER, history=history)
    assert luajit.take_output() == b'"found!"\n'


# ------------------------------------------------------------------- a real terminal

pexpect = pytest.importorskip("pexpect", reason="pexpect is a test dependency (pip install pexpect)")

PROMPT = "lua> "


@pytest.fixture
def spawn(tmp_path):
    children = []

    def start(*args: str, **env: str):
        environ = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", NO_COLOR="1", **env)
        environ.pop("VISUAL", None)  # prompt_toolkit prefers it to $EDITOR
        command = shutil.which("bioxen")
        argv = list(args) if command else ["-m", "bioxen_shell", *args]
        child = pexpect.spawn(command or sys.executable, argv, env=environ, encoding="utf-8",
                              timeout=PATIENCE, dimensions=(30, 100))
        children.append(child)
        child.expect_exact(PROMPT)
        return child

    yield start
    for child in children:
        if child.isalive():
            child.terminate(force=True)


def test_terminal_long_string_and_statements_then_expression(spawn):
    shell = spawn()
    for line in ("t = {", "[[", "  end", "]]}"):
        shell.send(line + "\r")
    shell.expect_exact(PROMPT)
    shell.send("t[1] == '  end\\n'\r")
    shell.expect_exact("true\r\n")
    shell.expect_exact(PROMPT)
    shell.send("x = 5; x\r")
    shell.expect_exact("5\r\n")
    shell.expect_exact(PROMPT)


def test_terminal_const_and_close_locals(spawn):
    shell = spawn("--runtime", "lua54")
    shell.send("local k <const> = 20\r")
    shell.expect_exact(PROMPT)
    shell.send("k = 1\r")
    shell.expect_exact("attempt to assign to const variable 'k'")
    shell.expect_exact(PROMPT)
    shell.send("local h <close> = setmetatable({}, {__close = function(v) v.n = 22 end})\r")
    shell.expect_exact(PROMPT)
    shell.send("k + h.n\r")
    shell.expect_exact("42\r\n")


def test_terminal_ctrl_r_then_enter_runs_a_multiline_entry(spawn):
    shell = spawn()
    for line in ("for i = 1, 2 do", "print('ro' .. 'w' .. i)", "end"):
        shell.send(line + "\r")
    shell.expect_exact("row2")
    shell.expect_exact(PROMPT)
    # The history reloads in the background at each prompt: Up shows the entry once it
    # is there (Down then returns to the empty input).
    shell.send("\x1b[A")
    shell.expect_exact("'ro'")  # one token: drawn in one piece (the input is highlighted)
    shell.send("\x1b[B" + CTRL_R + "'ro' ..")
    shell.send("\r")
    shell.expect_exact("row1\r\nrow2\r\n")
    shell.expect_exact(PROMPT)


def test_terminal_ctrl_x_ctrl_e_edits_the_input_in_editor(spawn, tmp_path):
    editor = tmp_path / "editor"
    # doubles what it is given; refuses (exit status 1, as vim's :cq) an input with "keep"
    editor.write_text('#!/bin/sh\ngrep -q keep "$1" && exit 1\nsed -i \'s/$/ * 2/\' "$1"\n')
    editor.chmod(0o755)
    shell = spawn(EDITOR=str(editor))
    shell.send("21" + CTRL_X + CTRL_E)
    shell.expect_exact("42\r\n")  # edited, then run: it was complete
    shell.expect_exact(PROMPT)
    shell.send("'keep'" + CTRL_X + CTRL_E)
    shell.send(" .. '!'\r")  # the refused edit left the input as it was, cursor included
    shell.expect_exact('"keep!"')
    shell.expect_exact(PROMPT)
    shell.send(CTRL_C)
