#!/usr/bin/env bash
# Installs what is missing, then builds and runs every sturdy test:
#   1. g++ 12, a default Release build (-O3 -DNDEBUG, what a user's
#      `cmake -DCMAKE_BUILD_TYPE=Release` compiles): all tests, the
#      consumer-package tests, and every benchmark, example and tool run once
#      briefly (ctest label smoke);
#   2. clang 14, the same -O3 build minus the smoke runs;
#   3. g++ -O1 with AddressSanitizer + UndefinedBehaviorSanitizer: all unit and
#      concurrency tests, the examples' end-to-end tests included (-O1 and
#      line tables only, -g1: what ASan's documentation recommends, and half
#      the compile time of -O2 -g, which made this stage the longest);
#   4. clang -O2 with ThreadSanitizer: the concurrency tests (label concurrency).
# All with -Wall -Wextra -Wpedantic and STURDY_WERROR=ON (-Werror: off by
# default for users, on here). Stops at the first failure. Build folders under
# build/ are reused.
# Servers: a private redis-server and a private rabbitmq-server on loopback
# ports, started here for the tests that need them and stopped on exit; the
# onboarding demo's Prometheus test starts its own Prometheus server.
# Usage: bash scripts/test.sh [stage...]     (stages: gcc clang asan tsan)
#   STURDY_SKIP_SLOW=1  skips the tests labelled slow (real servers,
#                       compile-fail, consumer packages): for a quick local run;
#                       CI runs everything.
#   JOBS=N              parallel build and test jobs (default: nproc).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
bash scripts/deps.sh

