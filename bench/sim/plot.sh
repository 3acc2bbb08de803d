#!/usr/bin/env bash
# Regenerates the fleet-simulation data and charts committed under docs/.
#
#   bench/sim/plot.sh build/dev/bench/sim/fleet_sim        # run the sim, then plot
#   bench/sim/plot.sh --plot-only                          # replot docs/data/*.csv
#
# Writes docs/data/{occ,outage,outage_summary}.csv and
# docs/img/{occ_work,occ_time,outage_load}.png. Needs gnuplot (gnuplot-nox,
# installed by scripts/deps.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
data="$root/docs/data"
img="$root/docs/img"
mkdir -p "$data" "$img"

if [[ "${1:-}" != "--plot-only" ]]; then
  sim="${1:?usage: plot.sh path/to/fleet_sim | --plot-only}"
  "$sim" --scenario occ --runs 100 --seed 1 --csv "$data/occ.csv"
  "$sim" --scenario outage --clients 10000 --seed 1 --config all,extra \
    --csv "$data/outage.csv" --summary-csv "$data/outage_summary.csv"
fi

gnuplot -e "data='$data'; img='$img'" "$root/bench/sim/plot.gp"
echo "wrote $img/occ_work.png $img/occ_time.png $img/outage_load.png"
