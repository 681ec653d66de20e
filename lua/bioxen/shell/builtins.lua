-- The shell's own meta-commands.  Each is one `register` call; extensions add
-- theirs the same way (see docs/extending.md).

local commands = require("bioxen.shell.commands")
local complete = require("bioxen.shell.complete")
local pretty = require("bioxen.runner.pretty")
local funcsource = require("bioxen.funcsource")
local doc = require("bioxen.shell.doc")

local register = commands.register

-- Split an argument string into words; "double" and 'single' quotes group.
local function split_args(s)
  local words, i, n = {}, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c:find("%s") then
      i = i + 1
    else
      local word = ""
      while i <= n and not s:sub(i, i):find("%s") do
        c = s:sub(i, i)
        if c == '"' or c == "'" then
          local close = s:find(c, i + 1, true)
          if not close then error("unterminated " .. c .. " in arguments", 0) end
          word = word .. s:sub(i + 1, close - 1)
          i = close + 1
        else
          word = word .. c
          i = i + 1
        end
      end
      words[#words + 1] = word
    end
  end
  return words
end
commands.split_args = split_args

-- A function: its signature and doc (bioxen.shell.doc, as the signature line
-- shows them while typing a call), where it is defined, its source if short.
local function describe_function(lines, name, fn)
  local signature = doc.signature(fn, name)
  if signature then lines[#lines + 1] = "  " .. signature end
  local info = debug.getinfo(fn, "S")
  if info.what ~= "Lua" then
    lines[#lines + 1] = "  a built-in function"
    local text = doc.function_doc(fn)
    if text then lines[#lines + 1] = "  " .. text end
    return
  end
  lines[#lines + 1] = "  defined at " .. info.short_src .. ":" .. info.linedefined
  local comment = funcsource.doc_comment(fn)
  if comment then lines[#lines + 1] = comment end
  local src = funcsource.source_of(fn)
  if src and select(2, src:gsub("\n", "")) < 30 then lines[#lines + 1] = src end
end

-- A table: its doc (a __doc or _DESCRIPTION field, else the leading comment
-- of its module file), the submodules of a lazy module, its fields.
local function describe_table(shell, lines, t)
  local text = rawget(t, "__doc") or rawget(t, "_DESCRIPTION")
  if type(text) ~= "string" then text = doc.module_doc(t) end
  if text then lines[#lines + 1] = text end
  local mods = rawget(t, "_modules")
  if type(mods) == "table" and type((getmetatable(t) or {}).__index) == "function" then
    local names = {}
    for k in pairs(mods) do if type(k) == "string" then names[#names + 1] = k end end
    table.sort(names)
    lines[#lines + 1] = "modules (loaded on first use): " .. table.concat(names, ", ")
  end
  lines[#lines + 1] = pretty.format(t, { depth = 1, items = 40, width = shell.options.width })
end

local function describe(shell, name)
  local value = complete.lookup(shell, name)
  if value == nil then return name .. " is nil" end
  local lines = { name .. ": " .. type(value) }
  if type(value) == "function" then
    describe_function(lines, name, value)
  elseif type(value) == "table" then
    describe_table(shell, lines, value)
  else
    lines[#lines + 1] = pretty.format(value, shell.options)
  end
  return table.concat(lines, "\n")
end

local INTRO = [[
bioxen: Lua with sequence tools and VMs.  Type Lua; expressions print their value,
`_` is the last result.  Enter runs a complete chunk, otherwise it opens a new line.
Keys: Tab completes, Ctrl-R searches history, Ctrl-C clears the line or interrupts
running code, Ctrl-D exits.

Commands:]]

register {
  name = "help",
  usage = ":help [command | name]",
  help = "Show this help, a command's help, or describe a Lua value (e.g. :help string.rep).",
  aliases = { "h", "?" },
  run = function(shell, argstr)
    if argstr == "" then
      local lines = { INTRO }
      for _, spec in ipairs(commands.list()) do
        lines[#lines + 1] = string.format("  %-26s %s", spec.usage, spec.help)
      end
      return table.concat(lines, "\n")
    end
    local spec = commands.get((argstr:gsub("^:", "")))
    if spec then return spec.usage .. "\n  " .. spec.help end
    return describe(shell, argstr)
  end,
  complete = function(shell, partial)
    local out = commands.names(partial)
    local res = complete.complete(shell, partial)
    local stem = partial:sub(1, #partial - res.replace)
    for _, item in ipairs(res.items) do out[#out + 1] = stem .. item.text end
    return out
  end,
}

register {
  name = "run",
  usage = ":run FILE [ARGS...]",
  help = "Run a Lua script in this shell (its globals stay); `arg` and `...` hold the arguments.",
  run = function(shell, argstr)
    local words = split_args(argstr)
    if #words == 0 then error("usage: :run FILE [ARGS...]", 0) end
    local path = table.remove(words, 1)
    local home = os.getenv("HOME")
    if home and path:sub(1, 2) == "~/" then path = home .. path:sub(2) end
    local res = shell:run_file(path, words)
    if res.kind == "exit" and shell.host.cancel_exit then
      -- a script written for `bioxen run` ends itself, not the session
      shell.host.cancel_exit()
      return "script exited with status " .. tostring(shell.last_exit or 0)
    end
    return res
  end,
  complete = function(shell, partial) return complete.complete_path(shell, partial) end,
}

register {
  name = "source",
  usage = ":source NAME",
  help = "Print the Lua source of a function defined in the REPL, with -e or in a script.",
  run = function(shell, argstr)
    local fn = complete.lookup(shell, argstr)
    if type(fn) ~= "function" then error(argstr .. " is not a function", 0) end
    local src, why = funcsource.source_of(fn)
    if not src then error(why, 0) end
    return src
  end,
  complete = function(shell, partial)
    local res = complete.complete(shell, partial)
    local stem, out = partial:sub(1, #partial - res.replace), {}
    for _, item in ipairs(res.items) do out[#out + 1] = stem .. item.text end
    return out
  end,
}

register {
  name = "reset",
  usage = ":reset",
  help = "Start over with a fresh Lua state (globals, locals and modules are dropped; VMs are destroyed).",
  run = function(shell) shell:request("reset") end,
}

register {
  name = "runtime",
  usage = ":runtime [NAME]",
  help = "Show the Lua runtime, or switch to another one (a fresh state, like :reset).",
  run = function(shell, argstr)
    local names = shell.host.runtimes()
    if argstr == "" then
      local lines = { "runtime: " .. shell.runtime .. " (" .. _VERSION
        .. (type(jit) == "table" and (", " .. jit.version) or "") .. ")", "available:" }
      for _, n in ipairs(names) do lines[#lines + 1] = "  " .. n end
      return table.concat(lines, "\n")
    end
    shell:request("runtime", argstr)
  end,
  complete = function(shell, partial)
    local out = {}
    for _, n in ipairs(shell.host.runtimes()) do
      if n:sub(1, #partial) == partial then out[#out + 1] = n end
    end
    return out
  end,
}

register {
  name = "history",
  usage = ":history [N]",
  help = "Show the last N inputs (default 20) from the persistent history.",
  run = function(shell, argstr)
    local n = tonumber(argstr) or 20
    local entries = shell.host.history(n)
    if #entries == 0 then return "(no history)" end
    local lines = {}
    for i, entry in ipairs(entries) do
      lines[i] = string.format("%4d  %s", i, (entry:gsub("\n", "\n      ")))
    end
    return table.concat(lines, "\n")
  end,
}

register {
  name = "time",
  usage = ":time CODE",
  help = "Run CODE and report wall-clock and CPU time.",
  run = function(shell, argstr)
    local clock = shell.host.clock
    local wall0, cpu0 = clock(), os.clock()
    local res = shell:eval_input(argstr)
    local note = string.format("time: %.3f s wall, %.3f s CPU", clock() - wall0, os.clock() - cpu0)
    if res.ok then
      res.output = (res.output ~= "" and (res.output .. "\n") or "") .. note
    else
      res.traceback = ((res.traceback and res.traceback ~= "") and (res.traceback .. "\n") or "") .. note
    end
    return res
  end,
}

-- `:set` shows and changes the printing options (numbers, Lua side) and the settings a
-- front end registered with commands.setting (the colour style, Python side).
local function show_settings(shell)
  local lines = {}
  local keys = {}
  for k in pairs(shell.options) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do lines[#lines + 1] = string.format("  %-10s %s", k, tostring(shell.options[k])) end
  for _, k in ipairs(commands.setting_names()) do
    lines[#lines + 1] = string.format("  %-10s %s", k, tostring(commands.get_setting(k).get()))
  end
  return table.concat(lines, "\n")
end

local function option_names()
  local out = commands.setting_names()
  for k in pairs(pretty.defaults) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function with_prefix(list, partial)
  local out = {}
  for _, w in ipairs(list) do
    if w:sub(1, #partial) == partial then out[#out + 1] = w end
  end
  return out
end

register {
  name = "set",
  usage = ":set [NAME [VALUE]]",
  help = "Show or change printing options (depth, items, string_max, width, indent) and the colour style.",
  run = function(shell, argstr)
    if argstr == "" then return show_settings(shell) end
    local name, value = argstr:match("^(%S+)%s*(%S*)$")
    if not name then error("usage: :set NAME VALUE", 0) end
    local setting = commands.get_setting(name)
    if pretty.defaults[name] == nil and not setting then
      error("unknown option '" .. name .. "' (options: " .. table.concat(option_names(), ", ") .. ")", 0)
    end
    if value == "" then  -- :set NAME shows one value
      return name .. " " .. tostring(setting and setting.get() or shell.options[name])
    end
    if setting then
      local problem = setting.set(value)
      if problem then error(name .. ": " .. tostring(problem), 0) end
      return
    end
    local n = tonumber(value)
    if not n or n < 1 then error(name .. " must be a positive number", 0) end
    shell.options[name] = math.floor(n)
  end,
  complete = function(_, partial, args)
    local name = (args or ""):match("^(%S+)%s")
    if not name then return with_prefix(option_names(), partial) end
    local setting = commands.get_setting(name)
    if setting and setting.values then return with_prefix(setting.values(), partial) end
    return {}
  end,
}

-- Registered on every runtime, so that :help's list and the command agree; elsewhere it
-- says what it needs instead of "unknown command".
register {
  name = "jit",
  usage = ":jit [on|off]",
  help = "LuaJIT only: also compile the code you type (on: fastest, but Ctrl-C cannot stop a compiled loop) or not (off, the default).",
  run = function(shell, argstr)
    if type(jit) ~= "table" then
      error(":jit needs LuaJIT; this runtime is " .. _VERSION .. " (switch with :runtime luajit)", 0)
    end
    if argstr == "on" then
      shell.jit_user_code = true
    elseif argstr == "off" then
      shell.jit_user_code = false
    elseif argstr ~= "" then
      error("usage: :jit [on|off]", 0)
    end
    return "code you type is " .. (shell.jit_user_code and "JIT-compiled (Ctrl-C may not stop loops)"
      or "interpreted (Ctrl-C always stops it); library code is JIT-compiled")
  end,
  complete = function(_, partial)
    local out = {}
    for _, w in ipairs({ "on", "off" }) do
      if w:sub(1, #partial) == partial then out[#out + 1] = w end
    end
    return out
  end,
}

register {
  name = "quit",
  usage = ":quit",
  help = "Leave bioxen (Ctrl-D does the same).",
  aliases = { "q", "exit" },
  run = function(shell) shell:request("quit") end,
}

return true
