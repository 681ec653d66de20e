"""bioxen: a Lua-scripted shell for biological sequence work.

The Python API mirrors what the shell's ``vm`` table offers::

    from bioxen_shell import VMManager, create_vm

    with VMManager() as manager:
        vm = manager.create_vm("worker1")
        print(vm.eval("return 1 + 1"))
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["VMManager", "create_vm", "__version__"]


def __getattr__(name: str):
    # The VM layer pulls in more than a plain ``bioxen -e`` needs; import it on first use
    # so the shell starts fast.
    if name in ("VMManager", "create_vm"):
        from .vm import api

        return getattr(api, name)
    raise AttributeError(f"module 'bioxen_shell' has no attribute {name!r}")
