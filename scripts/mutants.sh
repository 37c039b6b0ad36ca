#!/usr/bin/env bash
# Mutation testing with cargo-mutants: how many deliberately wrong lines the tests notice.
#
#   scripts/mutants.sh                 the whole measurement, crate by crate (README "Testing")
#   scripts/mutants.sh core memory     only the named parts (core memory disk redis parallel)
#   MUTANTS_FILES="opero-core/src/key.rs" scripts/mutants.sh core
#                                      only these files of the part
#   MUTANTS_RE='^(name|name)$' scripts/mutants.sh core
#                                      only the mutants whose names (as in missed.txt) match:
#                                      re-tests an earlier run's survivors after new tests
#   scripts/mutants.sh --in-diff       only the code the last commit touched, in every part (CI);
#                                      fails on a missed mutant. MUTANTS_BASE=<rev> diffs
#                                      against <rev> instead of HEAD~1; MUTANTS_DIFF_PARTS picks
#                                      the parts.
#
# Each part mutates its crate's outcome-deciding files and runs only that crate's unit and
# integration tests, so that a mutant costs an incremental rebuild of one crate and a few test
# binaries. Settings and
# the mutants left out (each with its reason) are in .cargo/mutants.toml. Results go to
# mutants.out/<part>/; a summary line per part gives caught / missed / timeout / unviable and the
# score, caught (timeouts included) over caught plus missed.
#
# With MUTANTS_JOBS=1 and --in-diff it runs in place (the mutated file is restored after each
# mutant): do not edit the tree meanwhile. Otherwise cargo-mutants tests in copies of the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Incremental builds: each mutant changes one file of one crate.
export CARGO_INCREMENTAL=1

MUTANTS_VERSION=27.1.0
# Mutants tested at once by the whole measurement. Two on two cores: a mutant's build and test
# leave a core idle part of the time (one crate, one linker); on the core part this took 212 s
# against 307 s for one at a time (README "Testing"). --in-place, used with one job and by
# --in-diff, is incompatible with more.
MUTANTS_JOBS=${MUTANTS_JOBS:-2}
# No debug info in the whole measurement: builds are most of a mutant's cost (opero-core's test
# binary links in seconds without it). Not for --in-diff, which reuses the tree CI just built.
if [ "${1:-}" != "--in-diff" ]; then
  export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0
fi
# CI bounds: a diff with more core mutants than MUTANTS_DIFF_MAX tests an even spread of that
# many; the other parts share MUTANTS_DIFF_MAX_PARTS the same way (see --in-diff below).
MUTANTS_DIFF_MAX=${MUTANTS_DIFF_MAX:-150}
MUTANTS_DIFF_MAX_PARTS=${MUTANTS_DIFF_MAX_PARTS:-24}

# Installed when first needed: a CI run whose commit touches no mutable code skips the build.
ensure_cargo_mutants() {
  if [ "$(cargo mutants --version 2>/dev/null)" != "cargo-mutants $MUTANTS_VERSION" ]; then
    echo "mutants.sh: installing cargo-mutants $MUTANTS_VERSION" >&2
    cargo install cargo-mutants --version "$MUTANTS_VERSION" --locked --quiet
  fi
}

# part: package | files it mutates | the functions it mutates when not all
# cargo-mutants tests the package it mutates; `-- --lib --tests` runs its unit and integration
# tests, not its doctests. The cache backends run the conformance suite (crate
# opero-conformance; a real redis-server for Redis) from their tests/, opero-parallel the tests of
# opmap's ordering and one-result-per-item contract: a mutant rebuilds one crate and its few test
# binaries, never opero-tests'.
part_package() {
  case $1 in
    core) echo opero-core ;;
    memory) echo opero-cache-memory ;;
    disk) echo opero-cache-disk ;;
    redis) echo opero-cache-redis ;;
    parallel) echo opero-parallel ;;
    *) echo "mutants.sh: unknown part '$1' (core memory disk redis parallel)" >&2; exit 2 ;;
  esac
}
part_files() {
  case $1 in
    core) echo "opero-core/src/*.rs" ;;
    memory) echo "opero-cache-memory/src/*.rs" ;;
    disk) echo "opero-cache-disk/src/*.rs" ;;
    # The get/set/expiry paths; the rate limiter and the single-flight locks are not in scope.
    redis) echo "opero-cache-redis/src/backend.rs" ;;
    parallel) echo "opero-parallel/src/opmap.rs opero-parallel/src/executor.rs" ;;
  esac
}
part_re() {
  case $1 in
    redis) echo '(RedisCache::(decode|set_cmd|get_cmd|del_cmd)|CacheBackend for RedisCache>::(get|set|delete)|AsyncCacheBackend for RedisCache>::(get|set|delete)_async)' ;;
    *) echo '' ;;
  esac
}

# Runs cargo-mutants on one part; extra arguments go before the test arguments.
run_part() {
  local part=$1; shift
  local package files re
  package=$(part_package "$part")
  files=${MUTANTS_FILES:-$(part_files "$part")}
  # MUTANTS_RE narrows a part to the mutants it matches, e.g. an earlier run's survivors.
  re=${MUTANTS_RE:-$(part_re "$part")}
  mkdir -p "mutants.out/$part"
  local args=(--no-shuffle -p "$package" -o "mutants.out/$part")
  if [ "$MUTANTS_JOBS" -gt 1 ]; then
    # cargo-mutants tests in copies of the tree, one per job, each built once from scratch.
    args+=(--jobs "$MUTANTS_JOBS")
  else
    args+=(--in-place)
  fi
  local f
  for f in $files; do args+=(-f "$f"); done
  [ -n "$re" ] && args+=(--re "$re")
  cargo mutants "${args[@]}" "$@" -- --lib --tests
}

