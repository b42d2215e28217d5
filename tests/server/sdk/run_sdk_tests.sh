#!/bin/sh
# Runs one SDK test file against `magnetar serve` (CTest server.sdk.*).
# Usage: run_sdk_tests.sh NODE NPM MAGNETAR MODEL TEST_FILE
#        run_sdk_tests.sh NODE NPM MAGNETAR MODEL --setup
# --setup installs the locked SDKs (`npm ci`, skipped while node_modules matches the lock file)
# and writes the tiny model (`magnetar synth --preset tiny`, skipped when present).
set -eu
node=$1
npm=$2
magnetar=$3
model=$4
test_file=$5
cd "$(dirname "$0")"
if [ "$test_file" = "--setup" ]; then
  installed=node_modules/.package-lock.json
  if [ ! -f "$installed" ] || [ package-lock.json -nt "$installed" ]; then
    "$npm" ci --ignore-scripts --no-audit --no-fund --prefer-offline
  fi
  if [ ! -f "$model" ]; then
    mkdir -p "$(dirname "$model")"
    "$magnetar" synth --preset tiny -o "$model.tmp" >/dev/null
    mv "$model.tmp" "$model"
  fi
  exit 0
fi
MAGNETAR=$magnetar MAGNETAR_TINY_MODEL=$model exec "$node" --test --test-reporter=spec "$test_file"
