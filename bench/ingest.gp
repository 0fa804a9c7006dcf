# gnuplot: fleet-manager's MQTT ingest and Mosquitto's own ceiling against offered load.
# scripts/bench.sh calls: gnuplot -e "datafile='...'; outfile='...'; subtitle='...'" bench/ingest.gp
# datafile columns: x_ceiling, ceiling/s, x_ingest, ingest/s, label (see bench/report.py)
if (!exists("datafile")) datafile = 'bench-results/ingest.dat'
if (!exists("outfile")) outfile = 'bench-results/ingest.png'
if (!exists("subtitle")) subtitle = ''
set terminal pngcairo size 960,600 font "sans,10"
set output outfile
set title "MQTT heartbeats, QoS 1, 2,000 devices: fleet-manager ingest vs. Mosquitto's ceiling\n{/*0.8 ".subtitle."}"
set xlabel "offered load, heartbeats/s (unthrottled: what the publisher achieved on that side)"
set ylabel "heartbeats/s delivered (ceiling) / processed (fleet-manager)"
set key bottom right box opaque
set grid
set format x "%.0s%c"
set format y "%.0s%c"
set xrange [0:*]
set yrange [0:*]
set offsets 0, graph 0.06, graph 0.08, 0
plot datafile using 1:1 with lines dt 3 lc rgb "#999999" title "y = offered", \
     datafile using 1:2 with linespoints pt 7 ps 1.2 lw 2 lc rgb "#1f77b4" title "broker ceiling: plain subscriber (fleet-sim --subscribe)" noenhanced, \
     datafile using 3:4 with linespoints pt 5 ps 1.2 lw 2 lc rgb "#d62728" title "fleet-manager: maestra_heartbeats_total{transport=\"mqtt\"} per s" noenhanced, \
     datafile using 3:4:5 with labels offset 0,-1.3 font ",8" tc rgb "#d62728" notitle, \
     datafile using 1:2:5 with labels offset 0,1.3 font ",8" tc rgb "#1f77b4" notitle
