"""The errors of VM requests, one module for every layer (session, backends, the Python API).

``VMError`` carries the protocol's error ``kind`` (docs/protocol.md, "Replies") or a
host-side one (``crashed``, ``timeout``, ``state``, ``protocol``).
"""
from __future__ import annotations

__all__ = ["VMError", "VMCrashed", "VMTimeout", "VMInterrupted", "VMStateError", "VMProtocolError",
           "VMRestarted", "TimeoutRestarted", "InterruptRestarted"]


class VMError(Exception):
    """A request failed inside the VM.  ``kind`` is the protocol's error kind
    (``error``, ``syntax``, ``interrupted``, ``cpu_limit``, ``memory``, ``encode``, ``protocol``)
    or one of the host-side kinds ``crashed``, ``timeout``, ``state``."""

    def __init__(self, message: str, *, kind: str = "error", traceback: str = "", vm: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.traceback = traceback or ""
        self.vm = vm
        #: output the failed request printed before it failed (pipelined requests)
        self.output = b""


class VMCrashed(VMError):
    """The VM's agent is gone: killed, crashed, or the connection dropped."""


class VMTimeout(VMError):
    """The call ran longer than its timeout and was stopped."""


class VMInterrupted(VMError):
    """The call was interrupted (Ctrl-C)."""


class VMStateError(VMError):
    """The VM is not in a state that allows the operation (stopped, destroyed)."""


class VMProtocolError(VMCrashed):
    """The agent broke the protocol: a malformed frame or payload, a length over its limit, or
    a stall in the middle of a frame (``stall_limit``).  ``kind`` is ``"protocol"``.  The agent
    is killed and the VM is crashed; ``:restart()`` starts a fresh one."""


class VMRestarted(VMCrashed):
    """The call hit a limit (or Ctrl-C) and its agent did not answer the interrupt (it ran code
    the interrupt cannot reach: JIT-compiled code, one long C call), so the agent was killed
    and a fresh one started.  The VM runs again, but its state (globals) is gone.  ``kind``
    names what stopped the call: ``timeout``, ``cpu_limit`` or ``interrupted``.  Also a
    :class:`VMTimeout` / :class:`VMInterrupted` for those kinds."""


class TimeoutRestarted(VMRestarted, VMTimeout):
    pass


class InterruptRestarted(VMRestarted, VMInterrupted):
    pass
