#!/usr/bin/env bash
# Fuzz every target in fuzz/ for SECONDS each (default 60).
#
#   scripts/fuzz.sh [SECONDS]
#
# Installs cargo-fuzz when it is missing, builds all targets once, replays
# the saved reproducers in fuzz/regressions/<target>/, then fuzzes each
# target, growing its corpus in fuzz/corpus/<target>/ (seeded from
# fuzz/seeds/<target>/ when there is one). Fails if any target crashes,
# naming the input that did it and the command that replays it.
#
# cargo-fuzz builds with AddressSanitizer, which needs `-Zsanitizer`;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept it (its ASan runtime
# ships with the standard library). Builds go to fuzz/target, apart from the
# main crate's target/, or to $DOORWARDEN_FUZZ_TARGET when set: a directory
# outside the work tree survives fresh clones (CI) and saves the first build
# (about 10 minutes on 2 cores).
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS]   (a whole number of seconds per target)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

export RUSTC_BOOTSTRAP=1
target_dir="${DOORWARDEN_FUZZ_TARGET:-$root/fuzz/target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

mapfile -t targets < <(cargo fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "no fuzz targets found in $root/fuzz" >&2
    exit 1
fi

start=$(date +%s)
echo "== building ${#targets[@]} fuzz targets (${targets[*]})"
cargo fuzz build --target-dir "$target_dir"
echo "== built in $(($(date +%s) - start)) s"
# Run the binaries just built rather than `cargo fuzz run`, which rebuilds
# first: every target then fuzzes the same code, even if the tree changes
# meanwhile. The settings are the ones `cargo fuzz run` would pass.
bin_dir="$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=()

# Report a failed run: the panic, the input that caused it and how to replay
# it: the saved reproducer given, else the input libFuzzer wrote out.
report() {
    local target="$1" log="$2" input="${3:-}"
    if [ -z "$input" ]; then
        input="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
    fi
    echo "!! $target failed" >&2
    grep -E -A 1 '^thread .* panicked' "$log" | head -n 4 >&2 || true
    grep -E '^(==[0-9]+==ERROR|SUMMARY:)' "$log" | head -n 3 >&2 || true
    if [ -n "$input" ]; then
        input="$(realpath "$input" 2>/dev/null || echo "$input")"
        echo "   input:     $input" >&2
        echo "   replay:    (cd $root/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --target-dir $target_dir $target $input)" >&2
        echo "   minimize:  (cd $root/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz tmin --target-dir $target_dir $target $input)" >&2
    fi
    echo "   full log follows (last 40 lines):" >&2
    tail -n 40 "$log" >&2
}

for target in "${targets[@]}"; do
    mkdir -p "artifacts/$target"
    regressions=()
    if [ -d "regressions/$target" ]; then
        mapfile -t regressions < <(find "regressions/$target" -type f | sort)
    fi
    if [ "${#regressions[@]}" -gt 0 ]; then
        echo "== $target: replaying ${#regressions[@]} saved reproducers"
        failing=""
        for input in "${regressions[@]}"; do
            log="$logs/$target.regression.log"
            if ! "$bin_dir/$target" -artifact_prefix="artifacts/$target/" "$input" >"$log" 2>&1; then
                report "$target" "$log" "$input"
                failing="yes"
            fi
        done
        if [ -n "$failing" ]; then
            failed+=("$target (saved reproducer)")
            continue
        fi
    fi

    corpora=("corpus/$target")
    mkdir -p "corpus/$target"
    if [ -d "seeds/$target" ]; then
        corpora+=("seeds/$target")
    fi
    echo "== $target: fuzzing for $seconds s"
    log="$logs/$target.log"
    if "$bin_dir/$target" -artifact_prefix="artifacts/$target/" "${corpora[@]}" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "$log" | sed "s/^/   /" || true
        grep -E '^#[0-9]+.*DONE' "$log" | tail -n 1 | sed "s/^/   /" || true
    else
        report "$target" "$log"
        failed+=("$target")
    fi
done

echo "== fuzzing took $(($(date +%s) - start)) s in all"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran $seconds s each without a crash"
