#!/usr/bin/python3
"""Whole compressions through the distributed fold (ScaLAPACK merges), end to end.

    dist_fold_cli.py LINFOLD MPIEXEC SOURCE_DIR

A seeded synthetic model 300-1000-1537-700-10 (no width divisible by the block sizes used), 90 %
of each hidden layer provably linear on the data (bench/wide_model.py), folded with
`--threshold 1 --layer-rule all` and dead-neuron pruning. Checked:
  1. `--merge distributed` at 1, 2, 3 and 4 ranks (grids 1x1, 1x2, 1x3, 2x2), blocks 64 and
     100, gives the serial fold's structure and parameter count, and predictions (NumPy forward
     of the written files) within 1e-5 of the serial fold's, relative to the largest output;
  2. the P = 1 and P = 4 distributed models agree with each other within 1e-5 as well, and both
     reproduce the original model's outputs on the calibration rows (the folds are exact there);
  3. `--merge-precision single` (psgemm_) within 1e-4;
  4. `--merge auto` keeps this model (1537 x 1000 < 2^24) on the serial path, byte for byte, and
     `--dist-threshold 1000000` sends it to the distributed one;
  5. a pipeline file with `fold: {merge: distributed}` and an evaluate stage runs, reports the
     same agreement as `eval`, and publishes the model only at the end;
  6. bad values (`--merge scalapack`, `--dist-block 0`, `merge-precision: half`) are refused
     before any work with exit 2;
  7. searches fold their candidates on the grid too: an accuracy-budget search and a sweep with
     `--merge distributed` (labels: the original model's own predictions) evaluate exactly the
     candidates of the serial search, with the same parameter counts and accuracies, fold each
     of them on the grid (one log line per fold), choose a model of the same size within 1e-5
     of the serial search's, and leave no temporary file behind.
"""
import csv as csv_module
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

LINFOLD, MPIEXEC, SRC = sys.argv[1:4]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_checks  # noqa: E402
from cli_checks import check, linfold  # noqa: E402

cli_checks.setup(LINFOLD, MPIEXEC, timeout=300)
sys.path.insert(0, os.path.join(SRC, "tools"))
import linfold_format  # noqa: E402

WIDTHS = "300,1000,1537,700,10"
ROWS = 512


def params(layers):
    n = 0
    for L in layers:
        n += L["bias"].size + L["weight"].size
        n += sum(w.size for w in L["skips"].values())
    return n


def outputs(path, x):
    return linfold_format.forward(linfold_format.load_model(path), x).astype(np.float64)


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


def weights_rel(a_path, b_path):
    """Largest relative difference of any weight block or bias (to the block's largest entry)."""
    worst = 0.0
    for A, B in zip(linfold_format.load_model(a_path), linfold_format.load_model(b_path)):
        pairs = [(A["weight"], B["weight"]), (A["bias"], B["bias"])]
        pairs += [(A["skips"][k], B["skips"][k]) for k in A["skips"]]
        for a, b in pairs:
            a, b = a.astype(np.float64), b.astype(np.float64)
            worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30)))
    return worst


def structure(path):
    layers = linfold_format.load_model(path)
    return [(L["weight"].shape, sorted(str(k) for k in L["skips"])) for L in layers]


