-- wrk load for `PUT /presence/{userId}/status` (issue 10: throughput of the durable, group-
-- committed manual status). Each request goes to the next of the users listed in the tokens
-- file (`<url-encoded user id> <access token>` per line, written by setup.sh), alternating
-- busy/online with a fresh status text, so every PUT changes something.
--   wrk -t2 -c50 -d20s -s benches/wrk/presence_put.lua http://127.0.0.1:8010 -- /tmp/seed-tokens.txt
local users, tokens, counter = {}, {}, 0

function init(args)
    for line in io.lines(args[1]) do
        local u, t = line:match("(%S+)%s+(%S+)")
        if u then
            users[#users + 1] = u
            tokens[#tokens + 1] = t
        end
    end
    -- Threads start at different offsets so they do not march over the same users.
    counter = math.random(1, 1000000)
end

function request()
    counter = counter + 1
    local i = (counter % #users) + 1
    local presence = (counter % 2 == 0) and "online" or "busy"
    local body = string.format('{"presence":"%s","status_msg":"s%d"}', presence, counter)
    return wrk.format("PUT", "/_matrix/client/v3/presence/" .. users[i] .. "/status",
        { ["Authorization"] = "Bearer " .. tokens[i], ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
    if status ~= 200 then
        io.stderr:write("status " .. status .. ": " .. body .. "\n")
    end
end
