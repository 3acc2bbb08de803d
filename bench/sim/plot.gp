# gnuplot script for the fleet simulation charts (called by plot.sh with
# `data` and `img` set to the CSV and PNG folders).
set datafile separator ","
set terminal pngcairo size 900,560 font "DejaVu Sans,11" noenhanced
set grid lc rgb "#dddddd"
set key top left box opaque
set border lc rgb "#555555"

occ = data."/occ.csv"
strategies = "no_backoff exponential full_jitter equal_jitter decorrelated_jitter ratio_jitter decorrelated_smooth linear_full_jitter"
colors = "#d62728 #8c564b #2ca02c #1f77b4 #ff7f0e #9467bd #17becf #7f7f7f"
sel(name, col) = (strcol(1) eq name) ? column(col) : NaN

# --- occ: work (write calls) vs N
set output img."/occ_work.png"
set title "occ: total write calls until every client has written once (mean of 100 runs)"
set xlabel "clients N"
set ylabel "write calls (work)"
set xrange [0:200]
set yrange [0:*]
plot for [i=1:words(strategies)] occ using 2:(sel(word(strategies,i),4)) \
     with linespoints lw 2 pt 7 ps 0.6 lc rgb word(colors,i) title word(strategies,i)

# --- occ: completion time vs N (log scale: no-jitter exponential dwarfs the rest)
set output img."/occ_time.png"
set title "occ: time until the last client succeeds (mean of 100 runs, log scale)"
set ylabel "completion time (ms)"
set logscale y
set yrange [100:200000]
set format y "%.0f"
plot for [i=1:words(strategies)] occ using 2:(sel(word(strategies,i),6)) \
     with linespoints lw 2 pt 7 ps 0.6 lc rgb word(colors,i) title word(strategies,i)
unset logscale y
set format y "%g"

# --- outage: offered load and goodput over time, one panel per configuration
out = data."/outage.csv"
configs = "no_retry naive_immediate exponential full_jitter jitter_ratio_budget jitter_token_budget jitter_budget_breaker sturdy_defaults"
set terminal pngcairo size 1200,1250 font "DejaVu Sans,10" noenhanced
set output img."/outage_load.png"
set multiplot layout 4,2 title "outage: 10,000 clients, service stalls 120-150 s (shaded); load = arrivals / capacity, goodput = successes / demand" font ",12"
set xrange [100:260]
set yrange [0:4.5]
set xlabel "time (s)"
set ylabel "x capacity / x demand"
set key top right box opaque font ",9"
set object 1 rect from 120, graph 0 to 150, graph 1 fc rgb "#f4cccc" fs solid 0.6 noborder behind
do for [i=1:words(configs)] {
  c = word(configs, i)
  set title sprintf("%d. %s", i, c) font ",11"
  plot out using 2:(sel(c,14)) with lines lw 1.5 lc rgb "#d62728" title "offered load", \
       out using 2:(sel(c,15)) with lines lw 1.5 lc rgb "#2ca02c" title "goodput", \
       1.0 with lines dt 2 lc rgb "#555555" notitle
}
unset multiplot
