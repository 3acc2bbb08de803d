# gnuplot script for the "limiter" scenario chart (called by limiter_plot.sh
# with `data` and `img` set to the CSV and PNG folders).
set datafile separator ","
set terminal pngcairo size 1100,1250 font "DejaVu Sans,10" noenhanced
set grid lc rgb "#dddddd"
set border lc rgb "#555555"
bins = data."/limiter.csv"
configs = "no_limit fixed_too_high fixed_right aimd vegas gradient2 gradient2_netflix envoy envoy_tuned"
colors = "#d62728 #8c564b #7f7f7f #ff7f0e #2ca02c #1f77b4 #9467bd #17becf #bcbd22"
sel(name, col) = (strcol(1) eq name) ? column(col) : NaN
set output img."/limiter_ramp.png"
set multiplot layout 4,1 title "limiter scenario: 20 servers x 10 ms (capacity 2000 req/s), demand ramp 0.5x-3x-0.5x, client timeout 50 ms" font ",12"
set xrange [0:80]
set key outside right top box opaque font ",9"
set lmargin 10
set rmargin 24

set title "demand (x capacity)"
set ylabel "x capacity"
set yrange [0:3.5]
plot bins using 2:(sel("vegas",3)) with steps lw 2 lc rgb "#333333" title "demand"

set title "limit (in flight allowed)"
set ylabel "limit"
set logscale y
set yrange [10:1200]
plot for [i=2:words(configs)] bins using 2:(sel(word(configs,i),4)) with lines lw 1.5 lc rgb word(colors,i) title word(configs,i)
unset logscale y

set title "goodput (completions within the timeout, x capacity)"
set ylabel "x capacity"
set yrange [0:1.15]
plot for [i=1:words(configs)] bins using 2:(sel(word(configs,i),5)) with lines lw 1.5 lc rgb word(colors,i) title word(configs,i)

set title "p99 latency of admitted calls per 250 ms (timeouts count as 50 ms); dashed: 2x unloaded p99"
set ylabel "ms"
set xlabel "time (s)"
set yrange [0:55]
plot for [i=1:words(configs)] bins using 2:(sel(word(configs,i),6)) with lines lw 1.5 lc rgb word(colors,i) title word(configs,i), \
     23.92 with lines dt 2 lc rgb "#555555" notitle
unset multiplot
