#!/usr/bin/env bash
# Installs whatever sturdy's build, tests, benchmarks and examples need on
# Debian 12 and is not there yet. Runs apt-get only when something is missing.
set -euo pipefail
# libboost1.81-dev: Boost.Outcome v2.2 (libboost-dev is 1.74, with an older TRY syntax).
# libsqlite3-dev: the onboarding example. libhiredis-dev, redis-server: the Redis
# idempotency store and its tests. gnuplot-nox: the fleet simulation plots.
# prometheus-cpp-dev, prometheus (promtool): the Prometheus export and its alert
# rules. rabbitmq-server, librabbitmq-dev: the broker variant of the onboarding
# flow. libtbb-dev, libcuckoo-dev: baselines in the benchmarks only.
PACKAGES=(
  cmake ninja-build g++ clang libclang-rt-14-dev pkg-config
  libboost1.81-dev
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libsqlite3-dev
  libhiredis-dev redis-server
  gnuplot-nox
  prometheus-cpp-dev prometheus
  rabbitmq-server librabbitmq-dev
  libtbb-dev libcuckoo-dev
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "sturdy: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
