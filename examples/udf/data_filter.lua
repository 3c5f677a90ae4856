-- Keep active products with a valid price and reshape them; drop everything else.
local DEPARTMENTS = {
  electronics = "technology", computers = "technology", phones = "technology",
  clothing = "fashion", shoes = "fashion", accessories = "fashion",
  food = "grocery", beverages = "grocery", snacks = "grocery",
  furniture = "home", decor = "home", garden = "home",
}

function transform(product, attributes)
  if not product.active or type(product.price) ~= "number" or product.price <= 0 then
    return nil  -- filtered: the event is dropped
  end

  local out = { id = product.id, name = product.name, price = product.price }
  if product.price < 10 then out.price_tier = "budget"
  elseif product.price < 50 then out.price_tier = "standard"
  elseif product.price < 200 then out.price_tier = "premium"
  else out.price_tier = "luxury" end

  local discount = product.discount_percentage
  if type(discount) == "number" and discount > 0 then
    out.discounted_price = product.price * (1 - discount / 100)
    out.savings = product.price - out.discounted_price
  end

  if type(product.category) == "string" then
    out.category = string.upper(product.category)
    out.department = DEPARTMENTS[product.category] or "general"
  end

  if type(product.quantity) == "number" then
    local q = product.quantity
    out.in_stock = q > 0
    out.stock_level = q == 0 and "out_of_stock" or q < 10 and "low" or q < 50 and "medium" or "high"
  end

  attributes.price_tier = out.price_tier
  attributes.department = out.department or "general"
  return result(out, attributes)
end
