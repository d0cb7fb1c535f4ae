-- wrk script for the soak: v2 PUTs of 256-byte values over 1,000 keys per thread, each connection pausing DELAY_MS
-- (environment, default 20) between requests, so the rate stays near connections × 1000 / (DELAY_MS + latency).
local counter = 0
local id = 0
local pause = tonumber(os.getenv("DELAY_MS") or "20")
function setup(thread)
  thread:set("tid", id)
  id = id + 1
end
wrk.method = "PUT"
wrk.body = "value=" .. string.rep("x", 256)
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
function delay()
  return pause
end
request = function()
  counter = counter + 1
  return wrk.format(nil, "/v2/keys/soak/t" .. tostring(tid) .. "-" .. (counter % 1000))
end
