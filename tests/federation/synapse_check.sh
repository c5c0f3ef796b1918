#!/usr/bin/env bash
# Federation foundation against Synapse, on loopback:
#   1. A Synapse user reads a Seed user's profile: Synapse sends a signed
#      GET /_matrix/federation/v1/query/profile to Seed, Seed fetches Synapse's key over TLS
#      and verifies the X-Matrix signature.
#   2. A Seed user reads the Synapse user's profile: the same in the other direction (Synapse
#      fetches Seed's key from GET /_matrix/key/v2/server and verifies Seed's signature).
#   3. Synapse, as a notary, serves Seed's key (GET /_matrix/key/v2/query/{seed}), signed by
#      Seed and counter-signed by Synapse: it accepted Seed's key response.
# Set-up (Synapse from PyPI, both servers' configs, start and stop) in synapse_env.sh.
# Usage: tests/federation/synapse_check.sh   (from the repository root; needs a debug build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

WORK=${WORK:-/tmp/seed-synapse-check}
SYN_FED=${SYN_FED:-8561}; SYN_CLIENT=${SYN_CLIENT:-8562}
SEED_FED=${SEED_FED:-8563}; SEED_CLIENT=${SEED_CLIENT:-8564}
# shellcheck source=tests/federation/synapse_env.sh
source tests/federation/synapse_env.sh

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

[[ $fail -ne 0 ]] && show_logs
exit $fail
