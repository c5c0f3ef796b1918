#!/usr/bin/env bash
# Federation interop with Synapse on loopback (issues #14, #15), in three parts:
#   transport: key exchange and X-Matrix signed requests both ways (each server reads the
#              other's user profile over GET /_matrix/federation/v1/query/profile, which makes
#              it fetch and check the other's key); always checked, decides the exit status.
#   rooms:     a Synapse user joins a Seed room and a Seed user joins a Synapse room; messages
#              and typing both ways (PDUs and EDUs over PUT /send/{txnId}). Needs the room side
#              of federation; a failing room check fails the script (STRICT_ROOMS=0 reports it
#              as PENDING instead).
#   presence:  (issue #15) m.presence EDUs both ways in the shared rooms: Seed's online with a
#              status text, busy (a stock Synapse keeps MSC3026's org.matrix.msc3026.busy as
#              sent) and hidden (offline, no text), read through Synapse's
#              GET /presence/{user}/status; Synapse's online with a status text read through
#              Seed's status endpoint and legacy /sync. Counted with the room checks.
#   peek:      (issue #15) Synapse does not implement MSC2444: its federation peek endpoint
#              answers M_UNRECOGNIZED, and a Seed user's peek of a Synapse room gets a clear
#              404 naming MSC2444 (msc/README.md). Counted with the room checks.
# Set-up (Synapse from PyPI, both servers' configs, start and stop) in synapse_env.sh.
# Usage: tests/federation/synapse_rooms.sh   (from the repository root; builds the debug binary
# if missing). Ports: SYN_FED SYN_CLIENT SEED_FED SEED_CLIENT (defaults 8571-8574).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

WORK=${WORK:-/tmp/seed-synapse-rooms}
SYN_FED=${SYN_FED:-8571}; SYN_CLIENT=${SYN_CLIENT:-8572}
SEED_FED=${SEED_FED:-8573}; SEED_CLIENT=${SEED_CLIENT:-8574}
SEED_EXTRA_TOML='send_backoff_base_ms = 500
send_backoff_max_ms = 5000'
# shellcheck source=tests/federation/synapse_env.sh
source tests/federation/synapse_env.sh

SYN_TOKEN=$(register "$SYN" sam); SEED_TOKEN=$(register "$SEED" bob)
SAM="@sam:$SYN_NAME"; BOB="@bob:$SEED_NAME"
api PUT "$SEED" "$SEED_TOKEN" "/_matrix/client/v3/profile/$(enc "$BOB")/displayname" '{"displayname":"Bob on Seed"}' >/dev/null
api PUT "$SYN" "$SYN_TOKEN" "/_matrix/client/v3/profile/$(enc "$SAM")/displayname" '{"displayname":"Sam on Synapse"}' >/dev/null

fail=0; pending=0
check() { # part name json python-predicate-on-v
  if python3 -c "import json,sys; v=json.loads(sys.argv[1] or 'null'); sys.exit(0 if ($4) else 1)" "$3" 2>/dev/null; then
    echo "PASS $2"
  elif [[ $1 == rooms && ${STRICT_ROOMS:-1} != 1 ]]; then
    echo "PENDING $2: ${3:0:300}"; pending=1
  else
    echo "FAIL $2: ${3:0:300}"; fail=1
  fi
}
poll() { # seconds method base token path python-predicate -> last JSON (stops when it holds)
  # "@T@" in the path becomes a different number on every call: Synapse keeps the answer of an
  # initial /sync for 2 minutes (sync_response_cache_duration) keyed by its parameters, the
  # timeout among them, so repeating the same request would read the same stale answer.
  local end=$((SECONDS + $1)) out
  while :; do
    out=$(api "$2" "$3" "$4" "${5//@T@/$((1000 + 10#$(date +%N) % 90000))}")
    python3 -c "import json,sys; v=json.loads(sys.argv[1] or 'null'); sys.exit(0 if ($6) else 1)" "$out" 2>/dev/null && break
    (( SECONDS >= end )) && break
    sleep 0.3
  done
  echo "$out"
}

# --- transport -------------------------------------------------------------------------------
out=$(api GET "$SYN" "$SYN_TOKEN" "/_matrix/client/v3/profile/$(enc "$BOB")")
check transport "Synapse reads a Seed profile (Seed fetched Synapse's key, verified its signature)" "$out" \
  "v.get('displayname')=='Bob on Seed'"
out=$(api GET "$SEED" "$SEED_TOKEN" "/_matrix/client/v3/profile/$(enc "$SAM")")
check transport "Seed reads a Synapse profile (Synapse fetched Seed's key, verified its signature)" "$out" \
  "v.get('displayname')=='Sam on Synapse'"

