"""Fixtures for the agent tests: real agent processes on every runtime.

``RUNTIMES`` lists the lupa worker runtimes and the stock binaries; a stock binary that is
not installed skips (a failure under BIOXEN_REQUIRE_SYSTEM=1).
"""
from __future__ import annotations

import importlib

import pytest

from tests.agent.client import LUPA_RUNTIMES, STOCK_BINARIES, Agent
from tests.system import require_binary

ALL_RUNTIMES = LUPA_RUNTIMES + STOCK_BINARIES


def require_runtime(runtime: str) -> None:
    if runtime in STOCK_BINARIES:
        require_binary(runtime)
    else:
        try:
            importlib.import_module(f"lupa.{runtime}")
        except ImportError:
            pytest.skip(f"this lupa build has no {runtime} runtime (pip install 'lupa>=2.4')")


@pytest.fixture
def start_agent():
    """start_agent(runtime, **options) -> a running Agent, closed after the test."""
    started: list[Agent] = []

    def start(runtime: str, **options) -> Agent:
        require_runtime(runtime)
        agent = Agent(runtime, **options)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.close()




@pytest.fixture(scope="module")
def shared_agents():
    """Agents reused across one module's tests (plain configuration only)."""
    agents: dict[str, Agent] = {}
    yield agents
    for agent in agents.values():
        agent.close()


@pytest.fixture(params=ALL_RUNTIMES)
def agent(request, shared_agents) -> Agent:
    """A configured, unsandboxed agent on each runtime, shared by the module's tests."""
    runtime = request.param
    require_runtime(runtime)
    a = shared_agents.get(runtime)
    if a is None or a.proc.poll() is not None:
        a = Agent(runtime)
        a.configure(name=f"test-{runtime}")
        shared_agents[runtime] = a
    return a
