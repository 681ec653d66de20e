"""The extension points of docs/extending.md: install(engine), commands, eval targets."""
from __future__ import annotations

import textwrap
import threading

import pytest

from tests.waiting import wait_for, when


@pytest.fixture
def ext_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def write_module(ext_dir, name, body):
    (ext_dir / f"{name}.py").write_text(textwrap.dedent(body))


def test_extension_installs_globals_commands_and_status(make_engine, ext_dir):
    write_module(ext_dir, "bx_ext_ok", '''
        def install(engine):
            engine.set_global("greeting", "hello")
            engine.add_status(lambda: "2 VMs")
            engine.on_close(lambda: engine.write(b"closed\\n"))
            engine.lua.execute(b"""
              require("bioxen.shell.commands").register{
                name = "hi", usage = ":hi NAME", help = "Say hi.",
                run = function(shell, argstr) return greeting .. " " .. argstr end,
                complete = function(shell, partial) return {"world"} end,
              }
            """)
    ''')
    engine = make_engine(extensions=["bx_ext_ok"])
    assert engine.show(":hi bob") == "hello bob"
    assert [w for w, _, _ in engine.complete(":hi w")] == ["world"]
    assert ":hi NAME" in engine.show(":help")
    assert engine.status_segments() == ["2 VMs"]
    engine.eval_line(":reset")  # cleanup ran, then install ran again
    assert engine.take_output() == b"closed\n"
    assert engine.show(":hi again") == "hello again"


def test_missing_extension_is_ignored(make_engine, capsys):
    engine = make_engine(extensions=["bx_ext_not_installed_anywhere"])
    assert engine.show("1") == "1"
    assert capsys.readouterr().err == ""


def test_broken_extensions_are_reported_and_the_shell_works(make_engine, ext_dir, capsys):
    write_module(ext_dir, "bx_ext_dep", "import bx_dependency_that_is_missing\n")
    write_module(ext_dir, "bx_ext_raises", "def install(engine):\n    raise RuntimeError('no config')\n")
    engine = make_engine(extensions=["bx_ext_dep", "bx_ext_raises"])
    err = capsys.readouterr().err
    assert "extension bx_ext_dep failed to load: ModuleNotFoundError" in err
    assert "extension bx_ext_raises failed to load: RuntimeError: no config" in err
    assert engine.show("1 + 1") == "2"


TARGET = b"""
local shell = require("bioxen.shell").current()
local received = {}
remote = {
  name = "vm1",
  eval = function(src)
    received[#received + 1] = src
    if src == "fail" then
      return {ok = false, kind = "error", error = "vm:1: boom", traceback = "stack traceback:\\n\\tvm:1: in main chunk"}
    end
    if src == "chatty" then
      io.write("streamed\\n")
      return {ok = true, values = {n = 2, "done", nil}}
    end
    if src == "raise" then error("target crashed", 0) end
    if src == "wait" then return wait_vm() end
    return {ok = true, values = {n = 1, {answer = 42}}}
  end,
  complete = function(text) return {"remote_fn", "remote_var"} end,
}
function received_inputs() return received end
"""


def attach(engine):
    engine.lua.execute(TARGET)
    engine.lua.execute(b'require("bioxen.shell").current().set_target(remote)')


def test_eval_target_values_errors_and_output(make_engine):
    engine = make_engine()
    attach(engine)
    assert engine.prompt_name() == "vm1"
    assert engine.show("anything") == "{answer = 42}"
    result = engine.eval_line("fail")
    assert (result.kind, result.message) == ("error", b"vm:1: boom")
    assert b"vm:1: in main chunk" in result.traceback
    assert engine.show("chatty") == '"done"\tnil'
    assert engine.take_output() == b"streamed\n"
    result = engine.eval_line("raise")
    assert result.kind == "error" and result.message == b"target crashed"
    # completion goes to the target, replacing the trailing identifier path
    assert engine.complete("x = rem") == [("remote_fn", -3, "vm1"), ("remote_var", -3, "vm1")]


def test_meta_commands_and_underscore_stay_local(make_engine):
    engine = make_engine()
    attach(engine)
    engine.show("anything")
    assert ":help" in engine.show(":help")
    engine.lua.execute(b'require("bioxen.shell").current().set_target(nil)')
    assert engine.prompt_name() is None
    assert engine.show("_.answer") == "42"  # the target's value, kept locally
    assert engine.show("received_inputs()") == '{"anything"}'


def test_target_sees_ctrl_c_through_interrupted(make_engine):
    engine = make_engine()

    waiting = threading.Event()

    def wait_vm():
        waiting.set()
        wait_for(engine.interrupted, "the interrupt flag")
        return engine.to_lua({"ok": False, "kind": "interrupted", "error": "interrupted!"})

    engine.set_global("wait_vm", wait_vm)
    attach(engine)
    with when(waiting.is_set, engine.interrupt, "the target to wait"):
        result = engine.eval_line("wait")
    assert result.kind == "interrupted"


def test_bad_targets_are_rejected(make_engine):
    engine = make_engine()
    with pytest.raises(engine.lupa.LuaError, match="set_target"):
        engine.lua.execute(b'require("bioxen.shell").current().set_target{name = "x"}')
