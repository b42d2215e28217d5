#!/usr/bin/env bash
# Measures `magnetar synth` write throughput for full-size presets into a RAM file system.
# usage: bench/synth_bench.sh MAGNETAR_BINARY [DIR]     (DIR defaults to /dev/shm)
#
# Writes v4-flash-q2 (81 GB) once on all cores, validates it with `inspect`, deletes it, then
# writes an 8-layer slice of it (~15 GB) with 1, 4 and all threads to show the scaling.
set -euo pipefail
bin=$1
dir=${2:-/dev/shm}
cores=$(nproc)
echo "== synth_bench $(date -u +%F) on $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $dir"
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
run() {  # label, args...
  local label=$1
  shift
  local start
  start=$(date +%s%N)
  "$bin" synth "$@" >/tmp/synth_bench.out
  echo "$label: $(head -n 1 /tmp/synth_bench.out) [wall $(ms_since "$start") ms]"
}
run "v4-flash-q2 x$cores" --preset v4-flash-q2 -o "$dir/bench-flash-q2.gguf"
start=$(date +%s%N)
"$bin" inspect --no-tensors "$dir/bench-flash-q2.gguf" | grep -E "^(validation|ds4 types)|total"
echo "inspect: $(ms_since "$start") ms"
rm -f "$dir/bench-flash-q2.gguf"
for t in 1 4 "$cores"; do
  run "v4-flash-q2 --layers 8 x$t" --preset v4-flash-q2 --layers 8 --threads "$t" \
    -o "$dir/bench-slice.gguf"
  rm -f "$dir/bench-slice.gguf"
done
run "tiny (exact encoders) x$cores" --preset tiny -o "$dir/bench-tiny.gguf"
rm -f "$dir/bench-tiny.gguf"
