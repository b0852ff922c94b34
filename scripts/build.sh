#!/usr/bin/env bash
# Builds the three parts: BPF objects (bpf/build/*.o), the N-API addon (native/build/weir_bpf.node)
# and the TypeScript (dist/). Each make is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s -C bpf
make -s -C native
npx tsc -p .
