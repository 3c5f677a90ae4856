-- Enrich user events with derived fields and clean them up.
function transform(data, attributes)
  data.version = "1.0"

  -- loyalty tier from the points collected
  local points = data.loyalty_points
  if type(points) == "number" then
    local tier, discount
    if points >= 10000 then tier, discount = "platinum", 20
    elseif points >= 5000 then tier, discount = "gold", 15
    elseif points >= 1000 then tier, discount = "silver", 10
    elseif points >= 100 then tier, discount = "bronze", 5
    else tier, discount = "member", 0 end
    data.tier = tier
    data.discount_percentage = discount
    data.free_shipping = points >= 1000
    data.priority_support = points >= 5000
  end

  -- derived and normalised fields
  if data.first_name and data.last_name then
    data.full_name = data.first_name .. " " .. data.last_name
  end
  if type(data.email) == "string" then
    data.email = string.lower(data.email)
  end

  -- remove sensitive fields (assigning nil deletes a key)
  data.password = nil
  data.ssn = nil
  data.credit_card = nil

  attributes.processor = "json_transform"
  if data.tier then attributes.loyalty_tier = data.tier end
  return result(data, attributes)
end
