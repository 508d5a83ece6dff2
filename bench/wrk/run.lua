-- wrk -s run.lua URL -- endpoint=verify tokens=FILE ids=FILE hot=FILE emails=FILE password=P nonce=N
--                      [mix=verify:70,...] [rate=REQUESTS_PER_SECOND]
-- One endpoint (or the weighted mix) with random ids and tokens from the files; paced when rate is given.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")
local requests = dofile(here .. "requests.lua")

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_id", #threads)
end

local function load(args)
  local tokens = {}
  for _, line in ipairs(common.lines(args.tokens)) do
    local id, token = line:match("^(%S+)%s+(%S+)$")
    tokens[#tokens + 1] = { id, token }
  end
  return {
    ids = common.lines(args.ids),
    hot = common.lines(args.hot),
    emails = common.lines(args.emails),
    tokens = tokens,
    password = args.password,
    nonce = args.nonce or "0",
    thread_id = thread_id or 0,
  }
end

function init(raw)
  local args = common.parse_args(raw)
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919 + tonumber(args.seed or "0"))
  local builders = requests.builders(load(args), common.pick, common.uuid4)
  if args.endpoint == "mixed" then
    request = requests.weighted(builders, args.mix)
    -- Reads of ids that do not exist answer 404 by design, and a request the service refuses under
    -- overload answers 503 with Retry-After (its password hashing is bounded): counted apart.
    not_found, shed = 0, 0
    response = function(status, headers)
      if status == 404 then
        not_found = not_found + 1
      elseif status == 503 and (headers["retry-after"] or headers["Retry-After"]) then
        shed = shed + 1
      end
    end
  else
    request = builders[args.endpoint] or error("unknown endpoint " .. tostring(args.endpoint))
  end
  if args.rate then
    delay = common.pacer(tonumber(args.rate))
  end
end

function done(summary, latency, _)
  common.report(summary, latency, threads)
end
