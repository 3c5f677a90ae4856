-- Append-only MongoDB sink: drop the source _id so every change is inserted as a new
-- document (write_mode = "insert") instead of colliding with the previous version.
-- The original id is kept as a field and an attribute for lineage.
function transform(data, attributes)
  local id = data._id
  if id ~= nil then
    data.source_id = id                    -- {"$oid": "..."} stays an ObjectId
    if type(id) == "table" and id["$oid"] then
      attributes.source_id = id["$oid"]
    elseif type(id) ~= "table" then
      attributes.source_id = tostring(id)
    end
    data._id = nil
  end
  data.captured_at = { ["$date"] = { ["$numberLong"] = tostring(timestamp_ms()) } }
  return result(data, attributes)
end
