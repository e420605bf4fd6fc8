# Plots of bench/paper_fmnist.sh and bench/paper_tabular.sh (gnuplot 5.4, pngcairo).
#
#   gnuplot -e "fm='OUT_DIR'; img='docs/img'; p0=PARAMS; a0=TEST_ACCURACY" bench/plots.gp
#   gnuplot -e "tab='OUT_DIR'; img='docs/img'; tasks='digits iris ...'" bench/plots.gp
#   gnuplot -e "rec='reconstruct.csv'; img='docs/img'; a0=TEST_ACCURACY" bench/plots.gp
#
# fm: the CSV files of paper_fmnist.sh (sweep_*.csv from `linfold compress --sweep-out`,
# prune_curve.csv, prune_*.csv, target.csv, budget.csv). tab: paper_tabular.sh's directory with
# <task>/curve.csv (ratio, accuracy drop on test). Percentages are of the original parameters.
set terminal pngcairo size 900,560 enhanced font "DejaVu Sans,11" linewidth 1.5
set datafile separator comma
set grid lc rgb "#dddddd"
set key outside right top
set style line 1 lc rgb "#1f77b4" pt 7 ps 0.8
set style line 2 lc rgb "#d62728" pt 5 ps 0.8
set style line 3 lc rgb "#2ca02c" pt 9 ps 0.9
set style line 4 lc rgb "#ff7f0e" pt 11 ps 0.9
set style line 5 lc rgb "#9467bd" pt 13 ps 1.4
set style line 6 lc rgb "#000000" pt 3 ps 1.6
set style line 7 lc rgb "#8c564b" pt 2 ps 1.3
set style line 9 lc rgb "#777777" dt 2 lw 1

if (exists("fm")) {
    # Parameters against threshold. Columns: 1 threshold, 7 params, 8 ratio, 9 accuracy.
    set output img."/fmnist_params.png"
    set title "Fashion-MNIST MLP: parameters after compression (calibration: 10,000 validation rows)"
    set xlabel "threshold τ (activation rate at which a neuron counts as linear)"
    set ylabel "parameters, % of the original (2,840,586)"
    set xrange [1.02:0]
    set yrange [0:*]
    set key inside left top box opaque
    plot 100 ls 9 notitle, \
        fm."/sweep_opt.csv" skip 1 using 1:($8*100) with linespoints ls 1 title "fold, optimal", \
        fm."/sweep_opt_dead.csv" skip 1 using 1:($8*100) with linespoints ls 2 title "fold + prune dead, optimal", \
        fm."/sweep_all.csv" skip 1 using 1:($8*100) with linespoints ls 3 title "fold, rule all (paper)", \
        fm."/sweep_all_dead.csv" skip 1 using 1:($8*100) with linespoints ls 4 title "fold + prune dead, rule all"

    # Test accuracy against threshold.
    set output img."/fmnist_accuracy.png"
    set title "Fashion-MNIST MLP: test accuracy after compression (10,000 test rows)"
    set ylabel "test accuracy"
    set yrange [0:1]
    set key inside left bottom box opaque
    plot a0 ls 9 title "original", \
        fm."/sweep_opt.csv" skip 1 using 1:9 with linespoints ls 1 title "fold, optimal", \
        fm."/sweep_opt_dead.csv" skip 1 using 1:9 with linespoints ls 2 title "fold + prune dead, optimal", \
        fm."/sweep_all.csv" skip 1 using 1:9 with linespoints ls 3 title "fold, rule all (paper)", \
        fm."/sweep_all_dead.csv" skip 1 using 1:9 with linespoints ls 4 title "fold + prune dead, rule all"

    # Test accuracy against size: the whole range, and the region around the original.
    set terminal pngcairo size 1050,820 enhanced font "DejaVu Sans,11" linewidth 1.5
    set output img."/fmnist_acc_params.png"
    set multiplot layout 2,1 title "Fashion-MNIST MLP: test accuracy against parameters"
    set title "all points"
    set lmargin at screen 0.08
    set rmargin at screen 0.70
    set xrange [0:*]
    set yrange [0:1]
    set xlabel ""
    set ylabel "test accuracy"
    set key at screen 0.71, 0.92 left top Left reverse nobox noopaque
    plot a0 ls 9 title "original", \
        fm."/sweep_opt.csv" skip 1 using ($8*100):9 with linespoints ls 1 title "fold (τ sweep)", \
        fm."/sweep_opt_dead.csv" skip 1 using ($8*100):9 with linespoints ls 2 title "fold + prune dead (τ sweep)", \
        fm."/prune_curve.csv" skip 1 using ($8*100):9 with linespoints ls 3 title "importance pruning, τ = 1", \
        for [p in "0.25 0.4 0.5"] fm."/prune_".p.".csv" skip 2 using ($8*100):9 with points ls 4 \
            title (p eq "0.25" ? "pruning + fold, τ < 1" : ""), \
        fm."/target.csv" skip 1 using ($4*100):5 with points ls 5 title "target ratio 0.75, 0.5, 0.25", \
        fm."/budget.csv" skip 1 using ($3*100):4 with points ls 6 title "accuracy budget 0, 0.005"
    set title sprintf("zoom: test accuracy within [%.2f, %.2f]", a0 - 0.04, a0 + 0.01)
    set xlabel "parameters, % of the original (2,840,586)"
    set yrange [a0 - 0.04:a0 + 0.01]
    unset key
    replot
    unset multiplot
    unset title
    unset lmargin
    unset rmargin
    set terminal pngcairo size 900,560 enhanced font "DejaVu Sans,11" linewidth 1.5
}

if (exists("tab")) {
    set output img."/tabular_acc_params.png"
    set title "Tabular MLPs (d-64-128-128-256-256-c): fold + prune dead, optimal selection, τ sweep"
    set xlabel "parameters, % of the original"
    set ylabel "test accuracy − original test accuracy"
    set xrange [100:0.01]
    set logscale x
    set yrange [*:0.05]
    set key inside left bottom box opaque
    colours = "#9467bd #2ca02c #17becf #ff7f0e #1f77b4 #d62728 #000000 #8c564b"
    plot 0 ls 9 notitle, \
        for [i=1:words(tasks)] tab."/".word(tasks, i)."/curve.csv" skip 1 using ($1*100):2 \
            with linespoints lc rgb word(colours, i) pt i ps 0.9 title word(tasks, i) noenhanced
}

if (exists("rec")) {
    # bench/reconstruct_fmnist.sh: columns 1 share, 2 params, 3 ratio, 4 accuracy with mean
    # compensation, 5 accuracy reconstructed (test split).
    set output img."/fmnist_reconstruct.png"
    set title "Fashion-MNIST MLP: global importance pruning, without and with least-squares reconstruction"
    set xlabel "parameters, % of the original"
    set ylabel "test accuracy"
    set xrange [0:*]
    set yrange [0:1]
    set key inside right bottom box opaque
    plot a0 ls 9 title "original", \
        rec skip 1 using ($3*100):4 with linespoints ls 2 title "mean compensation", \
        rec skip 1 using ($3*100):5 with linespoints ls 1 title "reconstructed (--reconstruct)"
}
