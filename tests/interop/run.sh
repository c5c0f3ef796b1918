#!/usr/bin/env bash
# Interop tests: start a built seed-homeserver on a free loopback port and run the matrix-nio
# pytest suites (tests/interop/test_nio.py, test_nio_e2ee.py) against it. Builds nothing itself.
#
# Usage: tests/interop/run.sh [SERVER_BINARY] [DATABASE]
#   SERVER_BINARY  default: $CARGO_TARGET_DIR/release/seed-homeserver, else target/release/seed-homeserver
#   DATABASE       "sqlite" (default: a fresh temp file), or a postgres://… URL of an existing
#                  database to connect with; a fresh database seed_interop_<random> is created
#                  on that server and dropped afterwards.
# Environment:
#   SEED_INTEROP_VENV      where the Python venv lives (default: ~/.cache/seed-interop/venv-<hash>)
#   PYTEST_ADDOPTS         extra pytest arguments (e.g. "-k message -x")
# Exit code: pytest's (or 2 if the server or venv could not be set up).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

default_bin="$repo/target/release/seed-homeserver"
if [[ -n "${CARGO_TARGET_DIR:-}" && -x "${CARGO_TARGET_DIR}/release/seed-homeserver" ]]; then
    default_bin="${CARGO_TARGET_DIR}/release/seed-homeserver"
fi
bin="${1:-$default_bin}"
database="${2:-sqlite}"

log() { printf '[interop] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

[[ -x "$bin" ]] || die "server binary not found or not executable: $bin (build it with: cargo build --release)"
command -v python3 >/dev/null || die "python3 is required"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/seed-interop.XXXXXX")"
server_pid=""
pg_admin_url=""
pg_db=""

cleanup() {
    local code=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ -n "$pg_db" ]]; then
        psql "$pg_admin_url" -v ON_ERROR_STOP=1 -qAtc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 \
            || log "could not drop database $pg_db"
    fi
    rm -rf "$workdir"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- python venv ------------------------------------------------------------------------------
req="$here/requirements.txt"
req_hash="$( (cat "$req"; python3 --version) | sha256sum | cut -c1-12)"
venv="${SEED_INTEROP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/seed-interop/venv-$req_hash}"
if [[ ! -x "$venv/bin/python" || ! -f "$venv/.installed-$req_hash" ]]; then
    log "creating venv $venv"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" || die "python3 -m venv failed"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" \
        || die "pip install -r $req failed"
    touch "$venv/.installed-$req_hash"
else
    log "using venv $venv"
fi

# --- database ---------------------------------------------------------------------------------
case "$database" in
    sqlite | "")
        db_url="sqlite://$workdir/seed.db?mode=rwc"
        db_kind="sqlite"
        ;;
    postgres://* | postgresql://*)
        command -v psql >/dev/null || die "psql is required for a PostgreSQL run"
        pg_admin_url="$database"
        name="seed_interop_$(python3 -c 'import secrets; print(secrets.token_hex(6))')"
        psql "$pg_admin_url" -v ON_ERROR_STOP=1 -qAtc "CREATE DATABASE $name" >/dev/null \
            || die "could not create database $name via $pg_admin_url"
        pg_db="$name"
        # Same server and credentials, the fresh database as path (query string kept).
        db_url="$(python3 - "$pg_admin_url" "$name" <<'EOF'
import sys
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(sys.argv[1])
print(urlunsplit((u.scheme, u.netloc, "/" + sys.argv[2], u.query, u.fragment)))
EOF
)"
        db_kind="postgres ($name)"
        ;;
    *) die "DATABASE must be 'sqlite' or a postgres:// URL, got: $database" ;;
esac

# --- server -----------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

server_log="$workdir/server.log"
started=""
for attempt in 1 2 3; do
    port="$(free_port)"
    base_url="http://127.0.0.1:$port"
    log "starting $bin on $base_url with $db_kind (attempt $attempt)"
    NO_COLOR=1 "$bin" \
        --bind "127.0.0.1:$port" \
        --server-name localhost \
        --database-url "$db_url" \
        --argon2-memory-kib 8 \
        --argon2-iterations 1 \
        --auth-rate-per-second 0 \
        --log "${SEED_INTEROP_LOG:-info,sqlx=warn}" \
        >"$server_log" 2>&1 &
    server_pid=$!
    # Wait (at most 30 s) until the client API answers.
    for _ in $(seq 300); do
        if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
        if python3 - "$base_url/_matrix/client/versions" <<'EOF' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 and "versions" in json.load(r) else 1)
EOF
        then
            started=1
            break
        fi
        sleep 0.1
    done
    [[ -n "$started" ]] && break
    if kill -0 "$server_pid" 2>/dev/null; then
        log "server did not answer /_matrix/client/versions within 30 s; log:"
        tail -n 50 "$server_log" >&2
        exit 2
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    log "server exited during startup; log:"
    tail -n 30 "$server_log" >&2
    grep -qi "address already in use" "$server_log" || exit 2
done
[[ -n "$started" ]] || die "server could not start"
log "server is up (pid $server_pid)"

# --- tests ------------------------------------------------------------------------------------
log "running pytest against $base_url"
set +e
(
    cd "$here"
    SEED_BASE_URL="$base_url" PYTHONDONTWRITEBYTECODE=1 \
        "$venv/bin/python" -m pytest -p no:cacheprovider -v -rfEs --durations=5 test_nio.py test_nio_e2ee.py
)
code=$?
set -e

if [[ $code -ne 0 ]]; then
    log "pytest failed ($code); last server log lines:"
    tail -n 40 "$server_log" >&2
    if ! kill -0 "$server_pid" 2>/dev/null; then log "the server is no longer running"; fi
fi
log "pytest exit code: $code"
exit "$code"
