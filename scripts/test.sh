#!/usr/bin/env bash
# Runs every compiled test file under Node's built-in test runner. Tests that need root and BPF
# fail (not skip) when those are missing, so a green run always means the datapath was exercised.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
if [ ${#files[@]} -eq 0 ]; then echo "no test files under dist/test" >&2; exit 1; fi
exec node --test --test-concurrency=4 --test-timeout=300000 "$@" "${files[@]}"
