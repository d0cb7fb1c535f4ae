-- wrk script: v2 PUT of 256-byte values over 1,000 keys, as a form body (what etcd clients send).
local counter = 0
wrk.method = "PUT"
wrk.body = "value=" .. string.rep("x", 256)
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
request = function()
  counter = counter + 1
  return wrk.format(nil, "/v2/keys/bench/k" .. (counter % 1000))
end
