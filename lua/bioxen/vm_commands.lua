--- The shell's VM meta-commands: :vms, :attach NAME, :detach (docs/vms.md).
--
-- Registered through the shell's command registry by bioxen_shell/vm/bindings.py, which
-- passes the `vm` API and the host functions.  Runs on Lua 5.1-5.4 and LuaJIT.

local commands = require("bioxen.shell.commands")
local wire = require("bioxen.wire")

local M = {}

function M.install(api, host)
  local h_eval, h_complete, h_vms_table = host.eval, host.complete, host.vms_table
  local decode, wire_count = wire.decode, wire.count
  local counter = 0

  local function names(partial)
    local out = {}
    for _, v in ipairs(api.list()) do
      if v.name:sub(1, #partial) == partial then out[#out + 1] = v.name end
    end
    table.sort(out)
    return out
  end

  commands.register {
    name = "vms",
    usage = ":vms",
    help = "List the VMs: name, type, profile, status, created, uptime, pid or host.",
    run = function()
      local ok, text, _, msg = h_vms_table()
      if not ok then error(msg, 0) end
      return text
    end,
  }

  -- An eval target for the shell: each line typed goes to the VM as a REPL chunk.
  local function target_for(v)
    local uid, name = v._uid, v.name
    return {
      name = name,
      eval = function(src)
        counter = counter + 1
        local ok, a, b, c = h_eval(uid, src, "{0;}", "=" .. name .. "[" .. counter .. "]")
        if not ok then return { ok = false, kind = a, error = b, traceback = c } end
        local vals = decode(a)
        local n = wire_count(vals)
        local out = { n = n }
        for i = 1, n do out[i] = vals[i] end
        return { ok = true, values = out }
      end,
      complete = function(text)
        local ok, list = h_complete(uid, text)
        if not ok then return {} end
        return (decode(list))
      end,
    }
  end

  commands.register {
    name = "attach",
    usage = ":attach NAME",
    help = "Send what you type to VM NAME (Ctrl-C interrupts its call; :detach returns).",
    run = function(shell, argstr)
      local name = argstr:match("^%s*(%S+)%s*$")
      if not name then error("usage: :attach NAME (VMs: " .. table.concat(names(""), ", ") .. ")", 0) end
      local v = api.get(name)
      if not v then
        error("no VM named " .. name .. " (VMs: " .. (table.concat(names(""), ", ") ~= "" and
          table.concat(names(""), ", ") or "none") .. ")", 0)
      end
      local status = v:status()
      if status ~= "running" and status ~= "busy" then
        error("VM " .. name .. " is " .. status .. " (:restart it with vm.get('" .. name .. "'):restart())", 0)
      end
      shell.set_target(target_for(v))
      return "attached to " .. name .. "; :detach returns to the shell"
    end,
    complete = function(shell, partial) return names(partial) end,
  }

  commands.register {
    name = "detach",
    usage = ":detach",
    help = "Stop sending input to the attached VM.",
    run = function(shell)
      if not shell.target then return "not attached" end
      local name = shell.target.name
      shell.set_target(nil)
      return "detached from " .. name
    end,
  }
end

return M
