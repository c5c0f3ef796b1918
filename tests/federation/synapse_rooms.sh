#!/usr/bin/env bash
# Federation interop with Synapse on loopback (issue #14), in two parts:
#   transport: key exchange and X-Matrix signed requests both ways (each server reads the
#              other's user profile over GET /_matrix/federation/v1/query/profile, which makes
#              it fetch and check the other's key); always checked, decides the exit status.
#   rooms:     a Synapse user joins a Seed room and a Seed user joins a Synapse room; messages
#              and typing both ways (PDUs and EDUs over PUT /send/{txnId}). Needs the room side
#              of federation; a failing room check fails the script (STRICT_ROOMS=0 reports it
#              as PENDING instead).
# Synapse comes from PyPI through ../shared/tools/synapse-peer.sh install (venv in
# /tmp/synapse-venv); its config is written here: a TLS federation listener with a self-signed
# certificate, federation_verify_certificates: false, 127.0.0.1 allowed as a federation target.
# Usage: tests/federation/synapse_rooms.sh   (from the repository root; builds the debug binary
# if missing). Ports: SYN_FED SYN_CLIENT SEED_FED SEED_CLIENT (defaults 8571-8574).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

VENV=/tmp/synapse-venv
WORK=${WORK:-/tmp/seed-synapse-rooms}
SYN_FED=${SYN_FED:-8571}; SYN_CLIENT=${SYN_CLIENT:-8572}
SEED_FED=${SEED_FED:-8573}; SEED_CLIENT=${SEED_CLIENT:-8574}
# Both names are host:port: Synapse refuses IP-literal server names on 127.0.0.1 whatever its
# ip_range_whitelist says.
SYN_NAME="localhost:$SYN_FED"; SEED_NAME="localhost:$SEED_FED"
BIN=${SEED_BIN:-target/debug/seed-homeserver}

# ../shared is beside the main checkout; a worktree elsewhere names it with SYNAPSE_PEER.
PEER_SCRIPT=${SYNAPSE_PEER:-../shared/tools/synapse-peer.sh}
[[ -x "$VENV/bin/python" ]] || bash "$PEER_SCRIPT" install
[[ -x "$BIN" ]] || cargo build --bin seed-homeserver

rm -rf "$WORK"; mkdir -p "$WORK/synapse" "$WORK/seed"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# --- Synapse ---------------------------------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
    -keyout "$WORK/synapse/tls.key" -out "$WORK/synapse/tls.crt" 2>/dev/null
(cd "$WORK/synapse" && "$VENV/bin/python" -m synapse.app.homeserver --server-name "$SYN_NAME" \
    --config-path homeserver.yaml --generate-config --report-stats=no --data-directory "$WORK/synapse" >/dev/null)
WORK=$WORK SYN_FED=$SYN_FED SYN_CLIENT=$SYN_CLIENT "$VENV/bin/python" - <<'PY'
import os, re
w = os.environ["WORK"]; p = w + "/synapse/homeserver.yaml"; src = open(p).read()
src = re.sub(r'listeners:.*?x_forwarded: true\n', f'''listeners:
  - port: {os.environ["SYN_FED"]}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: true
    resources:
      - names: [federation, keys]
  - port: {os.environ["SYN_CLIENT"]}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    resources:
      - names: [client]
''', src, flags=re.S)
src = re.sub(r'trusted_key_servers:\n  - server_name: .*\n', 'trusted_key_servers: []\n', src)
src += f'''
tls_certificate_path: {w}/synapse/tls.crt
tls_private_key_path: {w}/synapse/tls.key
federation_verify_certificates: false
ip_range_whitelist: ['127.0.0.1', '::1']
enable_registration: true
enable_registration_without_verification: true
suppress_key_server_warning: true
rc_registration: {{per_second: 1000, burst_count: 1000}}
rc_login: {{address: {{per_second: 1000, burst_count: 1000}}, account: {{per_second: 1000, burst_count: 1000}}}}
rc_message: {{per_second: 1000, burst_count: 1000}}
rc_joins: {{local: {{per_second: 1000, burst_count: 1000}}, remote: {{per_second: 1000, burst_count: 1000}}}}
'''
open(p, "w").write(src)
PY
(cd "$WORK/synapse" && exec "$VENV/bin/python" -m synapse.app.homeserver --config-path homeserver.yaml \
    > "$WORK/synapse/stdout.log" 2>&1) & pids+=($!)

# --- Seed ------------------------------------------------------------------------------------
cat > "$WORK/seed/seed.toml" <<TOML
server_name = "$SEED_NAME"
bind = "127.0.0.1:$SEED_CLIENT"
database_url = "sqlite://$WORK/seed/seed.db?mode=rwc"
media_path = "$WORK/seed/media"
log = "info,sqlx=warn"
[federation]
enabled = true
bind = "127.0.0.1:$SEED_FED"
data_dir = "$WORK/seed/federation"
accept_invalid_certs = true
send_backoff_base_ms = 500
send_backoff_max_ms = 5000
TOML
"$BIN" --config "$WORK/seed/seed.toml" > "$WORK/seed/stdout.log" 2>&1 & pids+=($!)

for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$SYN_CLIENT/_matrix/client/versions" >/dev/null \
    && curl -sf "http://127.0.0.1:$SEED_CLIENT/_matrix/client/versions" >/dev/null && break
  sleep 0.5
done

register() { # base user -> access token (UIA dummy flow, works on both servers)
  local base=$1 user=$2 session
  session=$(curl -s -X POST "$base/_matrix/client/v3/register" -d "{\"username\":\"$user\",\"password\":\"pw-123456\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])')
  curl -s -X POST "$base/_matrix/client/v3/register" \
    -d "{\"username\":\"$user\",\"password\":\"pw-123456\",\"auth\":{\"type\":\"m.login.dummy\",\"session\":\"$session\"}}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
SYN="http://127.0.0.1:$SYN_CLIENT"; SEED="http://127.0.0.1:$SEED_CLIENT"
SYN_TOKEN=$(register "$SYN" sam); SEED_TOKEN=$(register "$SEED" bob)
SAM="@sam:$SYN_NAME"; BOB="@bob:$SEED_NAME"
api() { # method base token path [body] -> JSON
  curl -s -X "$1" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' "$2$4" ${5:+-d "$5"}
}
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
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

if [[ $fail -ne 0 || $pending -ne 0 ]]; then
  echo "--- seed log (last 20 lines)"; tail -20 "$WORK/seed/stdout.log"
  echo "--- synapse warnings"; grep -iE "error|warn" "$WORK/synapse/homeserver.log" | tail -20 || true
fi
[[ $pending -ne 0 ]] && echo "rooms checks PENDING (STRICT_ROOMS=0 reports room failures without failing)"
exit $fail