summary() {
  local part=$1
  python3 - "mutants.out/$part/mutants.out/outcomes.json" "$part" <<'EOF'
import json, sys
path, part = sys.argv[1], sys.argv[2]
try:
    d = json.load(open(path))
except FileNotFoundError:
    print(f"{part:9} no outcomes (no mutants?)")
    sys.exit(0)
caught, missed, timeout, unviable = d["caught"], d["missed"], d["timeout"], d["unviable"]
tested = caught + timeout + missed
score = 100.0 * (caught + timeout) / tested if tested else 100.0
print(f"{part:9} caught {caught:4}  timeout {timeout:3}  missed {missed:3}  unviable {unviable:4}  score {score:5.1f}%")
EOF
}

if [ "${1:-}" = "--in-diff" ]; then
  shift
  # In place: the tree CI just tested is built already, and a diff has few mutants, so copies
  # built from scratch would cost more than a second job saves.
  MUTANTS_JOBS=1
  if [ -n "${MUTANTS_BASE:-}" ]; then
    base=$MUTANTS_BASE
  elif git rev-parse --verify -q HEAD~1 >/dev/null; then
    base=HEAD~1
  else
    echo "mutants.sh: no parent commit and no MUTANTS_BASE: nothing to compare, skipped"
    exit 0
  fi
  mkdir -p mutants.out
  status=0
  # Every part by default: each tests its mutants with its own crate's tests, a few seconds a
  # mutant. MUTANTS_DIFF_PARTS="core redis" narrows it.
  parts=()
  counts=()
  for part in ${MUTANTS_DIFF_PARTS:-core memory disk redis parallel}; do
    part_package "$part" >/dev/null
    # shellcheck disable=SC2046 # file globs: the shell expands them to the part's files (a glob
    # that matches nothing reaches git as it is), so test modules in subfolders are not in the diff
    git diff "$base" -- $(part_files "$part") > "mutants.out/$part.diff"
    if [ ! -s "mutants.out/$part.diff" ]; then
      continue
    fi
    ensure_cargo_mutants
    count=$(run_part "$part" --in-diff "mutants.out/$part.diff" --list | grep -c . || true)
    if [ "$count" = 0 ]; then
      echo "== $part: the diff touches no mutable code"
      continue
    fi
    parts+=("$part")
    counts+=("$count")
  done
  # The other parts' mutants cost several seconds each (a real redis-server, temp dirs, worker
  # threads) against about two for core's: together they get MUTANTS_DIFF_MAX_PARTS, shared
  # evenly among the parts the diff touches.
  others=0
  for part in "${parts[@]}"; do [ "$part" = core ] || others=$((others + 1)); done
  for i in "${!parts[@]}"; do
    part=${parts[$i]}
    count=${counts[$i]}
    if [ "$part" = core ]; then
      max=$MUTANTS_DIFF_MAX
    else
      max=$(( MUTANTS_DIFF_MAX_PARTS / others ))
      [ "$max" -ge 1 ] || max=1
    fi
    shard=()
    if [ "$count" -gt "$max" ]; then
      shards=$(( (count + max - 1) / max ))
      echo "== $part: $count mutants in the diff, more than the $max it may test here:" \
        "testing every ${shards}th (run scripts/mutants.sh $part for all)"
      shard=(--shard "0/$shards" --sharding round-robin)
    else
      echo "== $part: $count mutants in the diff"
    fi
    rc=0
    run_part "$part" --in-diff "mutants.out/$part.diff" "${shard[@]}" || rc=$?
    # cargo-mutants: 2 a mutant was missed, 3 only timeouts (which count as caught), 4 the tests
    # fail without any mutation.
    case $rc in
      0 | 3) ;;
      2)
        status=1
        echo "mutants.sh: $part: a mutant was missed; see mutants.out/$part/mutants.out/missed.txt." \
          "Add a test that catches it, or exclude it in .cargo/mutants.toml with the reason no" \
          "meaningful test can." >&2
        ;;
      *)
        status=1
        echo "mutants.sh: $part: cargo mutants failed (exit $rc); see mutants.out/$part/mutants.out/." >&2
        ;;
    esac
    summary "$part"
  done
  exit $status
fi

parts=("$@")
[ ${#parts[@]} = 0 ] && parts=(core memory disk redis parallel)
for part in "${parts[@]}"; do part_package "$part" >/dev/null; done
ensure_cargo_mutants
start=$(date +%s)
for part in "${parts[@]}"; do
  echo "== $part"
  part_start=$(date +%s)
  # A missed mutant is a result here, not a failure: the summary reports it.
  run_part "$part" || true
  echo "== $part: $(( ($(date +%s) - part_start) / 60 )) min"
done
echo "== summary ($(( ($(date +%s) - start) / 60 )) min)"
for part in "${parts[@]}"; do summary "$part"; done
