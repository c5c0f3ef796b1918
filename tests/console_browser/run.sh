#!/usr/bin/env bash
# Browser test of the experiment console (/_seed/console) against a built seed-homeserver on a
# free loopback port: an admin watches a scripted user go online -> busy -> unavailable ->
# offline live. Builds no Rust.
#   chromium: Playwright for Python drives Debian's chromium (test_console.py).
#   firefox:  Puppeteer drives Debian's Firefox ESR over WebDriver BiDi (firefox.mjs); stock
#             Firefox needs no patched build, unlike Playwright's.
#
# Usage: tests/console_browser/run.sh [SERVER_BINARY] [BROWSER]
#   SERVER_BINARY  default: target/release/seed-homeserver ($CARGO_TARGET_DIR respected)
#   BROWSER        chromium (default) or firefox
# Needs: chromium at /usr/bin/chromium and python3 with venv, or firefox-esr at
# /usr/bin/firefox-esr and node + npm (apt-get install chromium firefox-esr nodejs npm).
# Environment:
#   SEED_CONSOLE_ARTIFACTS  screenshots and the server log (default: target/ci-artifacts/console)
#   SEED_BROWSER_VENV       Python venv (default: ~/.cache/seed-browser/venv-<hash>, shared with
#                           tests/browser when the pins agree)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=../common/server.sh
source "$repo/tests/common/server.sh"
browser="${2:-chromium}"
seed_init "console-$browser"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
bin="${1:-$target_dir/release/seed-homeserver}"
artifacts="${SEED_CONSOLE_ARTIFACTS:-$target_dir/ci-artifacts/console}/$browser"
# Absolute, so a relative path names the same folder after the script changes directory.
rm -rf "$artifacts" && mkdir -p "$artifacts" && artifacts="$(cd "$artifacts" && pwd)"
SEED_KEEP_LOG="$artifacts"

case "$browser" in
    chromium)
        [[ -x /usr/bin/chromium ]] || seed_die "/usr/bin/chromium missing (apt-get install chromium)"
        seed_python_venv "$here/requirements.txt"
        run=(timeout 150 "$SEED_VENV/bin/python" -m pytest -p no:cacheprovider -v -rfEs test_console.py)
        ;;
    firefox)
        [[ -x /usr/bin/firefox-esr ]] || seed_die "/usr/bin/firefox-esr missing (apt-get install firefox-esr)"
        command -v node >/dev/null || seed_die "node (>= 20) is required"
        seed_npm_ci "$here"
        run=(timeout 150 node firefox.mjs)
        ;;
    *) seed_die "BROWSER must be chromium or firefox" ;;
esac

# Admin @exp:localhost; a device silent for 3 s is offline (the last step of the scenario).
seed_start_server "$bin" --admins @exp:localhost --presence-device-timeout-ms 3000 --log "info,sqlx=warn"

cd "$here"
SEED_CONSOLE_HS="$SEED_HS" SEED_CONSOLE_ARTIFACTS="$artifacts" PYTHONDONTWRITEBYTECODE=1 "${run[@]}"
