"""Runtime names, aliases and loading."""
from __future__ import annotations

import pytest

from bioxen_shell.runtimes import DEFAULT_RUNTIME, RUNTIMES, UnknownRuntime, canonical_name, load_lupa


@pytest.mark.parametrize(
    "alias, name",
    [("lua54", "lua54"), ("5.4", "lua54"), ("54", "lua54"), ("lua5.4", "lua54"), ("LUA5.1", "lua51"),
     ("luajit21", "luajit"), ("jit", "luajit"), ("luajit", "luajit"), ("5.5", "lua55")],
)
def test_aliases(alias, name):
    assert canonical_name(alias) == name


def test_unknown_runtime_lists_valid_names():
    with pytest.raises(UnknownRuntime) as info:
        load_lupa("lua6")
    message = str(info.value)
    assert "'lua6'" in message
    for name in RUNTIMES:
        assert name in message


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_each_runtime_loads_the_right_lua(name):
    module = load_lupa(name)
    impl = module.LuaRuntime().lua_implementation
    expected = "LuaJIT 2.1" if name == "luajit" else f"Lua {name[3]}.{name[4]}"
    assert impl.startswith(expected)


def test_default_runtime_is_valid():
    assert DEFAULT_RUNTIME in RUNTIMES
