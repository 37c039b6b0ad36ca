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
#   scripts/mutants.sh --in-diff       only the code the last commit touched (CI); fails on a
#                                      missed mutant. MUTANTS_BASE=<rev> diffs against <rev>
#                                      instead of HEAD~1.
#
# Each part mutates its crate's outcome-deciding files and runs only the tests that exercise them,
# so that a mutant costs an incremental rebuild of one crate and a few test binaries. Settings and
# the mutants left out (each with its reason) are in .cargo/mutants.toml. Results go to
# mutants.out/<part>/; a summary line per part gives caught / missed / timeout / unviable and the
# score, caught (timeouts included) over caught plus missed.
#
# Runs in place (the mutated file is restored after each mutant): do not edit the tree meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Incremental builds: each mutant changes one file of one crate.
export CARGO_INCREMENTAL=1

MUTANTS_VERSION=27.1.0
# CI bound: a diff with more mutants than this tests an even spread of this many of them.
MUTANTS_DIFF_MAX=${MUTANTS_DIFF_MAX:-150}

# Installed when first needed: a CI run whose commit touches no mutable code skips the build.
ensure_cargo_mutants() {
  if [ "$(cargo mutants --version 2>/dev/null)" != "cargo-mutants $MUTANTS_VERSION" ]; then
    echo "mutants.sh: installing cargo-mutants $MUTANTS_VERSION" >&2
    cargo install cargo-mutants --version "$MUTANTS_VERSION" --locked --quiet
  fi
}

# part: package | files it mutates | test packages | cargo test arguments
# The cache backends are checked by the conformance suite (a real redis-server for Redis), opmap
# by the tests of its ordering and one-result-per-item contract.
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
part_tests() {
  local conformance="--test every_backend_passes_the_conformance_suite"
  case $1 in
    core) echo "--test-package opero-core -- --lib --tests" ;;
    memory) echo "--test-package opero-cache-memory,opero-tests -- --lib $conformance --test the_memory_cache_expires_isolates_and_never_stores_errors" ;;
    disk) echo "--test-package opero-cache-disk,opero-tests -- --lib $conformance --test disk_cache_survives_corruption_and_an_unwritable_directory" ;;
    redis) echo "--test-package opero-cache-redis,opero-tests -- --lib $conformance --test redis_cache_survives_a_server_restart" ;;
    parallel) echo "--test-package opero-parallel,opero-tests -- --lib --test opmap_keeps_input_order_when_items_finish_in_reverse --test opmap_returns_one_result_per_input_for_any_input --test opmap_thread_mode_keeps_order_and_one_result_per_item_around_chunk_boundaries" ;;
  esac
}

# Runs cargo-mutants on one part; extra arguments go before the test arguments.
run_part() {
  local part=$1; shift
  local package files re tests
  package=$(part_package "$part")
  files=${MUTANTS_FILES:-$(part_files "$part")}
  # MUTANTS_RE narrows a part to the mutants it matches, e.g. an earlier run's survivors.
  re=${MUTANTS_RE:-$(part_re "$part")}
  tests=$(part_tests "$part")
  mkdir -p "mutants.out/$part"
  local args=(--in-place --no-shuffle -p "$package" -o "mutants.out/$part")
  local f
  for f in $files; do args+=(-f "$f"); done
  [ -n "$re" ] && args+=(--re "$re")
  if [ "$part" != core ]; then
    # cargo-mutants 27.1 runs its baseline on the mutated package alone, whatever
    # --test-package says, so a part whose tests live in opero-tests fails it ("no test target").
    # The baseline runs here instead, on the packages the mutants are tested with; listing
    # (--list) needs none.
    case " $* " in
      *" --list "*) ;;
      *) part_baseline "$part" || return 4 ;;
    esac
    args+=(--baseline skip --timeout 300)
  fi
  # shellcheck disable=SC2086 # the test arguments are words
  cargo mutants "${args[@]}" "$@" $tests
}

# `cargo test` on the unmutated tree with a part's test packages and arguments.
part_baseline() {
  local tests packages rest pkg
  tests=$(part_tests "$1")
  packages=${tests#--test-package }
  packages=${packages%% *}
  rest=${tests#* -- }
  local cargo_args=()
  for pkg in ${packages//,/ }; do cargo_args+=(-p "$pkg"); done
  echo "== $1: baseline (cargo test ${cargo_args[*]} --all-features $rest)"
  # shellcheck disable=SC2086 # the test arguments are words
  cargo test "${cargo_args[@]}" --all-features $rest >"mutants.out/$1/baseline.log" 2>&1 || {
    echo "mutants.sh: $1: the tests fail without any mutation; see mutants.out/$1/baseline.log" >&2
    return 1
  }
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
  # Only `core` by default: a mutant of another part rebuilds opero-tests' binaries (about a
  # minute each here), so a diff touching a backend could take hours of CI.
  # MUTANTS_DIFF_PARTS="core memory ..." widens it.
  for part in ${MUTANTS_DIFF_PARTS:-core}; do
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
    shard=()
    if [ "$count" -gt "$MUTANTS_DIFF_MAX" ]; then
      shards=$(( (count + MUTANTS_DIFF_MAX - 1) / MUTANTS_DIFF_MAX ))
      echo "== $part: $count mutants in the diff, more than MUTANTS_DIFF_MAX=$MUTANTS_DIFF_MAX:" \
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
