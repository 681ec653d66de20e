"""The bioxen command through real subprocesses: output, exit statuses, stderr."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from bioxen_shell import cli
from tests.waiting import PATIENCE

BIOXEN = [sys.executable, "-m", "bioxen_shell"]


def run(*args, stdin=None, cwd=None, env=None, timeout=PATIENCE):
    proc = subprocess.run(
        [*BIOXEN, *args], input=stdin, capture_output=True, cwd=cwd, env=env, timeout=timeout
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_e_prints_and_is_quiet():
    assert run("-e", "print(1)") == (0, "1\n", "")


def test_e_expression_prints_value_and_chunks_run_in_order():
    code, out, _ = run("-e", "x = 20", "-e", "x + 1")
    assert (code, out) == (0, "21\n")


@pytest.mark.parametrize("src, status", [("os.exit(3)", 3), ("os.exit(true)", 0), ("os.exit(false)", 1),
                                         ("pcall(os.exit, 4)", 4)])
def test_os_exit_status(src, status):
    assert run("-e", src)[0] == status


def test_uncaught_error_exit_1_with_traceback():
    code, out, err = run("-e", "local function f() error('boom') end f()")
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == "bioxen: (command line):1: boom"
    assert lines[1] == "stack traceback:"
    assert "in function 'f'" in err and "in main chunk" in err


def test_script_error_names_file_and_line(tmp_path):
    (tmp_path / "bad.lua").write_text("local x = 1\nerror('broken ' .. x)\n")
    code, _, err = run("bad.lua", cwd=tmp_path)
    assert code == 1
    assert err.splitlines()[0] == "bioxen: bad.lua:2: broken 1"


def test_syntax_error_in_script(tmp_path):
    (tmp_path / "syn.lua").write_text("x = = 1\n")
    code, _, err = run("run", "syn.lua", cwd=tmp_path)
    assert code == 1 and "syn.lua:1:" in err


def test_run_with_args_and_shebang(tmp_path):
    script = tmp_path / "args.lua"
    script.write_text("#!/usr/bin/env bioxen\nprint(arg[0], #arg, ...)\n")
    assert run("run", str(script), "a", "b c") == (0, f"{script}\t2\ta\tb c\n", "")
    # the plain `bioxen FILE args` form and options after the file go to the script
    assert run(str(script), "-e", "x")[1] == f"{script}\t2\t-e\tx\n"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["missing.lua"], "bioxen: cannot open missing.lua: no such file"),
        (["run", "missing.lua"], "bioxen: cannot open missing.lua: no such file"),
        (["run"], "bioxen: run: missing FILE"),
        (["--bogus"], "bioxen: unrecognized arguments: --bogus"),
        (["--runtime", "lua9", "-e", "1"], "bioxen: unknown Lua runtime 'lua9'; expected one of lua51,"),
        (["-e"], "bioxen: argument -e: expected one argument"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, needle):
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(needle)


def test_directory_is_not_a_script(tmp_path):
    code, _, err = run(str(tmp_path))
    assert code == 2 and "is a directory" in err


def test_stdin_dash_and_pipe_run_the_chunk():
    src = b"local t = {}\nfor i = 1, 3 do t[i] = i * i end\nprint(table.concat(t, ','))\n"
    assert run("-", stdin=src) == (0, "1,4,9\n", "")
    code, out, err = run(stdin=src)
    assert (code, out) == (0, "1,4,9\n")
    assert "\x1b" not in out + err


def test_stdin_errors_name_stdin():
    code, _, err = run(stdin=b"\n\nerror('piped')\n")
    assert code == 1 and err.startswith("bioxen: stdin:3: piped")


def test_interactive_with_piped_stdin_is_plain(tmp_path):
    (tmp_path / "init.lua").write_text("base = 10\n")
    src = b"local y = base + 1\ny\nfor i = 1, 2 do\n  print(i)\nend\n'str'\nerror('oops')\n1 + 1\n"
    code, out, err = run("-i", "init.lua", stdin=src, cwd=tmp_path)
    assert code == 0
    assert out == '11\n1\n2\n"str"\n2\n'
    assert "repl[" in err and "oops" in err
    assert "\x1b" not in out + err


def test_interactive_os_exit_status():
    assert run("-i", stdin=b"os.exit(5)\n")[0] == 5


def test_runtime_option_and_l():
    code, out, _ = run("--runtime", "5.1", "-l", "pp=bioxen.shell.pretty", "-e", "print(_VERSION, type(pp.format))")
    assert (code, out) == (0, "Lua 5.1\tfunction\n")


def test_path_option_and_bioxen_path(tmp_path):
    (tmp_path / "mylib.lua").write_text("return {v = 7}")
    assert run("--path", str(tmp_path), "-e", "print(require('mylib').v)")[1] == "7\n"
    env = dict(os.environ, BIOXEN_PATH=str(tmp_path))
    assert run("-e", "print(require('mylib').v)", env=env)[1] == "7\n"


def test_version_and_help():
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("bioxen 0.1.0 (lupa ")
    code, out, _ = run("--help")
    assert code == 0 and "--runtime NAME" in out and "bioxen run FILE" in out
    from bioxen_shell.runtimes import DEFAULT_RUNTIME

    assert f"else {DEFAULT_RUNTIME})" in " ".join(out.split())  # the effective default, not None


def test_missing_subcommand_module_exits_2(monkeypatch, capfd):
    monkeypatch.setitem(cli.SUBCOMMANDS, "widgets", "bioxen_shell.no_such_module:cli_main")
    assert cli.main(["widgets", "list"]) == 2
    assert "the 'widgets' subcommand is not available" in capfd.readouterr().err


def test_subcommand_gets_argv_and_returns_status(monkeypatch, tmp_path):
    (tmp_path / "bx_fake_sub.py").write_text("def cli_main(argv):\n    return len(argv)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.SUBCOMMANDS, "fake", "bx_fake_sub:cli_main")
    assert cli.main(["fake", "a", "b", "c"]) == 3


CLEANUP_EXT = """
import os
def install(engine):
    engine.on_close(lambda: open(os.environ["BX_MARK"], "a").write("cleaned\\n"))
