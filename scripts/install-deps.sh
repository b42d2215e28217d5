#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Magnetar builds and tests with. Idempotent: packages that
# are already installed are skipped, and apt is not touched at all when nothing is missing.
# Uses sudo when not run as root.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libgtest-dev libgmock-dev          # tests
  nlohmann-json3-dev libcpp-httplib-dev libpcre2-dev libssl-dev libcli11-dev libfmt-dev libedit-dev
  clang libclang-rt-dev              # libFuzzer and sanitizers for the GGUF fuzz target
  python3-numpy python3-pytest       # test oracles
  openssl                            # certificates for the server's TLS test
)

# Node.js runs the tokenizer's Hugging Face oracle (tests/tokenizer/oracle). Many machines have it
# from another source (NodeSource bundles npm), so Debian's packages are only asked for without it.
if ! command -v npm >/dev/null 2>&1; then packages+=(nodejs npm); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
