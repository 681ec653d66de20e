"""The command line as the stock `lua5.4` command has it: `#` lines, `lua - a b`, options of `run`.

Differential: the same command line and input go to bioxen and to lua5.4; exit status,
stdout and the first line of stderr (the program name aside) must be the same.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system import require_binary
from tests.waiting import PATIENCE

REPO = Path(__file__).resolve().parents[2]
BIOXEN = [sys.executable, "-m", "bioxen_shell"]
BOM = "\ufeff"


def run(cmd, stdin: str = "", cwd=None):
    env = {**os.environ, "LUA_PATH": "", "LUA_INIT": "", "LUA_INIT_5_4": ""}
    proc = subprocess.run(cmd, input=stdin.encode(), capture_output=True, cwd=cwd, env=env, timeout=PATIENCE)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def first_line(err: str, program: str) -> str:
    line = err.splitlines()[0] if err else ""
    return line.replace(program + ": ", "PROGRAM: ", 1)


def same_as_lua(argv, stdin="", runtime="lua54", cwd=None):
    """Run argv under bioxen --runtime and lua5.4; assert they agree; return bioxen's stdout."""
    require_binary("lua5.4")
    lua = run(["lua5.4", *argv], stdin, cwd)  # as typed: messages start "lua5.4: "
    ours = run([*BIOXEN, "--runtime", runtime, *argv], stdin, cwd)
    assert ours[0] == lua[0], (ours, lua)
    assert ours[1] == lua[1]
    assert first_line(ours[2], "bioxen") == first_line(lua[2], "lua5.4"), (ours[2], lua[2])
    return ours[1]


# ----------------------------------------------------------------- 2: `#` lines

@pytest.mark.parametrize("runtime", ["lua54", "luajit"])  # LuaJIT's load skipped a "#" line of any chunk
@pytest.mark.parametrize("argv", [
    ["-e", "#!/usr/bin/env lua"], ["-e", "# a comment\nprint(1)"], ["-e", "#!x", "-e", "print(2)"],
    ["-e", "print(1)", "-e", "#x = 2\nprint(x)"],
], ids=["shebang", "comment", "then-e", "second-e"])
def test_e_chunk_starting_with_hash_is_a_syntax_error(argv, runtime):
    same_as_lua(argv, runtime=runtime)


def test_e_chunk_keeps_a_bom():
    # Not skipped either.  (LuaJIT takes the BOM's bytes as part of a name: the error then
    # comes when the chunk runs, still exit status 1.)
    same_as_lua(["-e", BOM + "print(1)"])
    assert run([*BIOXEN, "--runtime", "luajit", "-e", BOM + "print(1)"])[:2] == (1, "")


@pytest.mark.parametrize("runtime", ["lua54", "luajit"])
@pytest.mark.parametrize("stdin", [
    "#!/usr/bin/env lua\nprint(1)\nerror('line 3')\n", "# comment\nprint(2)", "#", "print(3)\n#x\n",
    BOM + "#!x\nprint(4)\n", BOM + "print(5)\n",
], ids=["shebang", "comment", "alone", "second-line", "bom-shebang", "bom"])
@pytest.mark.parametrize("how", [["-"], []], ids=["dash", "pipe"])
def test_stdin_first_line_is_skipped_as_in_lua(stdin, how, runtime):
    if how:
        same_as_lua(how, stdin, runtime)
        return
    # Piped with no arguments lua5.4 exits 0 even after an error; bioxen says 1, as for `-`.
    require_binary("lua5.4")
    ours, lua = run([*BIOXEN, "--runtime", runtime], stdin), run(["lua5.4", "-"], stdin)
    assert ours == run([*BIOXEN, "--runtime", runtime, "-"], stdin)
    assert ours[0] == lua[0] and ours[1] == lua[1]
    assert first_line(ours[2], "bioxen") == first_line(lua[2], "lua5.4")


