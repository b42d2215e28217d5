#!/usr/bin/env bash
# Runs the GGUF reader fuzzer for a bounded time and reports the executions done.
# usage: run_fuzzer.sh BUILD_DIR SECONDS
set -euo pipefail
build=$1
seconds=${2:-60}
corpus=$build/fuzz-corpus
"$build/tests/fuzz/make_gguf_corpus" "$corpus"
log=$build/fuzz.log
artifacts=$build/fuzz-artifacts
mkdir -p "$artifacts"
# A fresh working corpus each run keeps the run bounded and reproducible from the seeds.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! "$build/tests/fuzz/gguf_fuzzer" "$work" "$corpus" -max_total_time="$seconds" \
      -max_len=4096 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$artifacts/" >"$log" 2>&1; then
  tail -n 60 "$log"
  echo "fuzz: FAILED (crash or sanitizer report above; reproducer in $artifacts)"
  exit 1
fi
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
echo "fuzz: gguf_fuzzer ran $runs inputs in ${seconds}s without a crash"
