-- Runs Argo CD resource customizations (health.lua, actions/discovery.lua, actions/*/action.lua)
-- under Lua 5.1 against their fixtures, the way Argo CD runs them: the resource as the global
-- `obj`, the script's return value as the result.
--
-- Usage: lua5.1 test.lua BUNDLE.json   (BUNDLE is written by test.sh from the YAML test files)
-- Needs lua-cjson. Exits 1 when any case fails.
local cjson = require("cjson")

-- The action scripts stamp annotations with os.date(); tests run on a fixed clock.
local CLOCK = "2026-01-10T12:00:00Z"

local function read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("*a")
  f:close()
  return s
end

-- JSON null becomes nil, as in Argo CD's conversion of the object into Lua.
local function strip_nulls(v)
  if type(v) ~= "table" then
    return v
  end
  local out = {}
  for k, x in pairs(v) do
    if x ~= cjson.null then
      out[k] = strip_nulls(x)
    end
  end
  return out
end

local function deep_equal(a, b)
  if type(a) ~= type(b) then
    return false
  end
  if type(a) ~= "table" then
    return a == b
  end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

-- Encodes with sorted keys so failure output is readable and stable.
local function show(v, indent)
  indent = indent or ""
  if type(v) ~= "table" then
    return cjson.encode(v)
  end
  local keys = {}
  for k in pairs(v) do
    keys[#keys + 1] = k
  end
  table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = indent .. "  " .. tostring(k) .. ": " .. show(v[k], indent .. "  ")
  end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end

-- Runs one script in a fresh environment with `obj` set; returns ok, result.
local function run(script, input)
  local chunk, err = loadfile(script)
  if not chunk then
    return false, "cannot load: " .. tostring(err)
  end
  local fake_os = {
    time = os.time,
    date = function(fmt, t)
      if t == nil and fmt == "!%Y-%m-%dT%H:%M:%SZ" then
        return CLOCK
      end
      return os.date(fmt, t)
    end,
  }
  local env = setmetatable({ obj = strip_nulls(input), os = fake_os }, { __index = _G })
  setfenv(chunk, env)
  return pcall(chunk)
end

local bundle = cjson.decode(read(assert(arg[1], "usage: lua5.1 test.lua BUNDLE.json")))
local passed, failed = 0, 0

local function check(name, ok, got, want)
  if ok and deep_equal(got, want) then
    passed = passed + 1
    print("  ok    " .. name)
  else
    failed = failed + 1
    print("  FAIL  " .. name)
    print("        want: " .. show(want, "        "))
    print("        got:  " .. (ok and show(got, "        ") or tostring(got)))
  end
end

for _, dir in ipairs(bundle) do
  print(dir.name)
  for _, case in ipairs(dir.health or {}) do
    local ok, hs = run(dir.dir .. "/health.lua", case.input)
    check("health  " .. case.inputPath, ok, hs, strip_nulls(case.healthStatus))
  end
  for _, case in ipairs(dir.discovery or {}) do
    local ok, actions = run(dir.dir .. "/actions/discovery.lua", case.input)
    -- Argo CD's test layout lists the expected actions as [{name, disabled}].
    local got = {}
    if ok then
      for name, a in pairs(actions) do
        got[#got + 1] = { name = name, disabled = a.disabled and true or false }
      end
      table.sort(got, function(x, y) return x.name < y.name end)
    end
    local want = strip_nulls(case.result)
    for _, a in ipairs(want) do
      a.disabled = a.disabled and true or false
    end
    table.sort(want, function(x, y) return x.name < y.name end)
    check("discovery " .. case.inputPath, ok, ok and got or actions, want)
  end
  for _, case in ipairs(dir.actions or {}) do
    local ok, out = run(dir.dir .. "/actions/" .. case.action .. "/action.lua", case.input)
    check("action  " .. case.action .. " " .. case.inputPath, ok, out, strip_nulls(case.expected))
  end
end

print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and passed > 0 and 0 or 1)
