-- wrk script: v2 PUT of 256-byte values over 1,000 keys per thread, as a form body (what etcd clients send).
-- With DELAY_MS in the environment each connection pauses that long between requests (a paced load, for the soak);
-- with UNIQUE=1 every request writes a new key (a growing key space, for bench/cluster/memory).
local counter = 0
local id = 0
local pause = tonumber(os.getenv("DELAY_MS") or "")
local unique = os.getenv("UNIQUE") == "1"
function setup(thread)
  thread:set("tid", id)
  id = id + 1
end
wrk.method = "PUT"
wrk.body = "value=" .. string.rep("x", 256)
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
request = function()
  counter = counter + 1
  return wrk.format(nil, "/v2/keys/bench/t" .. tostring(tid) .. "-" .. (unique and counter or counter % 1000))
end
if pause then
  function delay()
    return pause
  end
end
