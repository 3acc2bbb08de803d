#!/usr/bin/env bash
# Regenerates the "limiter" scenario data and chart committed under docs/.
#
#   bench/sim/limiter_plot.sh build/dev/bench/sim/limiter_sim   # run, then plot
#   bench/sim/limiter_plot.sh --plot-only                       # replot docs/data/limiter*.csv
#
# Writes docs/data/limiter.csv (250 ms bins), docs/data/limiter_summary.csv
# (per ramp step), docs/data/limiter_table.txt (the program's table) and
# docs/img/limiter_ramp.png. Needs gnuplot.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
data="$root/docs/data"
img="$root/docs/img"
mkdir -p "$data" "$img"
if [[ "${1:-}" != "--plot-only" ]]; then
  sim="${1:?usage: limiter_plot.sh path/to/limiter_sim | --plot-only}"
  "$sim" --seed 1 --csv "$data/limiter.csv" --summary-csv "$data/limiter_summary.csv" > "$data/limiter_table.txt"
fi
gnuplot -e "data='$data'; img='$img'" "$root/bench/sim/limiter_plot.gp"
echo "wrote $img/limiter_ramp.png"
