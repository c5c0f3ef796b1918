#!/usr/bin/env bash
# Browser test of the experiment console (/_seed/console): Playwright for Python drives headless
# Debian chromium against a built seed-homeserver on a free loopback port. Builds no Rust.
#
# Usage: tests/console_browser/run.sh [SERVER_BINARY]
#   SERVER_BINARY  default: target/release/seed-homeserver ($CARGO_TARGET_DIR respected)
# Needs: chromium at /usr/bin/chromium (apt-get install chromium), python3 with venv.
# Environment:
#   SEED_CONSOLE_ARTIFACTS  screenshots and the server log (default: target/ci-artifacts/console)
#   SEED_BROWSER_VENV       Python venv (default: ~/.cache/seed-browser/venv-<hash>, shared with
#                           tests/browser when the pins agree)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
bin="${1:-$target_dir/release/seed-homeserver}"
artifacts="${SEED_CONSOLE_ARTIFACTS:-$target_dir/ci-artifacts/console}"
# Absolute, so a relative path names the same folder after the script changes directory.
mkdir -p "$artifacts" && artifacts="$(cd "$artifacts" && pwd)"

log() { printf '[console] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

[[ -x "$bin" ]] || die "server binary not found: $bin"
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium missing (apt-get install chromium)"

rm -rf "$artifacts"
mkdir -p "$artifacts"
workdir="$(mktemp -d "${TMPDIR:-/tmp}/seed-console.XXXXXX")"
server_pid=""

cleanup() {
    local code=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    [[ -f "$workdir/server.log" ]] && cp "$workdir/server.log" "$artifacts/server.log"
    rm -rf "$workdir"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
hs="http://127.0.0.1:$port"
log "starting $bin on $hs"
NO_COLOR=1 "$bin" --bind "127.0.0.1:$port" --server-name localhost --database-url "sqlite://$workdir/seed.db?mode=rwc" \
    --argon2-memory-kib 8 --argon2-iterations 1 --auth-rate-per-second 0 --admins @exp:localhost \
    --presence-device-timeout-ms 3000 --log "info,sqlx=warn" >"$workdir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$hs/_matrix/client/versions" 2>/dev/null && break
    sleep 0.1
done

cd "$here"
SEED_CONSOLE_HS="$hs" SEED_CONSOLE_ARTIFACTS="$artifacts" PYTHONDONTWRITEBYTECODE=1 \
    timeout 150 "$venv/bin/python" -m pytest -p no:cacheprovider -v -rfEs test_console.py
