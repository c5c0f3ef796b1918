#!/usr/bin/env bash
# Register N users on a running server and write `<url-encoded user id> <token>` lines for
# presence_put.lua.   bash benches/wrk/setup.sh http://127.0.0.1:8010 50 /tmp/seed-tokens.txt
set -euo pipefail
hs="$1"; n="$2"; out="$3"
: > "$out"
run="w$RANDOM"
for i in $(seq 1 "$n"); do
    name="${run}u$i"
    s=$(curl -s -XPOST "$hs/_matrix/client/v3/register" -d "{\"username\":\"$name\",\"password\":\"pw-123456\"}" | jq -r .session)
    tok=$(curl -s -XPOST "$hs/_matrix/client/v3/register" \
        -d "{\"username\":\"$name\",\"password\":\"pw-123456\",\"auth\":{\"type\":\"m.login.dummy\",\"session\":\"$s\"}}" | jq -r .access_token)
    echo "%40$name%3Alocalhost $tok" >> "$out"
done
wc -l < "$out"
