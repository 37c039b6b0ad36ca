#!/usr/bin/env bash
# Stress test for issue 15: drops opmaps in worker processes (modes `process` and
# `async_process`) while a thread SIGKILLs their workers at random moments, many more times than
# the test does in CI. Each drop must return within 5 s and leave no worker process behind; the
# test fails (it never hangs) and prints the seed to replay with OPERO_STRESS_SEED.
#
#   scripts/stress-drop.sh                  # 20000 iterations (about 5 minutes on 2 cores)
#   OPERO_STRESS_ITERS=100000 scripts/stress-drop.sh
#   OPERO_STRESS_SEED=123 scripts/stress-drop.sh   # replay a failing run's random choices
#
# Linux only (the test finds workers through /proc and kills them through pidfds).
set -euo pipefail
cd "$(dirname "$0")/.."

export OPERO_STRESS_ITERS="${OPERO_STRESS_ITERS:-20000}"
echo "stress-drop.sh: ${OPERO_STRESS_ITERS} iterations" >&2
cargo test -p opero-tests --test dropping_an_opmap_never_hangs_while_its_workers_are_killed "$@" \
  -- --nocapture dropping_an_opmap_never_hangs_while_its_workers_are_killed
