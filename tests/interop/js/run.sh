#!/usr/bin/env bash
# matrix-js-sdk (Rust crypto) interop: start a built seed-homeserver on a free loopback port
# and run tests/interop/js/e2ee.mjs against it. Builds nothing itself; installs the npm
# packages pinned by package-lock.json (npm ci) when node_modules is missing or stale.
#
# Usage: tests/interop/js/run.sh [SERVER_BINARY] [DATABASE]
#   SERVER_BINARY  default: target/release/seed-homeserver ($CARGO_TARGET_DIR honoured)
#   DATABASE       "sqlite" (default: a fresh temp file), or a postgres://… URL of an existing
#                  database; a fresh database seed_js_<random> is created there and dropped.
# Environment: SEED_JS_LOG=debug shows the SDK's and the Rust crypto's logs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
# shellcheck source=../../common/server.sh
source "$repo/tests/common/server.sh"
seed_init interop-js
bin="${1:-${CARGO_TARGET_DIR:-$repo/target}/release/seed-homeserver}"

command -v node >/dev/null || seed_die "node (>= 20) is required"
seed_npm_ci "$here"
seed_database "${2:-sqlite}" seed_js
seed_start_server "$bin" --log "${SEED_INTEROP_LOG:-info,sqlx=warn,tower_http=debug}"

set +e
(cd "$here" && SEED_BASE_URL="$SEED_HS" timeout 180 node e2ee.mjs)
code=$?
set -e
# Endpoints the SDK called that Seed does not know (404 M_UNRECOGNIZED) are worth knowing.
seed_unknown_endpoints >&2
if [[ $code -ne 0 ]]; then
    seed_log "failed ($code); last server log lines:"
    tail -n 40 "$SEED_WORKDIR/server.log" >&2
fi
exit "$code"
