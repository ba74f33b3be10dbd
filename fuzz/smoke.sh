#!/usr/bin/env bash
# Builds every fuzz target and runs each for N seconds (default 20) from its seeds.
# Exits non-zero if a target fails to build or any run finds a crash, leak, timeout or OOM.
#
#   fuzz/smoke.sh [SECONDS]
#
# Env: FUZZ_SANITIZER (default "address"; "none" if ASan is unavailable: the build falls back
# to it by itself when the ASan build fails). New corpus entries go to fuzz/corpus/<target>/
# and crashes to fuzz/artifacts/<target>/ (both git-ignored); fuzz/seeds/ is only read.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-20}"
case "$secs" in '' | *[!0-9]*) echo "smoke.sh: seconds must be a number, not '$secs'" >&2; exit 64 ;; esac
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes -Z flags; this lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1

echo "== building fuzz targets (sanitizer: $sanitizer)"
if ! cargo fuzz build -s "$sanitizer"; then
  if [ "$sanitizer" = none ]; then exit 1; fi
  echo "== the $sanitizer build failed; building without a sanitizer"
  sanitizer=none
  cargo fuzz build -s none
fi

failed=()
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target" "artifacts/$target"
  log="artifacts/$target/smoke.log"
  echo "== $target: ${secs}s from seeds/$target"
  if cargo fuzz run -s "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units)' "$log" | sed "s/^/   /" || true
  else
    failed+=("$target")
    echo "!! $target failed; the end of $log:"
    tail -n 60 "$log"
    grep -h 'Test unit written to' "$log" | sed "s/^/!! /" || true
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzz smoke FAILED: ${failed[*]}"
  exit 1
fi
echo "== fuzz smoke passed"
