#!/usr/bin/env bash
# Peeking over federation (MSC2444) against Synapse, which does not implement it: a Seed user's
# MSC2753 peek of a world-readable room on Synapse fails with a clear 404 naming MSC2444 (the
# fallback of msc/README.md "Peeking over federation"), and Synapse answers the federation
# peek endpoint itself with M_UNRECOGNIZED. Setup as tests/federation/synapse_rooms.sh
# (Synapse from PyPI in /tmp/synapse-venv, TLS federation listener, self-signed certificates).
# Usage: tests/federation/synapse_peek.sh   (from the repository root). Ports: SYN_FED SYN_CLIENT
# SEED_FED SEED_CLIENT (defaults 8591-8594).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

VENV=/tmp/synapse-venv
WORK=${WORK:-/tmp/seed-synapse-peek}
SYN_FED=${SYN_FED:-8591}; SYN_CLIENT=${SYN_CLIENT:-8592}
SEED_FED=${SEED_FED:-8593}; SEED_CLIENT=${SEED_CLIENT:-8594}
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

# --- checks ----------------------------------------------------------------------------------
# A world-readable room on Synapse (room version 10: its id names Synapse's server).
ROOM=$(api POST "$SYN" "$SYN_TOKEN" /_matrix/client/v3/createRoom \
  '{"preset":"public_chat","room_version":"10","initial_state":[{"type":"m.room.history_visibility","state_key":"","content":{"history_visibility":"world_readable"}}]}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["room_id"])')
echo "room on Synapse: $ROOM"

# Synapse's own answer to the federation peek endpoint (unsigned: it does not know the path).
out=$(curl -sk -X PUT "https://127.0.0.1:$SYN_FED/_matrix/federation/unstable/org.matrix.msc2444/peek/$(enc "$ROOM")/p1?ver=10" -d '{}')
check transport "Synapse does not know the MSC2444 endpoint" "$out" 'v.get("errcode") == "M_UNRECOGNIZED"'

# bob@Seed peeks the Synapse room: Seed tries MSC2444 at Synapse and tells bob why it cannot.
out=$(curl -s -X POST -H "Authorization: Bearer $SEED_TOKEN" -H 'Content-Type: application/json' \
  "$SEED/_matrix/client/unstable/org.matrix.msc2753/peek/$(enc "$ROOM")" -d '{}' -w '\n%{http_code}')
code=${out##*$'\n'}; out=${out%$'\n'*}
echo "Seed answered $code: $out"
check transport "Seed's peek of a Synapse room fails with 404 M_NOT_FOUND naming MSC2444" "$out" \
  'v.get("errcode") == "M_NOT_FOUND" and "MSC2444" in v.get("error", "")'
[[ $code == 404 ]] || { echo "FAIL status $code, want 404"; fail=1; }
exit $fail