@pytest.mark.parametrize("runtime", ["lua54", "luajit"])
def test_script_first_line_is_skipped_keeping_line_numbers(tmp_path, runtime):
    for name, text in {"a.lua": "#!/usr/bin/env bioxen\nprint(1)\nerror('line 3')\n",
                       "b.lua": BOM + "#!x\nprint(2)\n", "c.lua": "print(3)\n#!x\n"}.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        same_as_lua([name], cwd=tmp_path, runtime=runtime)


def test_repl_line_starting_with_hash_is_not_skipped(make_engine):
    for runtime in ("luajit", "lua54"):
        engine = make_engine(runtime)
        result = engine.eval_line("#!x")
        assert not result.ok and b"near '#'" in result.message
        engine.eval_line("t = {1, 2, 3}")
        assert engine.show("#t") == "3"  # an expression that starts with # still is one
        assert engine.execute("#t").output == b"3"


# ----------------------------------------------- 3: `lua - a b` and `...` in chunks

STDIN_ARGS = "print(select('#', ...), ...)\nprint(arg[0], #arg, arg[1], arg[2], arg[3])\n"


@pytest.mark.parametrize("runtime", ["lua51", "lua54", "luajit"])
@pytest.mark.parametrize("args", [["a", "b"], [], ["x y", "", "--"], ["--", "a"], ["a", "--", "b"], ["-e", "-"]],
                         ids=lambda a: " ".join(map(repr, a)) or "none")
def test_stdin_script_gets_its_arguments(args, runtime):
    same_as_lua(["-", *args], STDIN_ARGS, runtime)


def test_stdin_arguments_after_e_chunks_and_errors_name_stdin():
    assert same_as_lua(["-e", "x = 7", "-", "a"], "print(x, ...)") == "7\ta\n"
    same_as_lua(["-", "a"], "local n = select('#', ...)\nerror('got ' .. n)")


def test_e_chunks_see_the_scripts_arg_table(tmp_path):
    (tmp_path / "s.lua").write_text("print(#arg, ...)\n")
    same_as_lua(["-e", "print(arg[0], #arg, arg[1], ...)", "s.lua", "a", "b"], cwd=tmp_path)
    same_as_lua(["-e", "print(arg[0], #arg, arg[1])", "-", "a"], "print(arg[0], ...)")


@pytest.mark.parametrize("args", [["a", "--", "b"], ["--", "b"], ["--"], ["-i", "--runtime", "lua51"]])
def test_script_arguments_are_passed_verbatim(tmp_path, args):
    (tmp_path / "s.lua").write_text("#!/x\nprint(select('#', ...), ...)\nprint(arg[0], #arg, arg[1])\n")
    same_as_lua(["s.lua", *args], cwd=tmp_path)
    same_as_lua(["--", "s.lua", *args], cwd=tmp_path)


@pytest.mark.parametrize("runtime", ["lua51", "lua54", "luajit"])
def test_expressions_see_the_chunks_own_varargs(make_engine, runtime):
    # The helper that keeps an expression's call out of a tail call must not show in `...`.
    engine = make_engine(runtime)
    assert engine.execute("...").output == b""
    assert engine.execute("(select('#', ...))").output == b"0"
    assert engine.execute("{...}").output == b"{}"
    assert engine.execute("(select('#', ...))", "=stdin", ["a", "b"]).output == b"2"
    assert engine.execute("...", "=stdin", ["a", "b"]).output == b'"a"\t"b"'
    assert engine.execute("'x', ...", "=stdin", ["a"]).output == b'"x"\t"a"'
    result = engine.execute("1 + nil")  # an expression without `...`: still its own line in the error
    assert result.message.startswith(b"(command line):1: attempt to perform arithmetic")


# ---------------------------------------------------- 5: options of `bioxen run`

def bioxen(*argv, stdin="", cwd=None):
    return run([*BIOXEN, *argv], stdin, cwd)


