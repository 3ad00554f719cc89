-- Argo CD action "abort": sets the annotation auren.io/abort to a new value, which rolls the
-- candidate back: traffic and consumers return to the stable release.
-- The operator acts on each value once and records it in status.acknowledged.abort, so the new
-- value must differ from the current annotation and from the acknowledged one. Only metadata
-- changes: no Git-owned spec field is touched.
local key = "auren.io/abort"
local acked = obj.status and obj.status.acknowledged and obj.status.acknowledged.abort
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local current = obj.metadata.annotations[key]
local stamp = os.date("!%Y-%m-%dT%H:%M:%SZ")
local value, n = stamp, 1
while value == current or value == acked do
  n = n + 1
  value = stamp .. "-" .. n
end
obj.metadata.annotations[key] = value
return obj
