#!/bin/sh
# Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
# -----------------------------------------------------------------------------
# The onboarding demo's metrics, scraped by a real Prometheus server (ctest
# label `slow`; see docs/operations.md, "Try it").
#
#   metrics_scrape_test.sh EXAMPLE_ONBOARDING PROMETHEUS PROMTOOL
#
# 1. Runs the demo with `--metrics-port 0 --linger-seconds 300` (it picks a
#    free port and prints its URL), fetches /metrics, and checks it with
#    `promtool check metrics` and for the series the demo must export.
# 2. Starts Prometheus on a loopback port with a private config (scrape every
#    1 s) and data folder, and polls its HTTP API until a query for the
#    breaker's state series returns the demo's breaker.
# Every wait is a poll with a bound (never a fixed sleep); both servers are
# killed at the end, whether the test passed or not.
# -----------------------------------------------------------------------------
set -u

if [ $# -ne 3 ]; then
  echo "usage: $0 EXAMPLE_ONBOARDING PROMETHEUS PROMTOOL" >&2
  exit 2
fi
exe=$1
prometheus=$2
promtool=$3

work=$(mktemp -d "${TMPDIR:-/tmp}/sturdy_metrics_scrape.XXXXXX") || exit 1
demo_pid=
prom_pid=
cleanup() {
  [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null
  [ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null
  [ -n "$prom_pid" ] && wait "$prom_pid" 2>/dev/null
  [ -n "$demo_pid" ] && wait "$demo_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

fail() {
  echo "FAIL: $*"
  for f in demo.txt metrics.txt prometheus.log answer.json; do
    if [ -s "$work/$f" ]; then
      echo "--- $f (last lines)"
      tail -n 25 "$work/$f"
    fi
  done
  exit 1
}

# poll TRIES COMMAND...: runs COMMAND until it succeeds, at most TRIES times,
# 0.2 s apart (at most TRIES / 5 seconds).
poll() {
  tries=$1
  shift
  i=0
  while [ "$i" -lt "$tries" ]; do
    "$@" && return 0
    i=$((i + 1))
    sleep 0.2
  done
  return 1
}

alive() { kill -0 "$1" 2>/dev/null; }

# --- 1. the demo and its exposition -------------------------------------------

"$exe" --metrics-port 0 --linger-seconds 300 >"$work/demo.txt" 2>&1 &
demo_pid=$!

# The URL is printed before act 1; the run itself takes well under a second
# of real time (virtual time), then the demo lingers.
demo_url() { grep -o 'http://127\.0\.0\.1:[0-9]*/metrics' "$work/demo.txt" | head -n 1; }
demo_lingers() {
  alive "$demo_pid" || fail "the demo exited before lingering (status above)"
  grep -q '^serving metrics at ' "$work/demo.txt"
}
poll 300 demo_lingers || fail "the demo did not finish its run within 60 s"
url=$(demo_url)
[ -n "$url" ] || fail "the demo printed no metrics URL"
port=${url#http://127.0.0.1:}
port=${port%/metrics}

curl -sf "$url" >"$work/metrics.txt" || fail "curl $url failed"
"$promtool" check metrics <"$work/metrics.txt" || fail "promtool check metrics rejected the exposition"

# The series an operator needs, with the values the run left behind (seed 42:
# the breaker closed again in act 3, the dead-letter queue replayed empty, the
# outage drill injected faults).
expect_line() {
  grep -q "$1" "$work/metrics.txt" || fail "no line matching '$1' in the exposition"
}
expect_line '^sturdy_circuit_breaker_state{name="email-api",state="closed"} 1$'
expect_line '^sturdy_circuit_breaker_state{name="email-api",state="open"} 0$'
expect_line '^sturdy_circuit_breaker_transitions_total{name="email-api"} [1-9]'
expect_line '^sturdy_retry_retries_total{name="email-api"} [1-9]'
expect_line '^sturdy_retry_gave_up_total{name="email-api",reason="budget_exhausted"} [1-9]'
expect_line '^sturdy_retry_budget_tokens{name="role-service"} '
expect_line '^sturdy_idempotency_replays_total{name="messages"} [1-9]'
expect_line '^sturdy_dead_letter_queue_depth{name="onboarding"} 0$'
expect_line '^sturdy_chaos_injected_total{fault="outage",name="email-api"} [1-9]'
expect_line '^sturdy_chaos_enabled{fault="transient",name="role-service"} 1$'

# --- 2. a real Prometheus server scraping it ---------------------------------

mkdir -p "$work/data"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: onboarding
    scrape_interval: 1s
    static_configs:
      - targets: ['127.0.0.1:$port']
EOF
"$promtool" check config "$work/prometheus.yml" >/dev/null || fail "promtool check config rejected the test's config"

# A loopback port of its own: a few random candidates; a taken port makes
# Prometheus exit at once, and the next candidate is tried.
prom_ready() {
  alive "$prom_pid" || return 2
  curl -sf "http://127.0.0.1:$prom_port/-/ready" >/dev/null || return 1
}
prom_port=
for attempt in 1 2 3 4 5; do
  candidate=$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000 + 30000 ))
  "$prometheus" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
    --web.listen-address="127.0.0.1:$candidate" --log.level=warn >"$work/prometheus.log" 2>&1 &
  prom_pid=$!
  prom_port=$candidate
  # Ready within 60 s, or dead (port taken): try another port.
  i=0
  status=1
  while [ "$i" -lt 300 ]; do
    prom_ready
    status=$?
    [ "$status" -ne 1 ] && break
    i=$((i + 1))
    sleep 0.2
  done
  [ "$status" -eq 0 ] && break
  kill "$prom_pid" 2>/dev/null
  wait "$prom_pid" 2>/dev/null
  prom_pid=
done
[ -n "$prom_pid" ] || fail "Prometheus did not start on a loopback port (5 attempts)"

# The breaker's state series, through the HTTP API, once Prometheus has
# scraped the demo (every 1 s).
query() {
  curl -sf -G "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" >"$work/answer.json"
}
breaker_scraped() {
  alive "$demo_pid" || fail "the demo stopped serving before Prometheus scraped it"
  query 'sturdy_circuit_breaker_state{job="onboarding",name="email-api",state="closed"}' &&
    grep -q '"status":"success"' "$work/answer.json" &&
    grep -q '"result":\[{' "$work/answer.json"
}
poll 300 breaker_scraped || fail "no sturdy_circuit_breaker_state series in Prometheus within 60 s"
grep -q '"value":\[[0-9.]*,"1"\]' "$work/answer.json" ||
  fail "Prometheus holds the breaker's state series, but 'closed' is not 1"

# Every state of the breaker is a series (one is 1, the others 0).
query 'count(sturdy_circuit_breaker_state{job="onboarding",name="email-api"})' || fail "query failed"
grep -q '"value":\[[0-9.]*,"6"\]' "$work/answer.json" || fail "expected 6 breaker state series"

echo "PASS: Prometheus on 127.0.0.1:$prom_port scraped $url; sturdy_circuit_breaker_state answered"
exit 0
