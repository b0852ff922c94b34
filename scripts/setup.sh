#!/usr/bin/env bash
# Sets a fresh Debian machine up for Weir and builds it: the Debian packages the build and the lab
# need (only those missing are installed), the npm dependencies (npm ci, when the lock changed),
# then BPF objects, the native addon and the TypeScript (scripts/build.sh).
# Safe to run again: every step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "weir setup: $1 needs root (run as root, or: sudo npm $npm_cmd)" >&2
    exit 1
  fi
}
npm_cmd=${npm_lifecycle_event:-run setup}

# Debian packages: tool -> package. iperf3 is for `npm run bench -- throughput`; prometheus
# (promtool and the server) for the alert-rule tests and the lab's alert end-to-end test.
declare -A want=(
  [clang]=clang [llc]=llvm [bpftool]=bpftool [ip]=iproute2 [iperf3]=iperf3
  [make]=make [g++]=g++ [pkg-config]=pkg-config [promtool]=prometheus
)
missing=()
for tool in "${!want[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${want[$tool]}")
done
[ -f /usr/include/bpf/libbpf.h ] || missing+=(libbpf-dev)
[ -f /usr/include/gelf.h ] || missing+=(libelf-dev)
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
# clang -target bpf needs the kernel's uapi headers (asm/types.h) from linux-libc-dev.
[ -f /usr/include/linux/bpf.h ] || missing+=(linux-libc-dev)
if [ ${#missing[@]} -gt 0 ]; then
  need_root "installing ${missing[*]}"
  echo "weir setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm dependencies: reinstall only when package-lock.json is newer than the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # package-lock.json lists chdb's engine packages for every platform (os/cpu-restricted, so npm ci
  # installs only this machine's). The registry here publishes only @chdb/lib-linux-x64-gnu, and
  # npm install then leaves the others out of the lock, which npm ci refuses: after an
  # `npm install`, check that the @chdb/lib-darwin-* and lib-linux-arm64-gnu entries are still there.
  echo "weir setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

bash scripts/build.sh