def main():
    tmp = tempfile.mkdtemp(prefix="dist_fold_cli.")
    subprocess.run(["/usr/bin/python3", os.path.join(SRC, "bench", "wide_model.py"), tmp, WIDTHS,
                    str(ROWS)], check=True)
    model, data = os.path.join(tmp, "wide.h5"), os.path.join(tmp, "wide-data.h5")
    with h5py.File(data, "r") as f:
        x = f["x"][...]
    base = ["compress", "--model", model, "--data", data + ":/x", "--threshold", "1",
            "--layer-rule", "all", "--prune-dead", "--quiet"]

    serial = os.path.join(tmp, "serial.h5")
    r = linfold(base + ["--merge", "serial", "--out", serial], tmp)
    check(r.status == 0, "serial fold runs", r)
    ref = outputs(serial, x)
    ref_params = params(linfold_format.load_model(serial))
    ref_shape = structure(serial)
    orig = outputs(model, x)
    check(ref_params < params(linfold_format.load_model(model)) // 2,
          "the serial fold removes most of the model (%d parameters)" % ref_params)
    check(rel(orig, ref) <= 1e-5, "the serial fold is exact on the calibration rows")

    results = {}
    for ranks, block in ((1, 64), (2, 100), (3, 64), (4, 100), (4, 64)):
        out = os.path.join(tmp, "dist-%d-%d.h5" % (ranks, block))
        r = linfold(base + ["--merge", "distributed", "--dist-block", str(block), "--out", out],
                    tmp, ranks=ranks)
        check(r.status == 0, "distributed fold at %d ranks, blocks of %d" % (ranks, block), r)
        if r.status != 0:
            continue
        got = outputs(out, x)
        results[(ranks, block)] = got
        check(structure(out) == ref_shape, "P=%d nb=%d: the serial fold's structure" % (ranks, block))
        p = params(linfold_format.load_model(out))
        check(p == ref_params, "P=%d nb=%d: %d parameters, serial %d" % (ranks, block, p, ref_params))
        d = rel(ref, got)
        check(d <= 1e-5, "P=%d nb=%d: predictions within 1e-5 of the serial fold (%.3g)"
              % (ranks, block, d))
        d = rel(orig, got)
        check(d <= 1e-5, "P=%d nb=%d: exact on the calibration rows (%.3g)" % (ranks, block, d))
        w = weights_rel(serial, out)
        check(w <= 1e-5, "P=%d nb=%d: every block within 1e-5 of the serial fold's (%.3g)"
              % (ranks, block, w))
        print("P=%d nb=%d: relative difference to the serial fold: outputs %.3g, blocks %.3g"
              % (ranks, block, rel(ref, got), w))
    if (1, 64) in results and (4, 64) in results:
        d = rel(results[(1, 64)], results[(4, 64)])
        check(d <= 1e-5, "P=1 and P=4 agree within 1e-5 (%.3g)" % d)

    single = os.path.join(tmp, "single.h5")
    r = linfold(base + ["--merge", "distributed", "--merge-precision", "single", "--out", single],
                tmp, ranks=2)
    check(r.status == 0, "psgemm_ fold runs", r)
    if r.status == 0:
        d = rel(ref, outputs(single, x))
        w = weights_rel(serial, single)
        check(d <= 1e-4 and w <= 1e-4,
              "single precision within 1e-4 of the serial fold (outputs %.3g, blocks %.3g)" % (d, w))
        print("single precision: relative difference to the serial fold: outputs %.3g, blocks %.3g"
              % (d, w))

    auto = os.path.join(tmp, "auto.h5")
    r = linfold(base[:-1] + ["--merge", "auto", "--out", auto], tmp, ranks=2)
    check(r.status == 0 and "merges: distributed" not in r.out, "auto stays serial here", r)
    check(r.status == 0 and open(auto, "rb").read() == open(serial, "rb").read(),
          "auto equals the serial fold byte for byte")
    low = os.path.join(tmp, "low.h5")
    r = linfold(base[:-1] + ["--dist-threshold", "1000000", "--out", low], tmp, ranks=2)
    check(r.status == 0 and "merges: distributed" in r.out,
          "auto goes distributed above --dist-threshold", r)

    yaml = os.path.join(tmp, "dist.yaml")
    with open(yaml, "w") as f:
        f.write("version: 1\nmodel: wide.h5\ncalibration: wide-data.h5:/x\n"
                "evaluation: {data: wide-data.h5:/x}\n"
                "stages:\n  - calibrate: {}\n  - prune: {dead: true}\n"
                "  - fold: {threshold: 1, layer-rule: all, merge: distributed, dist-block: 32}\n"
                "  - evaluate: {}\n"
                "output: {model: out/p.h5, report: out/p.json}\n")
    r = linfold(["run", "dist.yaml"], tmp, ranks=3)
    check(r.status == 0, "pipeline with a distributed fold runs", r)
    if r.status == 0:
        import json
        with open(os.path.join(tmp, "out", "p.json")) as f:
            rec = json.load(f)
        ev = rec.get("evaluation") or {}
        check(ev.get("top1_agreement") == 1.0, "the pipeline's evaluation agrees on every row: %s" % ev)
        d = rel(ref, outputs(os.path.join(tmp, "out", "p.h5"), x))
        check(d <= 1e-5, "the pipeline's model within 1e-5 of the serial fold (%.3g)" % d)
        left = [n for n in os.listdir(os.path.join(tmp, "out")) if ".tmp-" in n]
        check(not left, "no temporary files left: %s" % left)
    r = linfold(["run", "dist.yaml", "--print-config"], tmp)
    check(r.status == 0 and "merge: distributed" in r.out and "dist-block: 32" in r.out,
          "--print-config shows the merge options", r)

    for args, what in ((["--merge", "scalapack"], "--merge scalapack"),
                       (["--dist-block", "0"], "--dist-block 0"),
                       (["--merge-precision", "half"], "--merge-precision half")):
        bad = os.path.join(tmp, "bad.h5")
        r = linfold(base + args + ["--out", bad], tmp)
        check(r.status == 2 and not os.path.exists(bad), "%s is refused with exit 2" % what, r)
    r = linfold(["run", "dist.yaml", "--set", "fold.merge-precision=half"], tmp)
    check(r.status == 2 and "merge-precision must be double or single" in r.err,
          "merge-precision: half is refused at its position", r)

    searches(tmp, model, data, x, orig)
    subprocess.run(["rm", "-rf", tmp])
    return cli_checks.finish("dist_fold_cli")


