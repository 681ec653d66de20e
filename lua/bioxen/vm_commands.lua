--- The shell's VM meta-commands: :vms, :attach NAME, :detach (docs/vms.md).
--
-- Registered through the shell's command registry by bioxen_shell/vm/bindings.py, which
-- passes the `vm` API and the host functions.  Runs on Lua 5.1-5.4 and LuaJIT.

local commands = require("bioxen.shell.commands")
local wire = require("bioxen.wire")

local M = {}

function M.install(api, host)
  local h_repl, h_is_complete, h_complete, h_vms_table = host.repl, host.is_complete, host.complete, host.vms_table
  local decode, encode = wire.decode, wire.encode

  -- A one-line error for the user (no traceback: it is not a failure of running code).
  local function usage_error(text)
    return { ok = false, kind = "error", message = text }
  end

  local function names(partial)
    local out = {}
    for _, v in ipairs(api.list()) do
      if v.name:sub(1, #partial) == partial then out[#out + 1] = v.name end
    end
    table.sort(out)
    return out
  end

  local function known()
    local list = table.concat(names(""), ", ")
    return list ~= "" and ("VMs: " .. list) or "no VMs yet; create one with vm.create{name='w1'}"
  end

  commands.register {
    name = "vms",
    usage = ":vms [NAME]",
    help = "List the VMs (name, type, profile, status, created, uptime, pid or host); with a NAME, that VM's :info().",
    run = function(shell, argstr)
      local name = argstr and argstr:match("^%s*(%S+)%s*$")
      if name then
        local v = api.get(name)
        if not v then return usage_error("no VM named " .. name .. " (" .. known() .. ")") end
        return require("bioxen.runner.pretty").format(v:info(), shell.options)
      end
      local ok, text, _, msg = h_vms_table()
      if not ok then error(msg, 0) end
      return text
    end,
    complete = function(shell, partial) return names(partial) end,
  }

  -- The reply's values (see bioxen.vm: the payload, where its values start, their blobs).
  local function reply_values(a, b, c)
    return decode(a, b, "value", c)
  end

  -- An eval target for the shell: each line typed runs in the VM's own REPL session (the
  -- agent's, bioxen.runner.session: the shell's), printed there as the shell prints.
  local function target_for(v)
    local uid, name = v._uid, v.name
    return {
      name = name,
      eval = function(src, options)
        local ok, a, b, c = h_repl(uid, src, encode(options or {}))
        if not ok then return { ok = false, kind = a, error = b, traceback = c } end
        return { ok = true, output = reply_values(a, b, c)[1] }
      end,
      -- Judged by the VM's own Lua; nil (the shell judges) when the VM cannot answer.
      is_complete = function(src, indent)
        local ok, a, b, c = h_is_complete(uid, src, indent)
        if not ok then return nil end
        local vals = reply_values(a, b, c)
        return vals[1], vals[2]
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
      if not name then return usage_error("usage: :attach NAME (" .. known() .. ")") end
      local v = api.get(name)
      if not v then return usage_error("no VM named " .. name .. " (" .. known() .. ")") end
      local status = v:status()
      if status ~= "running" and status ~= "busy" then
        return usage_error("VM " .. name .. " is " .. status .. "; restart it first: vm.get('" .. name .. "'):restart()")
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
