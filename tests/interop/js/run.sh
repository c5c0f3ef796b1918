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
bin="${1:-${CARGO_TARGET_DIR:-$repo/target}/release/seed-homeserver}"
database="${2:-sqlite}"

log() { printf '[interop-js] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

[[ -x "$bin" ]] || die "server binary not found: $bin (build it with: cargo build --release)"
command -v node >/dev/null || die "node (>= 20) is required"
command -v npm >/dev/null || die "npm is required"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/seed-interop-js.XXXXXX")"
server_pid=""
pg_admin_url=""
pg_db=""
cleanup() {
    local code=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2>/dev/null || true
    fi
    if [[ -n "$pg_db" ]]; then
        psql "$pg_admin_url" -qAtc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$workdir"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- npm packages (pinned by package-lock.json) -----------------------------------------------
stamp="$here/node_modules/.seed-lock-$(sha256sum "$here/package-lock.json" | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
    log "npm ci in $here"
    (cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
    touch "$stamp"
fi

# --- database ---------------------------------------------------------------------------------
case "$database" in
    sqlite | "") db_url="sqlite://$workdir/seed.db?mode=rwc" ;;
    postgres://* | postgresql://*)
        pg_admin_url="$database"
        pg_db="seed_js_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
        psql "$pg_admin_url" -v ON_ERROR_STOP=1 -qAtc "CREATE DATABASE $pg_db" >/dev/null || die "cannot create $pg_db"
        db_url="$(node -e 'const u = new URL(process.argv[1]); u.pathname = "/" + process.argv[2]; console.log(u.toString())' "$pg_admin_url" "$pg_db")"
        ;;
    *) die "DATABASE must be 'sqlite' or a postgres:// URL" ;;
esac

# --- server -----------------------------------------------------------------------------------
port="$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')"
base_url="http://127.0.0.1:$port"
log "starting $bin on $base_url"
NO_COLOR=1 "$bin" --bind "127.0.0.1:$port" --server-name localhost --database-url "$db_url" \
    --argon2-memory-kib 8 --argon2-iterations 1 --auth-rate-per-second 0 \
    --log "${SEED_INTEROP_LOG:-info,sqlx=warn,tower_http=debug}" >"$workdir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
    kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$workdir/server.log" >&2; die "server exited"; }
    curl -fsS "$base_url/_matrix/client/versions" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "$base_url/_matrix/client/versions" >/dev/null || die "server did not answer within 30 s"

# --- test -------------------------------------------------------------------------------------
set +e
(cd "$here" && SEED_BASE_URL="$base_url" timeout 180 node e2ee.mjs)
code=$?
set -e
# Endpoints the SDK called that Seed does not know (404 M_UNRECOGNIZED) are worth knowing.
grep -E 'status=404|status=405' "$workdir/server.log" | grep -oE 'uri=[^ ]+' | sort | uniq -c >&2 || true
if [[ $code -ne 0 ]]; then
    log "failed ($code); last server log lines:"
    tail -n 40 "$workdir/server.log" >&2
fi
exit "$code"
