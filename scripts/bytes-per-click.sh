#!/usr/bin/env bash
# Bytes on disk per click / per invitation after a simulated year with retention on
# (see scripts/bytes_per_click.py). Builds the mesh, then runs the simulation:
#   scripts/bytes-per-click.sh [--months 12] [--invitations 100] [--clicks 1000] [--binary PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
if [[ " $* " != *" --binary "* ]]; then
  if [[ $profile == release ]]; then cargo build --release -p referral-mesh; else cargo build -p referral-mesh; fi
  set -- --binary "target/$profile/referral-mesh" "$@"
fi
exec python3 scripts/bytes_per_click.py "$@"
