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
