# Shared shell of the scripts that test a built seed-homeserver from outside (tests/browser,
# tests/console_browser, tests/interop/js): a work folder cleaned up on exit, a server on a free
# loopback port with a fresh database (SQLite file or a PostgreSQL database created and
# dropped), the pinned Python venv and npm packages. Source it, then call `seed_init TAG` first.
#
#   seed_init TAG                  log prefix [TAG]; $SEED_WORKDIR; cleanup trap on EXIT
#   seed_log MSG / seed_die MSG    log to stderr / log and exit 2 (could not set up)
#   seed_free_port                 print a free loopback TCP port
#   seed_wait_http URL SECONDS     wait until URL answers 2xx; 1 if it does not in time
#   seed_python_venv REQS          $SEED_VENV: a venv with the pins of REQS (cached by their hash)
#   seed_npm_ci DIR                npm ci in DIR unless its node_modules matches package-lock.json
#   seed_database SPEC PREFIX      $SEED_DB_URL for SPEC "sqlite" or a postgres:// URL (a fresh
#                                  database PREFIX_<random> there, dropped on exit)
#   seed_start_server BIN ARGS...  start BIN on $SEED_DB_URL with fast test settings and ARGS;
#                                  $SEED_HS is its base URL; waits until it answers
#   SEED_KEEP_LOG=DIR              copy the server log into DIR on exit
#   seed_stop_on_exit PID          also stop PID on exit (a helper server)

SEED_SH_TAG="seed"
SEED_WORKDIR=""
SEED_SERVER_PID=""
SEED_OTHER_PIDS=()
SEED_PG_ADMIN_URL=""
SEED_PG_DB=""
SEED_KEEP_LOG="${SEED_KEEP_LOG:-}"

seed_log() { printf '[%s] %s\n' "$SEED_SH_TAG" "$*" >&2; }
seed_die() {
    seed_log "ERROR: $*"
    exit 2
}

seed_init() {
    SEED_SH_TAG="$1"
    SEED_WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/seed-$1.XXXXXX")"
    trap seed_cleanup EXIT
    trap 'exit 130' INT TERM
}

# Stop a process we started: TERM, up to 5 s for it to finish, then KILL.
seed_stop() {
    local pid="$1"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

seed_stop_on_exit() { SEED_OTHER_PIDS+=("$1"); }

seed_cleanup() {
    local code=$?
    local pid
    for pid in "${SEED_OTHER_PIDS[@]}"; do seed_stop "$pid"; done
    seed_stop "$SEED_SERVER_PID"
    if [[ -n "$SEED_KEEP_LOG" && -f "$SEED_WORKDIR/server.log" ]]; then
        mkdir -p "$SEED_KEEP_LOG" && cp "$SEED_WORKDIR/server.log" "$SEED_KEEP_LOG/server.log"
    fi
    if [[ -n "$SEED_PG_DB" ]]; then
        psql "$SEED_PG_ADMIN_URL" -qAtc "DROP DATABASE IF EXISTS $SEED_PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    [[ -n "$SEED_WORKDIR" ]] && rm -rf "$SEED_WORKDIR"
    exit "$code"
}

seed_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

seed_wait_http() {
    local _
    for _ in $(seq $(($2 * 10))); do
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

seed_python_venv() {
    local req="$1" hash
    hash="$( (cat "$req"; python3 --version) | sha256sum | cut -c1-12)"
    SEED_VENV="${SEED_BROWSER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/seed-browser/venv-$hash}"
    # Playwright drives the system's chromium; it must not try to download its own.
    export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
    if [[ ! -x "$SEED_VENV/bin/python" || ! -f "$SEED_VENV/.installed-$hash" ]]; then
        seed_log "creating venv $SEED_VENV"
        rm -rf "$SEED_VENV"
        mkdir -p "$(dirname "$SEED_VENV")"
        python3 -m venv "$SEED_VENV" || seed_die "python3 -m venv failed"
        "$SEED_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" || seed_die "pip install failed"
        touch "$SEED_VENV/.installed-$hash"
    fi
}

seed_npm_ci() {
    local dir="$1" stamp
    command -v npm >/dev/null || seed_die "npm is required"
    stamp="$dir/node_modules/.seed-lock-$(sha256sum "$dir/package-lock.json" | cut -c1-12)"
    if [[ ! -f "$stamp" ]]; then
        seed_log "npm ci in $dir"
        (cd "$dir" && PUPPETEER_SKIP_DOWNLOAD=1 timeout 300 npm ci --no-audit --no-fund --loglevel=error) || seed_die "npm ci failed"
        touch "$stamp"
    fi
}

seed_database() {
    case "$1" in
        sqlite | "") SEED_DB_URL="sqlite://$SEED_WORKDIR/seed.db?mode=rwc" ;;
        postgres://* | postgresql://*)
            SEED_PG_ADMIN_URL="$1"
            SEED_PG_DB="$2_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
            psql "$SEED_PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qAtc "CREATE DATABASE $SEED_PG_DB" >/dev/null ||
                seed_die "could not create database $SEED_PG_DB"
            SEED_DB_URL="$(python3 -c 'import sys; from urllib.parse import urlsplit, urlunsplit; u = urlsplit(sys.argv[1]); print(urlunsplit((u.scheme, u.netloc, "/" + sys.argv[2], u.query, u.fragment)))' "$SEED_PG_ADMIN_URL" "$SEED_PG_DB")"
            ;;
        *) seed_die "DATABASE must be 'sqlite' or a postgres:// URL" ;;
    esac
}

seed_start_server() {
    local bin="$1" port
    shift
    [[ -x "$bin" ]] || seed_die "server binary not found: $bin (cargo build --release)"
    [[ -n "${SEED_DB_URL:-}" ]] || seed_database sqlite
    port="$(seed_free_port)"
    SEED_HS="http://127.0.0.1:$port"
    seed_log "starting $bin on $SEED_HS"
    NO_COLOR=1 "$bin" --bind "127.0.0.1:$port" --server-name localhost --database-url "$SEED_DB_URL" \
        --argon2-memory-kib 8 --argon2-iterations 1 --auth-rate-per-second 0 "$@" >"$SEED_WORKDIR/server.log" 2>&1 &
    SEED_SERVER_PID=$!
    if ! seed_wait_http "$SEED_HS/_matrix/client/versions" 30; then
        tail -n 40 "$SEED_WORKDIR/server.log" >&2
        seed_die "the server did not answer within 30 s"
    fi
}

# Requests the server answered 404/405 (endpoints a client called that Seed does not know).
seed_unknown_endpoints() {
    grep -E 'status=(404|405)' "$SEED_WORKDIR/server.log" | grep -oE 'uri=[^ ]+' | sort | uniq -c || true
}