def search_lines(out):
    """The frontier or sweep rows of a search's report: every line with a parameter count and an
    accuracy or agreement figure, as printed."""
    return [l for l in out.splitlines() if re.search(r"\b0\.\d{4}\b", l) and re.search(r"\d{4,}", l)]


def searches(tmp, model, data, x, orig):
    labels = os.path.join(tmp, "labels.h5")
    with h5py.File(labels, "w") as f:
        f["y"] = np.argmax(orig, axis=1).astype(np.int64)
    os.makedirs(os.path.join(tmp, "s"), exist_ok=True)
    common = ["compress", "--model", model, "--data", data + ":/x",
              "--eval-data", data + ":/x", "--eval-labels", labels + ":/y"]
    runs = {}
    for merge in ("serial", "distributed"):
        out = os.path.join(tmp, "s", "budget-%s.h5" % merge)
        r = linfold(common + ["--max-accuracy-drop", "0.02", "--search-fractions", "0,0.1",
                              "--merge", merge, "--out", out],
                    tmp, ranks=2)
        check(r.status == 0, "accuracy-budget search, --merge %s" % merge, r)
        runs[merge] = (r, out)
    if all(r.status == 0 for r, _ in runs.values()):
        (rs, ser), (rd, dis) = runs["serial"], runs["distributed"]
        a, b = search_lines(rs.out), search_lines(rd.out)
        check(len(a) >= 3 and a == b, "the distributed search evaluates the serial search's "
              "candidates with the same sizes and accuracies (%d rows)" % len(a), rd)
        # Options that give an identical plan reuse its result (docs/algorithm.md): the search
        # folds each distinct plan once, on the grid, and then the chosen one again to write it.
        folds = (rd.out + rd.err).count("fold: distributed on a")
        m = re.search(r"frontier explored \((\d+) plans, (\d+) of them distinct", rd.out)
        distinct = int(m.group(2)) if m else -1
        check(m and folds == distinct + 1 and 1 <= distinct <= int(m.group(1)),
              "every distinct candidate was folded on the grid once (%d folds, %d distinct)"
              % (folds, distinct), rd)
        check((rs.out + rs.err).count("fold: distributed on a") == 0, "the serial search stays serial")
        check(params(linfold_format.load_model(dis)) == params(linfold_format.load_model(ser)),
              "the two searches choose models of the same size")
        d = rel(outputs(ser, x), outputs(dis, x))
        check(d <= 1e-5, "the chosen models agree within 1e-5 (%.3g)" % d)
    csv = os.path.join(tmp, "s", "sweep.csv")
    r = linfold(common + ["--sweep", "1,0.999,0.9", "--sweep-out", csv, "--merge", "distributed"],
                tmp, ranks=3)
    # Thresholds whose plans are identical share one fold: as many folds as distinct plans,
    # told apart here by their sizes (layer and skip parameters) in the CSV.
    plans = set()
    if os.path.exists(csv):
        with open(csv) as f:
            rows = list(csv_module.DictReader(f))
        plans = {(row["params_layers"], row["params_skip"]) for row in rows}
    folds = (r.out + r.err).count("fold: distributed on a")
    check(r.status == 0 and len(plans) >= 1 and folds == len(plans),
          "a sweep folds each of its distinct plans on the grid once (%d folds, %d plans)"
          % (folds, len(plans)), r)
    left = [n for n in os.listdir(os.path.join(tmp, "s")) if ".tmp-" in n]
    check(not left, "no temporary files left by the searches: %s" % left)


sys.exit(main())
