"""The agent's REPL requests (an attached shell): repl, is_complete, complete, on every runtime."""
from __future__ import annotations

import pytest

from tests.agent.conftest import ALL_RUNTIMES


@pytest.mark.parametrize("runtime", ALL_RUNTIMES)
def test_repl_session_in_a_sandbox_configured_after_a_completion(start_agent, runtime):
    agent = start_agent(runtime)
    assert "print" in agent.values("complete", text="pri")[0]   # before configure: the plain globals
    agent.configure(sandbox=True, name="w")
    assert agent.values("repl", code="local x = 41") == [""]
    assert agent.values("repl", code="x + 1") == ["42"]
    assert agent.values("repl", code="_ * 2, {a = {1}}") == ['84\t{a = {1}}']
    assert agent.values("repl", code="io.open == nil, rawget(_G, 'x')") == ["true\tnil"]  # the sandbox's env
    assert agent.values("is_complete", code="for i = 1, 2 do", indent=4) == ["incomplete", 4]
    assert agent.values("is_complete", code="x = = 1") == ["invalid", 0]
    reply = agent.request("repl", code="error('boom')")
    assert reply["kind"] == "error" and reply["error"] == "w[5]:1: boom"   # is_complete names no chunk
    assert agent.values("complete", text="x") == [["x", "xpcall"]]


@pytest.mark.parametrize("runtime", ["lua5.4", "luajit", "lua54"])
def test_printing_a_value_is_user_code_under_the_limits(start_agent, runtime):
    agent = start_agent(runtime)
    agent.configure(cpu_limit=0.5)
    reply = agent.request("repl", code="setmetatable({}, {__tostring = function() while true do end end})")
    assert reply["kind"] == "cpu_limit"
    assert agent.values("repl", code="'alive'") == ['"alive"']
