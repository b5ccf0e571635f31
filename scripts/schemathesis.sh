#!/usr/bin/env bash
# Proves /openapi.json says what the server enforces: builds the mesh, starts it on a free
# port with a fresh data dir, waits for /readyz, and runs the pinned schemathesis with every
# check, a fixed seed and a bounded number of examples per operation (the coverage phase
# adds its own boundary cases for every constraint), as the admin. Exits non-zero on any
# failure. Used by .ci/run, where any failure fails CI; about half a minute on two cores
# once the mesh is built.
#
#   scripts/schemathesis.sh [EXAMPLES]        # examples per operation, default 5
#
# schemathesis is installed from PyPI (pinned) into target/schemathesis-venv when missing.
# SCHEMATHESIS_SEED changes the seed; extra schemathesis arguments go in SCHEMATHESIS_ARGS.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
examples="${1:-5}"
seed="${SCHEMATHESIS_SEED:-20261207}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

log() { printf '\n== %s\n' "$*" >&2; }

venv="$root/target/schemathesis-venv"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

log "cargo build -p referral-mesh"
cargo build -q -p referral-mesh
bin="$root/target/debug/referral-mesh"

data="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
mesh_pid=""
cleanup() {
  if [ -n "$mesh_pid" ]; then
    kill "$mesh_pid" 2>/dev/null || true
    wait "$mesh_pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT

log "starting the mesh on $url (data in $data)"
# Rate limits are per caller and schemathesis is one caller sending thousands of requests:
# at the defaults most answers would be 429s, which every check accepts, and prove nothing.
API_RATE_LIMIT_PER_MINUTE=10000000 REDIRECT_RATE_LIMIT_PER_MINUTE=10000000 \
  "$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" --grpc-ports auto --log-format json \
  >"$data/mesh.log" 2>&1 &
mesh_pid=$!

# Ready means /readyz answers and the admin token is written (the mesh writes it just after
# the gateway starts serving, so /readyz alone may come first).
for _ in $(seq 1 120); do
  if [ -s "$data/admin-token" ] && curl -fsS "$url/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$mesh_pid" 2>/dev/null; then
    echo "the mesh exited before it was ready:" >&2
    tail -n 40 "$data/mesh.log" >&2
    exit 1
  fi
  sleep 0.5
done
if ! [ -s "$data/admin-token" ] || ! curl -fsS "$url/readyz" >/dev/null; then
  echo "the mesh is not ready (or wrote no admin token) after 60 s" >&2
  tail -n 40 "$data/mesh.log" >&2
  exit 1
fi
token="$(cat "$data/admin-token")"

log "schemathesis $SCHEMATHESIS_VERSION: --checks all, seed $seed, $examples examples per operation"
# Two processes, one core each, over two halves of the API (by tag): one process with two
# workers is no faster on two cores, and its threads trip a CPython 3.11 race in the `ast`
# module that hypothesis uses to describe its filters. filter_too_much is a generation
# health check (how many drawn bodies a pattern filters away), not a check of the server.
run_half() {
  local name="$1"
  shift
  # shellcheck disable=SC2086 # SCHEMATHESIS_ARGS is a list of arguments
  PYTHONPATH="$root/scripts" SCHEMATHESIS_HOOKS=schemathesis_hooks \
  "$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" run "$url/openapi.json" \
    --checks all \
    --seed "$seed" \
    --max-examples "$examples" \
    --workers 1 \
    --suppress-health-check filter_too_much \
    --no-color \
    --warnings off \
    --request-timeout 10 \
    -H "Authorization: Bearer $token" \
    "$@" ${SCHEMATHESIS_ARGS:-} >"$data/schemathesis-$name.log" 2>&1
}
first=(--include-tag "Referral codes" --include-tag "Invitations" --include-tag "Tracking and attribution")
second=(--exclude-tag "Referral codes" --exclude-tag "Invitations" --exclude-tag "Tracking and attribution")
status=0
run_half first "${first[@]}" &
first_pid=$!
run_half second "${second[@]}" || status=$?
wait "$first_pid" || status=$?
cat "$data/schemathesis-first.log" "$data/schemathesis-second.log"

if [ "$status" -ne 0 ]; then
  echo "schemathesis found failures (exit $status); the mesh's log ends:" >&2
  tail -n 20 "$data/mesh.log" >&2
fi
exit "$status"
