-- Add metadata about the event to its attributes; the data passes through unchanged.
function transform(data, attributes)
  local field_count = 0
  local data_type = type(data)
  if data_type == "table" then
    if is_array(data) then
      data_type = "array"
      field_count = #data
    else
      data_type = "object"
      for _ in pairs(data) do field_count = field_count + 1 end
    end
  end

  attributes.field_count = field_count          -- numbers become strings
  attributes.data_type = data_type
  if field_count == 0 then attributes.quality = "empty"
  elseif field_count < 5 then attributes.quality = "minimal"
  elseif field_count < 20 then attributes.quality = "standard"
  else attributes.quality = "complex" end

  return result(data, attributes)
end
