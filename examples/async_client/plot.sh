#!/usr/bin/env bash
# Regenerates docs/data/async_hedge.csv and docs/img/async_hedge.png (the
# chart in docs/async.md) from a run of the async client example.
#
#   examples/async_client/plot.sh build/dev/examples/async_client/example_async_client
#   examples/async_client/plot.sh --plot-only
#
# Needs gnuplot (gnuplot-nox).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
data="$root/docs/data"
img="$root/docs/img"
mkdir -p "$data" "$img"
if [[ "${1:-}" != "--plot-only" ]]; then
  client="${1:?usage: plot.sh path/to/example_async_client | --plot-only}"
  "$client" --requests 20000 --concurrency 20 --warmup 1000 --seed 1 --csv "$data/async_hedge.csv" \
    | tee "$data/async_hedge.txt"
fi
gnuplot -e "data='$data'; img='$img'" "$root/examples/async_client/plot.gp"
echo "wrote $img/async_hedge.png"
