-- wrk script for benches/discovery.sh: one random discovery request per call.
--   MODE=name : GET <root>/services?ser_name=svc-N              (N in 0..NAMES-1)
--   MODE=app  : GET <root>/applications/app-XXXX/services       (XXXX in 0..APPS-1)
-- done() prints one machine-readable line:
--   RESULT <req/s> <p50 us> <p99 us> <requests> <non-2xx/3xx> <socket errors>
local mode  = os.getenv("MODE") or "name"
local root  = "/mep/mec_service_mgmt/v1"
local names = tonumber(os.getenv("NAMES") or "1000")
local apps  = tonumber(os.getenv("APPS") or "1000")

local next_id = 1
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  math.randomseed(os.time() + 7919 * (id or 0))
end

function request()
  local path
  if mode == "app" then
    path = string.format("%s/applications/app-%04d/services", root, math.random(0, apps - 1))
  else
    path = string.format("%s/services?ser_name=svc-%d", root, math.random(0, names - 1))
  end
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %d %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout))
end
