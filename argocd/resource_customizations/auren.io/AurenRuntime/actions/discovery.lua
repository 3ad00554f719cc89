-- Which AUREN controls Argo CD offers for an AurenRuntime, mirroring when the operator acts on
-- them (operator/src/rollout/decide.rs): promote and abort need a release in flight (a
-- candidate beside a stable release); retry restarts a paused analysis or tries a rolled-back
-- release again.
local actions = {}
local st = obj.status or {}
local in_flight = st.candidate ~= nil and st.stable ~= nil

actions["promote"] = { ["disabled"] = not (in_flight and st.phase ~= "Promoting") }
actions["abort"] = { ["disabled"] = not in_flight }
actions["retry"] = {
  ["disabled"] = not ((st.phase == "Paused" and st.analysis ~= nil) or st.rejected ~= nil)
}
return actions
