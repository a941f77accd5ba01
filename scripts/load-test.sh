#!/bin/sh
# The server's load and kill tests at full size (issue 11): 64 concurrent clients sending
# 1,000 requests that mix conversations and shared prefixes, streamed and not (no error but
# deliberate 429s, every answer complete, peak RSS bounded, no leaked fds or threads), and
# `ckv serve` SIGKILLed 20 times during background stores (the store opens, `ckv cache verify`
# is clean, no prefix half-visible). `make test` runs the same tests at a small size.
#
#   scripts/load-test.sh [BUILD_DIR]     (default: build; `make build` first)
set -eu
build=${1:-build}
test -x "$build/server_load_test" || { echo "no $build/server_load_test: run make build" >&2; exit 2; }
CKV_LOAD_CLIENTS=${CKV_LOAD_CLIENTS:-64} CKV_LOAD_REQUESTS=${CKV_LOAD_REQUESTS:-1000} \
CKV_KILL_ITERATIONS=${CKV_KILL_ITERATIONS:-20} \
  exec "$build/server_load_test"
