-- One request builder per kind of request; each returns wrk's raw request text.
local M = {}

local JSON = "application/json"

-- The requests for these items, formatted once: sending one is then a table lookup, which keeps
-- wrk's own CPU for sending (the ceiling answers as fast as one wrk thread can ask).
local function pool(items, format)
  local requests = {}
  for index, item in ipairs(items) do requests[index] = format(item) end
  return function() return requests[math.random(#requests)] end
end

local function get_user(id)
  return wrk.format("GET", "/v1/users/" .. id)
end

-- data: ids, hot (ids that fit the cache), emails, tokens ({id, token} pairs), password, nonce.
function M.builders(data, pick, uuid4)
  local created, renamed = 0, 0
  local b = {}

  b.verify = pool(data.tokens, function(user)
    return wrk.format("GET", "/v1/auth/verify", { ["Authorization"] = "Bearer " .. user[2] })
  end)
  b.user_hit = pool(data.hot, get_user)
  b.user_miss = pool(data.ids, get_user)

  -- An id no user has: always a database read, answered 404.
  function b.not_found()
    return wrk.format("GET", "/v1/users/" .. uuid4())
  end

  function b.login()
    local body = string.format('{"email":"%s","password":"%s"}', pick(data.emails), data.password)
    return wrk.format("POST", "/v1/auth/token", { ["Content-Type"] = JSON }, body)
  end

  function b.create()
    created = created + 1
    local email = string.format("new-%s-%d-%d@example.com", data.nonce, data.thread_id, created)
    local body = string.format('{"email":"%s","name":"Bench New","password":"%s"}', email, data.password)
    return wrk.format("POST", "/v1/users", { ["Content-Type"] = JSON }, body)
  end

  -- A user renames itself with its own token.
  function b.update()
    local user = pick(data.tokens)
    renamed = renamed + 1
    local body = string.format('{"name":"Bench Renamed %d"}', renamed)
    local headers = { ["Authorization"] = "Bearer " .. user[2], ["Content-Type"] = JSON }
    return wrk.format("PATCH", "/v1/users/" .. user[1], headers, body)
  end

  return b
end

-- A builder choosing among builders by weight: "verify:70,user_hit:20,...".
function M.weighted(builders, spec)
  local kinds, total = {}, 0
  for name, weight in spec:gmatch("([%w_]+):([%d%.]+)") do
    weight = tonumber(weight)
    if weight > 0 then
      if not builders[name] then error("unknown request kind " .. name) end
      total = total + weight
      kinds[#kinds + 1] = { total, builders[name] }
    end
  end
  return function()
    local draw = math.random() * total
    for _, kind in ipairs(kinds) do
      if draw < kind[1] then return kind[2]() end
    end
    return kinds[#kinds][2]()
  end
end

return M
