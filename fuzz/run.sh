#!/usr/bin/env bash
# Seeds the corpora, then runs each fuzz target for SECONDS (default 30), one after the other, single
# process. Fails when a target finds a crash, a hang (-timeout), or more than 256 MB of memory (RSS or
# one allocation); the input is then in fuzz/artifacts/<target>/. Needs the nightly toolchain and
# cargo-fuzz. libFuzzer's output goes to fuzz/logs/<target>.log; this prints its final statistics,
# and the end of the log when a target fails.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]   (targets: payload decode frame config)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(payload decode frame config)

# AddressSanitizer keeps up to 256 MB of freed memory in quarantine (to catch use after free), which
# counts against -rss_limit_mb: with buffers of tens of MB freed every run that alone reaches the limit.
# 16 MB keeps the RSS limit about the program's own memory.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"

fuzz/seed.sh
cargo +nightly fuzz build
mkdir -p fuzz/logs
failed=()
for target in "${targets[@]}"; do
  log="fuzz/logs/$target.log"
  echo "fuzzing $target for ${seconds}s (log: $log)"
  if cargo +nightly fuzz run "$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=256 -malloc_limit_mb=256 -timeout=10 \
    -dict="fuzz/dict/$target.dict" -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(stat::|Done )' "$log" | sed "s/^/  $target: /"
  else
    failed+=("$target")
    tail -n 80 "$log"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (inputs in fuzz/artifacts/; reproduce with" \
    "cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/FILE)" >&2
  exit 1
fi
echo "fuzzing: ${targets[*]}: ${seconds}s each, nothing found"
