-- Pseudonymise personal data before it leaves the source system.
function transform(data, attributes)
  if data.user_id ~= nil then
    data.user_id = hash_sha256(data.user_id)   -- stable pseudonym, still joinable
  end
  data.email = mask_email(data.email)           -- alice@example.com -> a***@example.com
  data.phone = mask_phone(data.phone)           -- +1 555-123-4567 -> +* ***-***-4567
  data.birth_date = mask_year_only(data.birth_date)  -- 1990-05-17 -> 1990-01-01
  data.name = nil
  attributes.pii = "masked"
  return result(data, attributes)
end
