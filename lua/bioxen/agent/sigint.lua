--- SIGINT for the agent under stock LuaJIT on Linux (docs/agent.md, "Limits and interrupts"):
--- SIGINT stays blocked and the agent's count hook polls for it with sigpending, so any number
--- of SIGINTs interrupt safely — never in the middle of a frame, never killing the process.
--- (Elsewhere the portable fallback is lua.c's one-shot handler; under lupa, the host's poll.)
---
---   local pending, drain = require("bioxen.agent.sigint").block(ffi)
---   -- pending() -> true once per SIGINT that came; drain() forgets those that came;
---   -- nil, nil where it cannot be done (SIGINT then stays as it was)
---
--- Part of the agent (its frames are the agent's).

local error, pcall = error, pcall

local M = {}

local function block(ffi)
  if ffi.os ~= "Linux" then error("only on Linux") end
  ffi.cdef[[
    typedef struct { unsigned long val[16]; } bioxen_sigset_t;
    typedef struct { long tv_sec; long tv_nsec; } bioxen_timespec_t;
    int sigemptyset(bioxen_sigset_t *set);
    int sigaddset(bioxen_sigset_t *set, int signum);
    int sigprocmask(int how, const bioxen_sigset_t *set, bioxen_sigset_t *oldset);
    int sigpending(bioxen_sigset_t *set);
    int sigismember(const bioxen_sigset_t *set, int signum);
    int sigtimedwait(const bioxen_sigset_t *set, void *info, const bioxen_timespec_t *timeout);
  ]]
  local C, SIGINT, SIG_BLOCK = ffi.C, 2, 0
  local set, pending = ffi.new("bioxen_sigset_t"), ffi.new("bioxen_sigset_t")
  local zero = ffi.new("bioxen_timespec_t")
  C.sigemptyset(set)
  C.sigaddset(set, SIGINT)
  if C.sigprocmask(SIG_BLOCK, set, nil) ~= 0 then error("sigprocmask failed") end
  local function pending_sigint()
    C.sigpending(pending)
    if C.sigismember(pending, SIGINT) == 1 then
      C.sigtimedwait(set, nil, zero)
      return true
    end
    return false
  end
  local function drain()
    while pending_sigint() do end
  end
  return pending_sigint, drain
end

function M.block(ffi)
  local ok, pending, drain = pcall(block, ffi)
  if not ok then return nil, nil end
  return pending, drain
end

return M
