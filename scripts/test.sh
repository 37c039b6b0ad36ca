#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration and doc tests), Redis included.
# The Redis tests start their own redis-server on a free loopback port; this script only makes
# sure the binary is there, installing it with apt-get when run as root on Debian or Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing redis-server (needed by the Redis cache tests)" >&2
    # A package mirror can fail for a moment; three tries keep a fresh machine's run from dying
    # of that alone.
    for try in 1 2 3; do
      if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; then
        break
      fi
      [ "$try" = 3 ] && { echo "test.sh: could not install redis-server" >&2; exit 1; }
      sleep 5
    done
  else
    echo "test.sh: redis-server is needed by the Redis cache tests and is not installed." >&2
    echo "         Debian/Ubuntu: sudo apt-get install redis-server   macOS: brew install redis" >&2
    exit 1
  fi
fi

cargo test --workspace --all-features "$@"
