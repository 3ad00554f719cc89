-- Argo CD health of an auren.io/AurenRuntime (Lua 5.1, run by Argo CD with the live object
-- as `obj`). Every phase of the operator's status maps to an Argo CD health status:
--   Healthy                          -> Healthy
--   Progressing, Analyzing, Promoting -> Progressing
--   Paused                           -> Suspended   (waiting for a human: promote/abort/retry)
--   RolledBack, stable available     -> Healthy     (the bad candidate is out; production is fine)
--   RolledBack, no stable available  -> Degraded
--   Degraded, InvalidSpec            -> Degraded
-- No status yet, or a spec generation the operator has not observed yet -> Progressing.
local hs = {}

local function waiting(detail)
  hs.status = "Progressing"
  hs.message = "Waiting for controller: " .. detail
  return hs
end

-- "<Phase> (<reason>): <message>", from the operator's own explanation of the phase.
local function explain(st)
  local text = st.phase
  if st.reason ~= nil and st.reason ~= "" then
    text = text .. " (" .. st.reason .. ")"
  end
  if st.message ~= nil and st.message ~= "" then
    text = text .. ": " .. st.message
  end
  return text
end

local function condition(st, kind)
  if st.conditions == nil then
    return nil
  end
  for _, c in ipairs(st.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function hash(r)
  return r and r.hash or "?"
end

local st = obj.status
if st == nil then
  return waiting("no status yet")
end
local generation = obj.metadata and obj.metadata.generation
if st.observedGeneration == nil then
  return waiting("no observed generation yet")
end
if generation ~= nil and st.observedGeneration < generation then
  return waiting("generation " .. generation .. " not observed yet (observed " .. st.observedGeneration .. ")")
end

local phase = st.phase
if phase == nil then
  return waiting("no phase yet")
end

if phase == "Healthy" then
  hs.status = "Healthy"
elseif phase == "Progressing" or phase == "Analyzing" or phase == "Promoting" then
  hs.status = "Progressing"
elseif phase == "Paused" then
  hs.status = "Suspended"
elseif phase == "Degraded" or phase == "InvalidSpec" then
  hs.status = "Degraded"
elseif phase == "RolledBack" then
  -- Production is served by the stable release: healthy, not Degraded, even though Git asks for
  -- the rejected image. Degraded only if the stable release is not available either.
  local available = condition(st, "Available")
  if st.stable ~= nil and (available == nil or available.status == "True") then
    hs.status = "Healthy"
    hs.message = "Candidate " .. hash(st.rejected) .. " was rolled back; stable " .. hash(st.stable)
      .. " serves all traffic. " .. explain(st)
  else
    hs.status = "Degraded"
    hs.message = "Candidate " .. hash(st.rejected) .. " was rolled back and no stable release is available. "
      .. explain(st)
  end
  return hs
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase) .. " (is this health script older than the operator?)"
  return hs
end
hs.message = explain(st)
return hs
