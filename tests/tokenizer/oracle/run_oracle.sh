#!/bin/sh
# Runs the Hugging Face oracle against the committed expected.json (CTest tokenizer.hf_oracle_live).
# Usage: run_oracle.sh NODE NPM
set -eu
node=$1
npm=$2
cd "$(dirname "$0")"
# npm records the installed tree in node_modules/.package-lock.json; reinstall when it is missing
# or older than the lock file.
installed=node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ package-lock.json -nt "$installed" ]; then
  "$npm" ci --ignore-scripts --no-audit --no-fund --prefer-offline
fi
exec "$node" make_expected.mjs --check
