#!/usr/bin/env bash
# Installs the Debian 12 packages the build needs. Idempotent: does nothing when all are
# present. As root it installs them; otherwise it prints the one command to run.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libdnnl-dev            # oneDNN: bf16/f32 matmul (brgemm, AVX512-BF16)
  ocl-icd-opencl-dev     # Debian's oneDNN CMake config requires OpenCL (its GPU runtime)
  liburing-dev           # io_uring
  nlohmann-json3-dev libcli11-dev
  libcpp-httplib-dev     # ckv serve
  libpcre2-dev libicu-dev zlib1g-dev libxxhash-dev
  libgtest-dev libgmock-dev
  python3 python3-matplotlib fio
)

# Node.js + npm run the OpenAI client test; any installed node will do (Debian's, or one that
# came with the machine), so these are checked by command, not by package.
command -v node >/dev/null && command -v npm >/dev/null || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  [[ "$p" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "missing Debian packages; run:"
  echo "  sudo apt-get install -y ${missing[*]}"
  exit 1
fi
