"""What the `vm` API says when it fails: vm.create's prefix once, and a w:eval whose values
cannot travel saying that its code ran."""
from __future__ import annotations

import io

import pytest

from bioxen_shell.engine import Engine


@pytest.fixture(scope="module")
def shell():
    out = io.BytesIO()
    sh = Engine("lua54", stdout=out, extensions=["bioxen_shell.vm.bindings"])
    yield sh
    sh.close()


def _error(shell, line: str) -> str:
    r = shell.eval_line(line)
    assert not r.ok, r
    return r.message.decode()


@pytest.mark.parametrize("options,start", [
    ("{profle = 'x'}", "vm.create{…}: profle: unknown key for type='local', did you mean 'profile'? "
                       "(expected one of: name, profile, type, count, runtime)"),
    ("{profile = 'nope'}", "vm.create: profile 'nope' not found"),
    ("{type = 'nope'}", "vm.create: type 'nope' is not known"),
    ("{runtime = 'zz'}", "vm.create{…}: runtime: expected one of"),  # a bad option: the schema's format
    ("{count = 0}", "vm.create{…}: count: expected a number of VMs from 1 to 1024, got 0"),
    ("{name = 'c', count = 2, bogus = 1}",
     "vm.create: 2 of 2 VMs failed to start (all 2 were removed); first: c1: vm.create{…}: bogus: unknown key"),
])
def test_create_errors_say_vm_create_once(shell, options, start):
    message = _error(shell, f"vm.create{options}")
    assert message.startswith(start), message
    assert message.count("vm.create:") == (1 if start.startswith("vm.create:") else 0), message


def test_eval_of_values_that_cannot_travel_says_the_code_ran(shell):
    shell.eval_line("w = vm.create{name = 'enc'}")
    try:
        message = _error(shell, "w:eval('ran = (ran or 0) + 1; return print')")
        assert message == ("cannot encode a function at value #1 "
                           "(the code ran: what it changed in the VM stays changed)")
        assert shell.eval_line("w:eval('return ran')").output == b"1"  # it did
        shell.eval_line("w:eval('function f() return coroutine.create(print) end')")
        assert "(the code ran:" in _error(shell, "w:call('f')")
        # reading a value runs no code of the user's: no such note
        assert _error(shell, "w:get('print')") == "cannot encode a function at value #1"
    finally:
        shell.eval_line("w:destroy()")
