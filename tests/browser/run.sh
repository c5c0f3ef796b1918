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
# shellcheck source=../common/server.sh
source "$repo/tests/common/server.sh"
seed_init browser
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
bin="${1:-$target_dir/release/seed-homeserver}"
artifacts="${SEED_BROWSER_ARTIFACTS:-$target_dir/ci-artifacts/browser}"
# Absolute, so a relative path names the same folder after the script changes directory.
rm -rf "$artifacts" && mkdir -p "$artifacts" && artifacts="$(cd "$artifacts" && pwd)"
SEED_KEEP_LOG="$artifacts"

[[ -x /usr/bin/chromium ]] || seed_die "/usr/bin/chromium missing (apt-get install chromium)"

# --- the web app and the python venv ----------------------------------------------------------
seed_npm_ci "$here"
(cd "$here" && ./build.sh) || seed_die "building the Hydrogen app failed"
seed_python_venv "$here/requirements.txt"

# --- server and static files ------------------------------------------------------------------
seed_database "${2:-sqlite}" seed_browser
# Requests are logged (tower_http=debug) so unknown endpoints Hydrogen calls show up below.
seed_start_server "$bin" --media-path "$SEED_WORKDIR/media" --presence-device-timeout-ms 5000 \
    --log "info,sqlx=warn,tower_http=debug"

app_port="$(seed_free_port)"
printf 'window.SEED_HOMESERVER = "%s";\n' "$SEED_HS" >"$here/dist/config.js"
python3 -m http.server "$app_port" --bind 127.0.0.1 --directory "$here/dist" >"$SEED_WORKDIR/static.log" 2>&1 &
seed_stop_on_exit $!
seed_wait_http "http://127.0.0.1:$app_port/index.html" 15 || seed_die "static server did not start"

# --- tests ------------------------------------------------------------------------------------
seed_log "running Playwright (chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}')) against $SEED_HS"
set +e
(
    cd "$here"
    SEED_BROWSER_HS="$SEED_HS" SEED_BROWSER_APP="http://127.0.0.1:$app_port/" SEED_BROWSER_ARTIFACTS="$artifacts" \
        PYTHONDONTWRITEBYTECODE=1 timeout 480 "$SEED_VENV/bin/python" -m pytest -p no:cacheprovider -v -rfEs test_hydrogen.py
)
code=$?
set -e
unknown="$(seed_unknown_endpoints)"
if [[ -n "$unknown" ]]; then
    seed_log "requests answered 404/405 (MSC2697 dehydrated_device answers 404 M_NOT_FOUND by design; anything else is an endpoint to implement):"
    printf '%s\n' "$unknown" >&2
fi
seed_log "screenshots and logs: $artifacts"
seed_log "pytest exit code: $code"
exit "$code"
