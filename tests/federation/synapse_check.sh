#!/usr/bin/env bash
# Federation foundation against Synapse, on loopback:
#   1. A Synapse user reads a Seed user's profile: Synapse sends a signed
#      GET /_matrix/federation/v1/query/profile to Seed, Seed fetches Synapse's key over TLS
#      and verifies the X-Matrix signature.
#   2. A Seed user reads the Synapse user's profile: the same in the other direction (Synapse
#      fetches Seed's key from GET /_matrix/key/v2/server and verifies Seed's signature).
#   3. Synapse, as a notary, serves Seed's key (GET /_matrix/key/v2/query/{seed}), signed by
#      Seed and counter-signed by Synapse: it accepted Seed's key response.
# Synapse comes from PyPI through ../shared/tools/synapse-peer.sh install (venv in
# /tmp/synapse-venv); its config here is our own (federation listener with TLS, a self-signed
# certificate, certificate checks off, 127.0.0.1 allowed as a federation target).
# Usage: tests/federation/synapse_check.sh   (from the repository root; needs a debug build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

VENV=/tmp/synapse-venv
WORK=${WORK:-/tmp/seed-synapse-check}
SYN_FED=${SYN_FED:-8561}; SYN_CLIENT=${SYN_CLIENT:-8562}
SEED_FED=${SEED_FED:-8563}; SEED_CLIENT=${SEED_CLIENT:-8564}
SYN_NAME="localhost:$SYN_FED"; SEED_NAME="localhost:$SEED_FED"
# Both names are host:port: Synapse refuses IP-literal server names on 127.0.0.1 whatever its
# ip_range_whitelist says (BlocklistingAgentWrapper gets no allow list).

BIN=${SEED_BIN:-target/debug/seed-homeserver}

[[ -x "$VENV/bin/python" ]] || bash ../shared/tools/synapse-peer.sh install
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
    | tee -a "$WORK/register.log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])')
  curl -s -X POST "$base/_matrix/client/v3/register" \
    -d "{\"username\":\"$user\",\"password\":\"pw-123456\",\"auth\":{\"type\":\"m.login.dummy\",\"session\":\"$session\"}}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
SYN="http://127.0.0.1:$SYN_CLIENT"; SEED="http://127.0.0.1:$SEED_CLIENT"
SYN_TOKEN=$(register "$SYN" sam); SEED_TOKEN=$(register "$SEED" bob)
curl -sf -X PUT -H "Authorization: Bearer $SEED_TOKEN" "$SEED/_matrix/client/v3/profile/@bob:$SEED_NAME/displayname" \
  -d '{"displayname":"Bob on Seed"}' >/dev/null
curl -sf -X PUT -H "Authorization: Bearer $SYN_TOKEN" "$SYN/_matrix/client/v3/profile/@sam:$SYN_NAME/displayname" \
  -d '{"displayname":"Sam on Synapse"}' >/dev/null

fail=0
check() { # name, command output, python predicate on the JSON
  if python3 -c "import json,sys; v=json.loads(sys.argv[1]); sys.exit(0 if ($3) else 1)" "$2"; then
    echo "PASS $1"; else echo "FAIL $1: $2"; fail=1; fi
}

out=$(curl -s -H "Authorization: Bearer $SYN_TOKEN" "$SYN/_matrix/client/v3/profile/@bob:$SEED_NAME")
check "Synapse user reads a Seed user's profile (signed request verified by Seed)" "$out" "v.get('displayname')=='Bob on Seed'"

out=$(curl -s -H "Authorization: Bearer $SEED_TOKEN" "$SEED/_matrix/client/v3/profile/@sam:$SYN_NAME")
check "Seed user reads a Synapse user's profile (signed request verified by Synapse)" "$out" "v.get('displayname')=='Sam on Synapse'"

# Synapse's notary answers from its cache: asked after it verified Seed's request above.
out=$(curl -sk "https://127.0.0.1:$SYN_FED/_matrix/key/v2/query/$SEED_NAME")
check "Synapse (notary) fetched and serves Seed's key" "$out" \
  "any(d['server_name']=='$SEED_NAME' and '$SEED_NAME' in d['signatures'] and '$SYN_NAME' in d['signatures'] for d in v['server_keys'])"

if [[ $fail -ne 0 ]]; then
  echo "--- seed log"; tail -20 "$WORK/seed/stdout.log"; echo "--- synapse log"; grep -iE "error|warn" "$WORK/synapse/homeserver.log" | tail -20 || true
fi
exit $fail
