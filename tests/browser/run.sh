#!/usr/bin/env bash
# Browser test: Hydrogen (from npm hydrogen-view-sdk, with @matrix-org/olm) served by a tiny
# static server, driven by Playwright for Python in headless Debian chromium, against a built
# seed-homeserver on a free loopback port. Builds no Rust itself.
#
# Usage: tests/browser/run.sh [SERVER_BINARY] [DATABASE]
#   SERVER_BINARY  default: target/release/seed-homeserver ($CARGO_TARGET_DIR respected)
#   DATABASE       "sqlite" (default: a fresh temp file) or a postgres://… URL (a fresh database
#                  seed_browser_<random> is created on that server and dropped afterwards)
# Needs: chromium at /usr/bin/chromium (apt-get install chromium), node + npm, python3.
# Environment:
#   SEED_BROWSER_ARTIFACTS  screenshots, console and server logs (default: target/ci-artifacts/browser)
#   SEED_BROWSER_VENV       Python venv (default: ~/.cache/seed-browser/venv-<hash>)
# Exit code: pytest's (2 if something could not be set up).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
bin="${1:-$target_dir/release/seed-homeserver}"
database="${2:-sqlite}"
artifacts="${SEED_BROWSER_ARTIFACTS:-$target_dir/ci-artifacts/browser}"
# Absolute, so a relative path names the same folder after the script changes directory.
mkdir -p "$artifacts" && artifacts="$(cd "$artifacts" && pwd)"

log() { printf '[browser] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

[[ -x "$bin" ]] || die "server binary not found: $bin (cargo build --release)"
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium missing (apt-get install chromium)"
command -v npm >/dev/null || die "npm is required"

rm -rf "$artifacts"
mkdir -p "$artifacts"
workdir="$(mktemp -d "${TMPDIR:-/tmp}/seed-browser.XXXXXX")"
server_pid=""
static_pid=""
pg_admin_url=""
pg_db=""

stop() {
    local pid="$1"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local code=$?
    stop "$static_pid"
    stop "$server_pid"
    [[ -f "$workdir/server.log" ]] && cp "$workdir/server.log" "$artifacts/server.log"
    if [[ -n "$pg_db" ]]; then
        psql "$pg_admin_url" -qAtc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$workdir"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url, seconds
    for _ in $(seq $(($2 * 10))); do
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# --- the web app ------------------------------------------------------------------------------
log "npm ci (hydrogen-view-sdk, @matrix-org/olm, esbuild)"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
(cd "$here" && ./build.sh) || die "building the Hydrogen app failed"

# --- python venv ------------------------------------------------------------------------------
req="$here/requirements.txt"
req_hash="$( (cat "$req"; python3 --version) | sha256sum | cut -c1-12)"
venv="${SEED_BROWSER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/seed-browser/venv-$req_hash}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [[ ! -x "$venv/bin/python" || ! -f "$venv/.installed-$req_hash" ]]; then
    log "creating venv $venv"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" || die "python3 -m venv failed"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" || die "pip install failed"
    touch "$venv/.installed-$req_hash"
fi

# --- database ---------------------------------------------------------------------------------
case "$database" in
    sqlite | "") db_url="sqlite://$workdir/seed.db?mode=rwc" ;;
    postgres://* | postgresql://*)
        pg_admin_url="$database"
        pg_db="seed_browser_$(python3 -c 'import secrets; print(secrets.token_hex(6))')"
        psql "$pg_admin_url" -v ON_ERROR_STOP=1 -qAtc "CREATE DATABASE $pg_db" >/dev/null || die "could not create $pg_db"
        db_url="$(python3 -c 'import sys; from urllib.parse import urlsplit, urlunsplit; u = urlsplit(sys.argv[1]); print(urlunsplit((u.scheme, u.netloc, "/" + sys.argv[2], u.query, u.fragment)))' "$pg_admin_url" "$pg_db")"
        ;;
    *) die "DATABASE must be 'sqlite' or a postgres:// URL" ;;
esac

# --- server and static files ------------------------------------------------------------------
port="$(free_port)"
hs="http://127.0.0.1:$port"
log "starting $bin on $hs"
# Requests are logged (tower_http=debug) so unknown endpoints Hydrogen calls show up below.
NO_COLOR=1 "$bin" --bind "127.0.0.1:$port" --server-name localhost --database-url "$db_url" \
    --media-path "$workdir/media" --argon2-memory-kib 8 --argon2-iterations 1 --auth-rate-per-second 0 \
    --presence-device-timeout-ms 5000 --log "info,sqlx=warn,tower_http=debug" >"$workdir/server.log" 2>&1 &
server_pid=$!
wait_http "$hs/_matrix/client/versions" 30 || { tail -n 40 "$workdir/server.log" >&2; die "server did not start"; }

app_port="$(free_port)"
printf 'window.SEED_HOMESERVER = "%s";\n' "$hs" >"$here/dist/config.js"
python3 -m http.server "$app_port" --bind 127.0.0.1 --directory "$here/dist" >"$workdir/static.log" 2>&1 &
static_pid=$!
wait_http "http://127.0.0.1:$app_port/index.html" 15 || die "static server did not start"

# --- tests ------------------------------------------------------------------------------------
log "running Playwright (chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}')) against $hs"
set +e
(
    cd "$here"
    SEED_BROWSER_HS="$hs" SEED_BROWSER_APP="http://127.0.0.1:$app_port/" SEED_BROWSER_ARTIFACTS="$artifacts" \
        PYTHONDONTWRITEBYTECODE=1 timeout 480 "$venv/bin/python" -m pytest -p no:cacheprovider -v -rfEs test_hydrogen.py
)
code=$?
set -e
unknown="$(grep -E 'status=(404|405)' "$workdir/server.log" | grep -oE 'uri=[^ ]+' | sort | uniq -c || true)"
if [[ -n "$unknown" ]]; then
    log "requests answered 404/405 (MSC2697 dehydrated_device answers 404 M_NOT_FOUND by design; anything else is an endpoint to implement):"
    printf '%s\n' "$unknown" >&2
fi
log "screenshots and logs: $artifacts"
log "pytest exit code: $code"
exit "$code"