@pytest.fixture
def script(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mylib.lua").write_text("return {name = 'mylib'}\n")
    (tmp_path / "s.lua").write_text(
        "print(_VERSION, type(x), type(seq), (pcall(require, 'mylib')), select('#', ...), ...)\n")
    return tmp_path


@pytest.mark.parametrize("options, want", [
    (["--runtime", "lua53"], "Lua 5.3\tnil\tnil\tfalse\t0\n"),
    (["--runtime=lua52"], "Lua 5.2\tnil\tnil\tfalse\t0\n"),
    (["--runtime", "lua54", "-e", "x = 1", "-l", "seq=bio.seq", "--path", "lib"], "Lua 5.4\tnumber\ttable\ttrue\t0\n"),
    (["--path=lib", "--runtime", "lua51", "--"], "Lua 5.1\tnil\tnil\ttrue\t0\n"),
], ids=["runtime", "runtime=", "all", "path="])
def test_run_takes_options_before_the_script(script, options, want):
    assert bioxen("run", *options, "s.lua", cwd=script) == (0, want, "")
    assert bioxen(*options, "s.lua", cwd=script) == (0, want, "")  # the same without `run`


def test_run_options_after_the_script_belong_to_it(script):
    args = ["--runtime", "lua51", "-e", "x = 1", "-i", "--", "-"]
    code, out, err = bioxen("run", "--runtime", "lua54", "s.lua", *args, cwd=script)
    assert (code, err) == (0, "")
    assert out == "Lua 5.4\tnil\tnil\tfalse\t7\t" + "\t".join(args) + "\n"
    lua = run([require_binary("lua5.4"), "s.lua", *args], cwd=script)[1]  # as lua gives them
    assert out == lua


def test_run_interactive_and_version(script):
    assert bioxen("run", "-i", "--runtime", "lua53", "s.lua", stdin="y = 6 * 7\ny\n", cwd=script) == (
        0, "Lua 5.3\tnil\tnil\tfalse\t0\n42\n", "")
    code, out, _ = bioxen("run", "--version")
    assert code == 0 and out.startswith("bioxen ")
    code, out, _ = bioxen("run", "--help")
    assert code == 0 and out.startswith("usage: bioxen run [OPTIONS] FILE [ARGS...]")


def test_run_stdin_and_a_script_named_like_an_option(script):
    assert bioxen("run", "--runtime", "lua51", "-", "a", stdin="print(_VERSION, ...)") == (0, "Lua 5.1\ta\n", "")
    (script / "-w.lua").write_text("print('w', ...)")
    assert bioxen("run", "--", "-w.lua", "z", cwd=script) == (0, "w\tz\n", "")


@pytest.mark.parametrize("argv, message", [
    (["run"], "bioxen: run: missing FILE (usage: bioxen run [OPTIONS] FILE [ARGS...])"),
    (["run", "-e", "print(1)"], "bioxen: run: missing FILE (usage: bioxen run [OPTIONS] FILE [ARGS...])"),
    (["run", "--runtime", "nope", "s.lua"], "bioxen: unknown Lua runtime 'nope'"),
    (["run", "--bogus", "s.lua"], "bioxen: unrecognized arguments: --bogus (see bioxen --help)"),
    (["run", "--runtime"], "bioxen: argument --runtime: expected one argument (see bioxen --help)"),
    (["run", "-w.lua"], "bioxen: unrecognized arguments: -w.lua (see bioxen --help)"),
])
def test_run_usage_errors(script, argv, message):
    code, out, err = bioxen(*argv, cwd=script)
    assert (code, out) == (2, "")
    assert err.startswith(message), err
    assert len(err.splitlines()) == 1


# ------------------------------------------- 4: `-` is stdin for the bio readers

@pytest.mark.parametrize("runtime", ["lua51", "lua54", "luajit"])
def test_gc_table_reads_fasta_piped_through_the_cli(runtime):
    from tests.bio.test_examples import SAMPLE, expected_gc_table

    fasta = SAMPLE.read_text()
    gc = str(REPO / "examples" / "gc_table.lua")
    want = expected_gc_table()  # Biopython's gc_fraction
    assert bioxen("run", "--runtime", runtime, gc, "-", stdin=fasta) == (0, want, "")
    assert bioxen("--runtime", runtime, gc, "-", "--mode", "remove", stdin=fasta) == (0, want, "")
    assert run([require_binary("lua5.4"), gc, "-"], fasta)[1] == want