"""


def run_with_cleanup_mark(tmp_path, *args, **popen):
    (tmp_path / "bx_mark_ext.py").write_text(CLEANUP_EXT)
    env = dict(os.environ, BX_MARK=str(tmp_path / "mark"),
               PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    code = textwrap.dedent(f"""
        import sys
        import bioxen_shell.engine as engine
        engine.EXTENSIONS.append("bx_mark_ext")
        from bioxen_shell.cli import main
        sys.exit(main({list(args)!r}))
    """)
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)


def test_os_exit_runs_cleanup(tmp_path):
    proc = run_with_cleanup_mark(tmp_path, "-e", "os.exit(9)")
    assert proc.wait(PATIENCE) == 9
    assert (tmp_path / "mark").read_text() == "cleaned\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_termination_signal_while_running_runs_cleanup(tmp_path, sig):
    proc = run_with_cleanup_mark(tmp_path, "-e", "print('started') io.stdout:flush() while true do end")
    assert proc.stdout.readline() == b"started\n"  # the loop runs: the signal comes during it
    proc.send_signal(sig)
    assert proc.wait(PATIENCE) == 128 + sig
    assert (tmp_path / "mark").read_text() == "cleaned\n"


def test_config_file_shell_section(tmp_path):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "cfgmod.lua").write_text("return 'from config path'")
    (config_dir / "config.toml").write_text(f'[shell]\nruntime = "lua52"\npath = ["{tmp_path / "lib"}"]\n')
    env = dict(os.environ, BIOXEN_CONFIG_DIR=str(config_dir))
    assert run("-e", "print(_VERSION, require('cfgmod'))", env=env)[1] == "Lua 5.2\tfrom config path\n"
    # --runtime wins over the file
    assert run("--runtime", "lua53", "-e", "print(_VERSION)", env=env)[1] == "Lua 5.3\n"
    (config_dir / "config.toml").write_text("[shell]\nruntime = 5\n")
    code, _, err = run("-e", "1", env=env)
    assert code == 2 and "config.toml: shell.runtime: expected one of lua51" in err


def test_fast_path_imports_no_front_end_or_vm_layer():
    probe = textwrap.dedent("""
        import io, sys
        from bioxen_shell.cli import main
        assert main(["-e", "x = 1"]) == 0
        sys.stdin = io.TextIOWrapper(io.BytesIO(b"y = 2"))
        assert main(["-"]) == 0
        heavy = ("prompt_toolkit", "pygments", "paramiko", "XenAPI", "bioxen_shell.vm.manager",
                 "bioxen_shell.vm.handle", "bioxen_shell.remote")
        print(sorted(m for m in sys.modules if m.startswith(heavy)))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=PATIENCE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_ctrl_c_stops_a_script_with_status_130(tmp_path):
    (tmp_path / "spin.lua").write_text("print('spinning')\nio.stdout:flush()\nwhile true do end\n")
    proc = subprocess.Popen([*BIOXEN, "spin.lua"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"spinning\n"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(PATIENCE) == 130
    err = proc.stderr.read().decode()
    assert err.startswith("bioxen: interrupted!\nstack traceback:\n\tspin.lua:3: in main chunk")


def test_installed_console_script():
    import shutil

    exe = shutil.which("bioxen")
    if exe is None:
        pytest.skip("the bioxen command is not on PATH (pip install . puts it there)")
    proc = subprocess.run([exe, "-e", "print(6 * 7)"], capture_output=True, text=True, timeout=PATIENCE)
    assert (proc.returncode, proc.stdout) == (0, "42\n")


def test_init_lua_runs_before_the_repl_only(tmp_path):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "init.lua").write_text("greeting = 'hello from init'\n")
    env = dict(os.environ, BIOXEN_CONFIG_DIR=str(config_dir))
    assert run("-i", stdin=b"greeting\n", env=env)[1] == '"hello from init"\n'
    assert run("-e", "print(greeting)", env=env)[1] == "nil\n"
    (config_dir / "init.lua").write_text("error('bad init')\n")
    code, out, err = run("-i", stdin=b"1 + 1\n", env=env)
    assert (code, out) == (0, "2\n")
    assert "init.lua:1: bad init" in err
