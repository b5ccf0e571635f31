#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), one at a time, at low
# priority. Not part of CI. Exits non-zero on the first crash, printing how to reproduce it.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# cargo-fuzz is installed from crates.io when missing. It runs on the pinned stable
# toolchain: the targets are built with `-s none` (no AddressSanitizer: the code under test is
# safe Rust, and ASan is what needs nightly's `-Zsanitizer`). Should a cargo-fuzz release ever
# insist on nightly-only flags, `RUSTC_BOOTSTRAP=1 scripts/fuzz.sh` is the known workaround.
# `-a` keeps debug assertions and overflow checks on, so an arithmetic overflow is a crash.
set -euo pipefail

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

flags=(-s none -a)
nice -n 10 cargo fuzz build "${flags[@]}"

for target in "${targets[@]}"; do
    echo "== $target: ${seconds}s" >&2
    mkdir -p "corpus/$target"
    # libFuzzer writes new inputs to the first corpus dir: a scratch one, so the committed
    # seeds in fuzz/corpus/<target>/ are read, never grown.
    scratch="$(mktemp -d)"
    log="$(mktemp)"
    set +e
    nice -n 10 cargo fuzz run "${flags[@]}" "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    rm -rf "$scratch"
    # Runs, speed and coverage, as libFuzzer reports them at the end.
    grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|#[0-9]+ +DONE)' "$log" >&2 || true
    if [ "$status" -ne 0 ]; then
        artifact="$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/^Test unit written to //' || true)"
        echo >&2
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5 >&2 || true
        echo "CRASH in $target (full log: $log)" >&2
        if [ -n "$artifact" ]; then
            echo "reproduce: (cd fuzz && cargo fuzz run ${flags[*]} $target $artifact)" >&2
            echo "minimise:  (cd fuzz && cargo fuzz tmin ${flags[*]} $target $artifact)" >&2
            echo "then keep it as a unit test in the owning crate and fix the bug" >&2
        fi
        exit 1
    fi
    rm -f "$log"
done
echo "no crashes in ${#targets[@]} target(s), ${seconds}s each" >&2