# --- rooms (needs h/fed-rooms) ---------------------------------------------------------------
has_text() { echo "any(e.get('content',{}).get('body')=='$1' for e in v.get('chunk',[]))"; }
typing_of() { # room user -> predicate on a /sync answer
  echo "'$2' in [u for e in v.get('rooms',{}).get('join',{}).get('$1',{}).get('ephemeral',{}).get('events',[]) if e.get('type')=='m.typing' for u in e['content'].get('user_ids',[])]"
}
both_ways() { # room_id label: messages and typing between sam (Synapse) and bob (Seed)
  local room=$1 label=$2 r; r=$(enc "$1")
  api PUT "$SEED" "$SEED_TOKEN" "/_matrix/client/v3/rooms/$r/send/m.room.message/b$RANDOM" \
    "{\"msgtype\":\"m.text\",\"body\":\"from seed $label\"}" >/dev/null
  out=$(poll 20 GET "$SYN" "$SYN_TOKEN" "/_matrix/client/v3/rooms/$r/messages?dir=b&limit=20" "$(has_text "from seed $label")")
  check rooms "$label: Seed message reaches Synapse" "$out" "$(has_text "from seed $label")"
  api PUT "$SYN" "$SYN_TOKEN" "/_matrix/client/v3/rooms/$r/send/m.room.message/s$RANDOM" \
    "{\"msgtype\":\"m.text\",\"body\":\"from synapse $label\"}" >/dev/null
  out=$(poll 20 GET "$SEED" "$SEED_TOKEN" "/_matrix/client/v3/rooms/$r/messages?dir=b&limit=20" "$(has_text "from synapse $label")")
  check rooms "$label: Synapse message reaches Seed" "$out" "$(has_text "from synapse $label")"
  api PUT "$SEED" "$SEED_TOKEN" "/_matrix/client/v3/rooms/$r/typing/$(enc "$BOB")" '{"typing":true,"timeout":20000}' >/dev/null
  out=$(poll 20 GET "$SYN" "$SYN_TOKEN" "/_matrix/client/v3/sync?timeout=@T@" "$(typing_of "$room" "$BOB")")
  check rooms "$label: Seed typing reaches Synapse" "$out" "$(typing_of "$room" "$BOB")"
  api PUT "$SYN" "$SYN_TOKEN" "/_matrix/client/v3/rooms/$r/typing/$(enc "$SAM")" '{"typing":true,"timeout":20000}' >/dev/null
  out=$(poll 20 GET "$SEED" "$SEED_TOKEN" "/_matrix/client/v3/sync?timeout=1000" "$(typing_of "$room" "$SAM")")
  check rooms "$label: Synapse typing reaches Seed" "$out" "$(typing_of "$room" "$SAM")"
}

# A Synapse user joins a Seed room.
SEED_ROOM=$(api POST "$SEED" "$SEED_TOKEN" /_matrix/client/v3/createRoom '{"preset":"public_chat"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin).get("room_id",""))')
out=$(api POST "$SYN" "$SYN_TOKEN" "/_matrix/client/v3/join/$(enc "$SEED_ROOM")?server_name=$SEED_NAME" '{}')
check rooms "Synapse user joins a Seed room" "$out" "v.get('room_id')=='$SEED_ROOM'"
out=$(poll 20 GET "$SEED" "$SEED_TOKEN" "/_matrix/client/v3/rooms/$(enc "$SEED_ROOM")/joined_members" \
  "'$SAM' in v.get('joined',{})")
check rooms "Seed sees the Synapse user joined" "$out" "'$SAM' in v.get('joined',{})"
both_ways "$SEED_ROOM" "Seed room"

# A Seed user joins a Synapse room.
# Room version 10: Synapse's default (12) has room ids without a server name, which Seed does
# not take yet (it speaks versions 10 and 11).
SYN_ROOM=$(api POST "$SYN" "$SYN_TOKEN" /_matrix/client/v3/createRoom '{"preset":"public_chat","room_version":"10"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin).get("room_id",""))')
out=$(api POST "$SEED" "$SEED_TOKEN" "/_matrix/client/v3/join/$(enc "$SYN_ROOM")?server_name=$SYN_NAME" '{}')
check rooms "Seed user joins a Synapse room" "$out" "v.get('room_id')=='$SYN_ROOM'"
out=$(poll 20 GET "$SYN" "$SYN_TOKEN" "/_matrix/client/v3/rooms/$(enc "$SYN_ROOM")/joined_members" \
  "'$BOB' in v.get('joined',{})")
