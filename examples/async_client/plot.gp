# gnuplot script for docs/img/async_hedge.png (called by plot.sh with `data`
# and `img` set).
set datafile separator ","
set datafile commentschars "#"
set terminal pngcairo size 900,560 font "DejaVu Sans,11" noenhanced
set grid lc rgb "#dddddd"
set key top left box opaque
set border lc rgb "#555555"
set output img."/async_hedge.png"
set title "Call latency by percentile: no hedging vs hedging (20,000 calls, 20 concurrent, loopback, log scale)"
set xlabel "percentile"
set ylabel "latency (ms)"
set logscale y
set yrange [1:2000]
set xtics ("p50" 0, "p75" 1, "p90" 2, "p95" 3, "p98" 4, "p99" 5, "p99.5" 6, "p99.9" 7)
f = data."/async_hedge.csv"
plot f using 0:2 skip 1 with linespoints lw 2 pt 7 lc rgb "#d62728" title "no hedging", \
     f using 0:3 skip 1 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "hedge after 10 ms", \
     f using 0:4 skip 1 with linespoints lw 2 pt 7 lc rgb "#2ca02c" title "hedge after the p95 (adaptive)"
