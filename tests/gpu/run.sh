#!/usr/bin/env bash
# The GPU test run, for a machine with a CUDA GPU and prebuilt binaries (it builds nothing).
#
#   tests/gpu/run.sh BIN_DIR [OUT_DIR]
#
# BIN_DIR holds `magnetar` and `magnetar_cuda_tests`. The script synthesizes the tiny q2, q4 and
# f32 models, runs the whole GPU test binary on them, runs compute-sanitizer's memcheck and racecheck
# on a short tiny-model workload and the kernel unit tests, and prints a summary table. Logs go to
# OUT_DIR (default: a new temporary directory). Exit status 0 only when every step passed.
#
# The tokenizer files come from MAGNETAR_TOKENIZER_DIR, by default data/deepseek-v4-tokenizer of
# the repository holding this script.
set -u

if [[ $# -lt 1 || ! -x "$1/magnetar" || ! -x "$1/magnetar_cuda_tests" ]]; then
  echo "usage: $0 BIN_DIR [OUT_DIR]  (BIN_DIR with magnetar and magnetar_cuda_tests)" >&2
  exit 2
fi
bin=$(cd "$1" && pwd)
out=${2:-$(mktemp -d)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
export PATH=$PATH:/usr/local/cuda/bin
export MAGNETAR_TOKENIZER_DIR=${MAGNETAR_TOKENIZER_DIR:-$repo/data/deepseek-v4-tokenizer}
models=$(mktemp -d)
trap 'rm -rf "$models"' EXIT

names=()
results=()
times=()
failed=0

# step NAME COMMAND...: runs the command with its output in OUT_DIR/NAME.log and records the result.
step() {
  local name=$1
  shift
  local start end status
  start=$(date +%s.%N)
  "$@" >"$out/$name.log" 2>&1
  status=$?
  end=$(date +%s.%N)
  names+=("$name")
  times+=("$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f s", b - a }')")
  if [[ $status -eq 0 ]]; then
    results+=("pass")
  else
    results+=("FAIL ($status)")
    failed=1
    echo "--- $name failed; the end of $out/$name.log:"
    tail -n 30 "$out/$name.log"
  fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/gpu.txt" 2>&1

step synth-q2 "$bin/magnetar" synth --preset tiny --types q2 -o "$models/tiny-q2.gguf"
step synth-q4 "$bin/magnetar" synth --preset tiny --types q4 -o "$models/tiny-q4.gguf"
step synth-f32 "$bin/magnetar" synth --preset tiny --types f32 -o "$models/tiny-f32.gguf"
export MAGNETAR_TINY_Q2=$models/tiny-q2.gguf
export MAGNETAR_TINY_Q4=$models/tiny-q4.gguf
export MAGNETAR_TINY_F32=$models/tiny-f32.gguf

step gpu-tests "$bin/magnetar_cuda_tests"

# Optionally (MAGNETAR_GPU_BENCH=1) the throughput on a 3-layer model of Flash's shapes (7 GiB).
if [[ ${MAGNETAR_GPU_BENCH:-0} == 1 ]]; then
  step synth-bench "$bin/magnetar" synth --preset v4-flash-q2 --layers 3 --compress-ratios 4,128,4 \
    --hash-layers 1 --no-mtp -o "$models/flash-3-layers.gguf"
  MAGNETAR_BENCH_MODEL=$models/flash-3-layers.gguf step bench "$bin/magnetar_cuda_tests" \
    --gtest_filter='CudaThroughput.*'
  rm -f "$models/flash-3-layers.gguf"
fi

# The sanitizers slow kernels down by one or two orders of magnitude: a short workload that still
# reaches every kernel, and the kernel unit tests.
sanitized='CudaBackendTest.ShortWorkload:CudaLinear*:CudaNumerics*:*CudaGemv*:*GroupedExperts*:MoeChunkTensorCores*:CudaSparseAttention*:CudaIndexer*:CudaSmallKernels*'
# racecheck: the kernels with shared-memory pipelines (GEMV rings, attention tiles, indexer). The
# small-kernel tests take minutes under racecheck; their results are compared bit for bit with the
# reference kernels instead, which a race would break.
raced='CudaNumerics*:*CudaGemv*:CudaSparseAttention*:CudaIndexer*'
if command -v compute-sanitizer >/dev/null; then
  step memcheck timeout 200 compute-sanitizer --tool memcheck --error-exitcode 1 \
    "$bin/magnetar_cuda_tests" --gtest_filter="$sanitized"
  # racecheck instruments every shared-memory access: kernel unit tests only (the model-level
  # workload alone takes minutes under it).
  step racecheck timeout 300 compute-sanitizer --tool racecheck --error-exitcode 1 \
    "$bin/magnetar_cuda_tests" --gtest_filter="$raced"
else
  names+=("sanitizers")
  results+=("FAIL (compute-sanitizer not found)")
  times+=("-")
  failed=1
fi

echo
echo "GPU: $(cat "$out/gpu.txt")"
grep -h '^\[ \(logits\|state\|experts\|speed\)' "$out"/gpu-tests.log "$out"/bench.log 2>/dev/null | head -60
tests_line=$(grep -E '^\[  (PASSED|FAILED) +\]' "$out/gpu-tests.log" | head -3 | tr '\n' ' ')
echo "gpu-tests: $tests_line"
echo
printf '%-12s %-28s %s\n' step result time
for i in "${!names[@]}"; do
  printf '%-12s %-28s %s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
done
echo "logs: $out"
exit $failed
