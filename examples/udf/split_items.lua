-- Fan-out: one event per order line, each carrying the order id.
function transform(order, attributes)
  local out = {}
  for i, item in ipairs(order.items or {}) do
    local line = { order_id = order.order_id, line = i, sku = item.sku, qty = item.qty }
    local attrs = { order_id = tostring(order.order_id), line = i }
    out[#out + 1] = result(line, attrs)
  end
  return out  -- an empty list drops the event
end