check rooms "Synapse sees the Seed user joined" "$out" "'$BOB' in v.get('joined',{})"
both_ways "$SYN_ROOM" "Synapse room"

# --- presence (issue #15) ---------------------------------------------------------------------
status_of() { # user -> GET/PUT /presence/{user}/status path
  echo "/_matrix/client/v3/presence/$(enc "$1")/status"
}
api GET "$SEED" "$SEED_TOKEN" "/_matrix/client/v3/sync?timeout=0&set_presence=online" >/dev/null
api PUT "$SEED" "$SEED_TOKEN" "$(status_of "$BOB")" '{"presence":"online","status_msg":"seed here"}' >/dev/null
want="v.get('presence')=='online' and v.get('status_msg')=='seed here'"
out=$(poll 20 GET "$SYN" "$SYN_TOKEN" "$(status_of "$BOB")" "$want")
check rooms "presence: Seed online with a status text reaches Synapse" "$out" "$want"
api PUT "$SEED" "$SEED_TOKEN" "$(status_of "$BOB")" '{"presence":"busy","status_msg":"in a call"}' >/dev/null
want="v.get('presence')=='org.matrix.msc3026.busy' and v.get('status_msg')=='in a call'"
out=$(poll 20 GET "$SYN" "$SYN_TOKEN" "$(status_of "$BOB")" "$want")
check rooms "presence: Seed busy reaches Synapse as org.matrix.msc3026.busy" "$out" "$want"
api PUT "$SEED" "$SEED_TOKEN" "$(status_of "$BOB")" '{"presence":"offline","status_msg":"hidden text"}' >/dev/null
want="v.get('presence')=='offline' and not v.get('status_msg')"
out=$(poll 20 GET "$SYN" "$SYN_TOKEN" "$(status_of "$BOB")" "$want")
check rooms "presence: Seed hidden reaches Synapse as offline without its text" "$out" "$want"
api PUT "$SYN" "$SYN_TOKEN" "$(status_of "$SAM")" '{"presence":"online","status_msg":"synapse here"}' >/dev/null
want="v.get('presence')=='online' and v.get('status_msg')=='synapse here'"
out=$(poll 20 GET "$SEED" "$SEED_TOKEN" "$(status_of "$SAM")" "$want")
check rooms "presence: Synapse online with a status text reaches Seed" "$out" "$want"
want="any(e.get('sender')=='$SAM' and e['content'].get('presence')=='online' for e in v.get('presence',{}).get('events',[]))"
out=$(poll 10 GET "$SEED" "$SEED_TOKEN" "/_matrix/client/v3/sync?timeout=0" "$want")
check rooms "presence: Synapse presence in Seed's legacy /sync" "$out" "$want"

# --- peek (issue #15, MSC2444 fallback): Synapse does not implement peeking over federation ---
# A world-readable room on Synapse (room version 10: its id names Synapse's server).
PEEK_ROOM=$(api POST "$SYN" "$SYN_TOKEN" /_matrix/client/v3/createRoom \
  '{"preset":"public_chat","room_version":"10","initial_state":[{"type":"m.room.history_visibility","state_key":"","content":{"history_visibility":"world_readable"}}]}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["room_id"])')
# Synapse's own answer to the federation peek endpoint (unsigned: it does not know the path).
out=$(curl -sk -X PUT "https://127.0.0.1:$SYN_FED/_matrix/federation/unstable/org.matrix.msc2444/peek/$(enc "$PEEK_ROOM")/p1?ver=10" -d '{}')
check rooms "peek: Synapse does not know the MSC2444 endpoint" "$out" 'v.get("errcode") == "M_UNRECOGNIZED"'
# bob@Seed peeks the Synapse room: Seed tries MSC2444 at Synapse and tells bob why it cannot
# (presence of Synapse users still arrives by m.presence EDUs, checked above).
out=$(curl -s -X POST -H "Authorization: Bearer $SEED_TOKEN" -H 'Content-Type: application/json' \
  "$SEED/_matrix/client/unstable/org.matrix.msc2753/peek/$(enc "$PEEK_ROOM")" -d '{}' -w '\n%{http_code}')
code=${out##*$'\n'}; out=${out%$'\n'*}
check rooms "peek: Seed's peek of a Synapse room answers 404 M_NOT_FOUND naming MSC2444" "$out" \
  "v.get('errcode') == 'M_NOT_FOUND' and 'MSC2444' in v.get('error', '') and '$code' == '404'"

if [[ $fail -ne 0 || $pending -ne 0 ]]; then
  show_logs
fi
[[ $pending -ne 0 ]] && echo "rooms checks PENDING (STRICT_ROOMS=0 reports room failures without failing)"
exit $fail
