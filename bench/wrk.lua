-- wrk script of bench/run: every request carries the next device token of
-- the file BENCH_TOKENS (lines "DEVICE_ID TOKEN"), round-robin, each thread
-- starting at its own offset. BENCH_PATH is the request path; "{id}" in it
-- becomes the device ID. BENCH_INM, when set, is sent as If-None-Match.
-- done() prints one line "STATUS code=count ..." with the answers seen.
local path = os.getenv("BENCH_PATH") or "/"
local inm = os.getenv("BENCH_INM")
local tokens = os.getenv("BENCH_TOKENS")

local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local reqs, i = {}, 0
statuses = {}

function init(args)
  for line in io.lines(tokens) do
    local id, tok = line:match("^(%S+)%s+(%S+)")
    if id then
      local h = { ["Authorization"] = "Bearer " .. tok }
      if inm and inm ~= "" then h["If-None-Match"] = inm end
      reqs[#reqs + 1] = wrk.format("GET", (path:gsub("{id}", id)), h)
    end
  end
  if #reqs == 0 then error("no tokens in " .. tokens) end
  i = (tid * 7919) % #reqs
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for k, v in pairs(s) do total[k] = (total[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(total) do parts[#parts + 1] = k .. "=" .. v end
  table.sort(parts)
  io.write("STATUS " .. table.concat(parts, " ") .. "\n")
end