JOBS=${JOBS:-$(nproc)}
STAGES=("$@")
((${#STAGES[@]})) || STAGES=(gcc clang asan tsan)
TOTAL_PASS=0
START=$(date +%s)
STAGE_TIMES=()

# The Redis store's tests talk to a private redis-server on a free loopback
# port (the first free one from 16379 up), started here and stopped on exit.
REDIS_DIR=$(mktemp -d)
RABBITMQ_DIR=$(mktemp -d)
cleanup() {
  if [ -f "$REDIS_DIR/redis.pid" ]; then kill "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null || true; fi
  rm -rf "$REDIS_DIR"
  bash tests/support/rabbitmq_server.sh stop "$RABBITMQ_DIR" || true
  rm -rf "$RABBITMQ_DIR"
}
trap cleanup EXIT
trap "exit 130" INT TERM  # so that cleanup runs on Ctrl-C or kill too
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { local p=$1; while port_in_use "$p"; do p=$((p + 1)); done; echo "$p"; }

if command -v redis-server >/dev/null; then
  REDIS_PORT=$(free_port "${STURDY_REDIS_PORT:-16379}")
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log"
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG || {
    cat "$REDIS_DIR/redis.log" >&2
    echo "sturdy test: FAILED to start redis-server on 127.0.0.1:$REDIS_PORT" >&2
    exit 1
  }
  export STURDY_REDIS_URL="127.0.0.1:$REDIS_PORT"
  echo "=== redis-server for the tests on $STURDY_REDIS_URL"
fi
# The RabbitMQ tests talk to a private broker (own node name, data folder and
# loopback ports from 25672 up; tests/support/rabbitmq_server.sh), which one
# test restarts (STURDY_RABBITMQ_DIR). Booting takes 10-40 s on a busy machine.
if [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  read -r STURDY_RABBITMQ_URL _ < <(bash tests/support/rabbitmq_server.sh start "$RABBITMQ_DIR" \
    "${STURDY_RABBITMQ_PORT:-25672}") || { echo "sturdy test: FAILED to start rabbitmq-server" >&2; exit 1; }
  export STURDY_RABBITMQ_URL STURDY_RABBITMQ_DIR=$RABBITMQ_DIR
  echo "=== rabbitmq-server for the tests on $STURDY_RABBITMQ_URL"
fi

# fail STAGE WHY [PASSED FAILED]: the stage's ctest counts when it got that
# far; a configure or build failure counts as one failure.
fail() {
  echo "sturdy test: FAILED in stage '$1' ($2)" >&2
  echo "sturdy: $((TOTAL_PASS + ${3:-0})) passed, ${4:-1} failed"
  exit 1
}

# ctest_counts LOG: prints "PASSED FAILED" from ctest's summary line.
ctest_counts() {
  local line
  line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$1" | tail -1 || true)
  [ -n "$line" ] || { echo "0 1"; return; }
  sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2 \1/' <<<"$line" | awk '{print $1 - $2, $2}'
}

# run_stage NAME CXX OPT FLAGS ONLY_LABEL SKIP_LABELS CMAKE_ARGS...
# OPT: the Release flags ("-O3 -DNDEBUG" is CMake's default); ONLY_LABEL: run
# only the tests with this ctest label (empty: all); SKIP_LABELS: a regex of
# labels not to run (empty: none).
run_stage() {
  local name=$1 cxx=$2 opt=$3 flags=$4 only=$5 skip=$6
  shift 6
  if [ -n "${STURDY_SKIP_SLOW:-}" ]; then skip=${skip:+$skip|}slow; fi
  local ctest_args=()
  [ -z "$only" ] || ctest_args+=(-L "$only")
  [ -z "$skip" ] || ctest_args+=(-LE "$skip")
  local dir="$ROOT/build/$name" stage_start
  stage_start=$(date +%s)
  mkdir -p "$ROOT/build"
  echo "=== [$name] configure ($cxx $opt $flags)"
  cmake -S "$ROOT" -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="$opt" -DCMAKE_CXX_FLAGS="$flags" \
    -DSTURDY_WERROR=ON "$@" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; fail "$name" "configure"; }
  echo "=== [$name] build"
  cmake --build "$dir" -j "$JOBS" -- -k 0 >"$dir.build.log" 2>&1 \
    || { grep -E -A5 'error|Error' "$dir.build.log" | head -80 || tail -40 "$dir.build.log"; fail "$name" "build; log in $dir.build.log"; }
  echo "=== [$name] test"
  local log="$dir.ctest.log"
  (cd "$dir" && ctest -j "$JOBS" --output-on-failure --timeout 300 --no-tests=error "${ctest_args[@]}") >"$log" 2>&1 || {
    tail -n 120 "$log"
    # shellcheck disable=SC2046
    fail "$name" "ctest; log in $log" $(ctest_counts "$log")
  }
  local passed
  read -r passed _ < <(ctest_counts "$log")
  echo "$(grep -E 'tests passed, [0-9]+ tests failed out of' "$log" | tail -1)   ($(( $(date +%s) - stage_start )) s)"
  STAGE_TIMES+=("$name $(( $(date +%s) - stage_start ))s")
  TOTAL_PASS=$((TOTAL_PASS + passed))
}

for stage in "${STAGES[@]}"; do
  case $stage in
    gcc) run_stage gcc g++ "-O3 -DNDEBUG" "" "" "" ;;
    clang) run_stage clang clang++ "-O3 -DNDEBUG" "" "" "smoke" ;;
    asan)
      export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
      run_stage asan g++ "-O1" "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g1" \
        "" "package|smoke" -DSTURDY_BUILD_BENCH=OFF -DSTURDY_BUILD_EXAMPLES=ON ;;
    tsan)
      export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$ROOT/tests/tsan.supp"
      run_stage tsan clang++ "-O2" "-fsanitize=thread -g" "concurrency" "" \
        -DSTURDY_BUILD_BENCH=OFF -DSTURDY_BUILD_EXAMPLES=OFF -DSTURDY_TEST_LABELS=concurrency ;;
    *) echo "unknown stage $stage (gcc clang asan tsan)" >&2; exit 2 ;;
  esac
done

echo "=== all stages green in $(( $(date +%s) - START )) s: ${STAGE_TIMES[*]}"
echo "sturdy: $TOTAL_PASS passed, 0 failed"
