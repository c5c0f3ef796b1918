# Shared set-up of the Synapse interop scripts (sourced by synapse_check.sh, synapse_rooms.sh):
# Synapse from PyPI (../shared/tools/synapse-peer.sh install, venv in /tmp/synapse-venv) with
# its own config written here — a TLS federation listener with a self-signed certificate,
# federation_verify_certificates: false, 127.0.0.1 allowed as a federation target, presence on —
# and a Seed with federation on; both started, waited for, and stopped on exit. Then helpers:
# register, api, enc.
#
# The sourcing script sets before sourcing: WORK, SYN_FED, SYN_CLIENT, SEED_FED, SEED_CLIENT;
# optionally SEED_EXTRA_TOML (lines appended to Seed's [federation] table) and SEED_BIN.
# It runs from the repository root.

VENV=/tmp/synapse-venv
# Both names are host:port: Synapse refuses IP-literal server names on 127.0.0.1 whatever its
# ip_range_whitelist says (BlocklistingAgentWrapper gets no allow list).
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
# Presence on (Synapse's default, named so it stays so); MSC3026 left at its default (off), so
# what a stock Synapse does with Seed's busy is what the presence checks see.
src += f'''
tls_certificate_path: {w}/synapse/tls.crt
tls_private_key_path: {w}/synapse/tls.key
federation_verify_certificates: false
ip_range_whitelist: ['127.0.0.1', '::1']
enable_registration: true
enable_registration_without_verification: true
suppress_key_server_warning: true
presence:
  enabled: true
rc_registration: {{per_second: 1000, burst_count: 1000}}
rc_login: {{address: {{per_second: 1000, burst_count: 1000}}, account: {{per_second: 1000, burst_count: 1000}}}}
rc_message: {{per_second: 1000, burst_count: 1000}}
rc_joins: {{local: {{per_second: 1000, burst_count: 1000}}, remote: {{per_second: 1000, burst_count: 1000}}}}
rc_presence: {{per_user: {{per_second: 1000, burst_count: 1000}}}}
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
${SEED_EXTRA_TOML:-}
TOML
"$BIN" --config "$WORK/seed/seed.toml" > "$WORK/seed/stdout.log" 2>&1 & pids+=($!)

for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$SYN_CLIENT/_matrix/client/versions" >/dev/null \
    && curl -sf "http://127.0.0.1:$SEED_CLIENT/_matrix/client/versions" >/dev/null && break
  sleep 0.5
done
SYN="http://127.0.0.1:$SYN_CLIENT"; SEED="http://127.0.0.1:$SEED_CLIENT"

register() { # base user -> access token (UIA dummy flow, works on both servers)
  local base=$1 user=$2 session
  session=$(curl -s -X POST "$base/_matrix/client/v3/register" -d "{\"username\":\"$user\",\"password\":\"pw-123456\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])')
  curl -s -X POST "$base/_matrix/client/v3/register" \
    -d "{\"username\":\"$user\",\"password\":\"pw-123456\",\"auth\":{\"type\":\"m.login.dummy\",\"session\":\"$session\"}}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
api() { # method base token path [body] -> JSON
  curl -s -X "$1" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' "$2$4" ${5:+-d "$5"}
}
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
show_logs() { # on failure
  echo "--- seed log (last 20 lines)"; tail -20 "$WORK/seed/stdout.log"
  echo "--- synapse warnings"; grep -iE "error|warn" "$WORK/synapse/homeserver.log" | tail -20 || true
}
