-- wrk load for `GET /presence/{userId}/status` (issue 13: GET answered from memory). Each
-- request reads the presence of the next user listed in the tokens file (written by
-- setup.sh) as that user (one may always see one's own presence; setup.sh users share no
-- room, and others would get 403): token, account check, privacy check, engine snapshot.
--   wrk -t2 -c50 -d20s --latency -s benches/wrk/presence_get.lua http://127.0.0.1:8010 -- /tmp/seed-tokens.txt
local users, tokens, counter = {}, {}, 0

function init(args)
    for line in io.lines(args[1]) do
        local u, t = line:match("(%S+)%s+(%S+)")
        if u then
            users[#users + 1] = u
            tokens[#tokens + 1] = t
        end
    end
    counter = math.random(1, 1000000)
end

function request()
    counter = counter + 1
    local i = (counter % #users) + 1
    return wrk.format("GET", "/_matrix/client/v3/presence/" .. users[i] .. "/status",
        { ["Authorization"] = "Bearer " .. tokens[i] })
end

function response(status, headers, body)
    if status ~= 200 then
        io.stderr:write("status " .. status .. ": " .. body .. "\n")
    end
end
