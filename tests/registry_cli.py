#!/usr/bin/python3
"""Registry runs end to end: five models, one corrupt; incremental reruns; groups; shards.

    registry_cli.py LINFOLD MPIEXEC SOURCE_DIR

The registry: four MLPs trained here with PyTorch on the digits data (different seeds and
shapes, written in linfold's format) and one corrupt file, each with its own data file named by
the {stem} template. Checked:
  1. 4 succeed, 1 fails with its message in the summary (JSON and CSV), exit 3;
  2. a rerun skips the four, retries the corrupt one (exit 3 again);
  3. touching a model (same bytes) skips it; changing one model's weights recompresses only it;
  4. the corrupt model replaced by a good one: only it runs, exit 0;
  5. a run in 2 and in 3 groups (4 ranks, `groups: auto` and --set groups=3) writes the same
     files, byte for byte, as the one-group run; --shard 0/2 + 1/2 covers every model once;
  6. an override (match: m1) changes only m1's threshold; each model equals the `linfold
     compress` call with its options.
Runs under /usr/bin/python3 (h5py, numpy, PyTorch). About a minute.
"""
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import h5py
import numpy as np

LINFOLD, MPIEXEC, SRC = sys.argv[1:4]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_checks  # noqa: E402
from cli_checks import check, linfold  # noqa: E402

cli_checks.setup(LINFOLD, MPIEXEC, timeout=300)
sys.path.insert(0, os.path.join(SRC, "tools"))
import linfold_format  # noqa: E402


tmp = tempfile.mkdtemp(prefix="linfold-registry-")
reg = os.path.join(tmp, "reg")
for d in ("models", "data"):
    os.makedirs(os.path.join(reg, d))

# ------------------------------------------------------------------ the registry
with h5py.File(os.path.join(SRC, "tests", "data", "digits", "data.h5"), "r") as f:
    splits = {k: f[k][...] for k in ("train/x", "train/y", "val/x", "val/y", "test/x", "test/y")}

import torch  # noqa: E402

SHAPES = {"m0": (32,), "m1": (64, 32), "m2": (48, 48), "m3": (32, 32, 32)}


def train(stem, seed):
    """A small ReLU MLP trained full-batch with Adam on the digits training split."""
    torch.manual_seed(seed)
    widths = (64,) + SHAPES[stem]
    mods = []
    for a, b in zip(widths, widths[1:]):
        mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    seq = torch.nn.Sequential(*mods, torch.nn.Linear(widths[-1], 10))
    x = torch.tensor(splits["train/x"], dtype=torch.float32)
    y = torch.tensor(splits["train/y"], dtype=torch.int64)
    opt = torch.optim.Adam(seq.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(seq(x), y).backward()
        opt.step()
    return linfold_format.from_torch_sequential(seq)


models = {stem: train(stem, seed) for seed, stem in enumerate(SHAPES)}
for stem, layers in models.items():
    linfold_format.save_model(os.path.join(reg, "models", stem + ".h5"), layers)
    shutil.copy(os.path.join(SRC, "tests", "data", "digits", "data.h5"),
                os.path.join(reg, "data", stem + ".h5"))
# The corrupt one: an HDF5 file cut in half.
good = open(os.path.join(reg, "models", "m0.h5"), "rb").read()
open(os.path.join(reg, "models", "m4.h5"), "wb").write(good[:len(good) // 2])
shutil.copy(os.path.join(SRC, "tests", "data", "digits", "data.h5"),
            os.path.join(reg, "data", "m4.h5"))

PIPE = """version: 1
models: {glob: models/*.h5}
groups: 1
calibration: "data/{stem}.h5:/val/x"
evaluation: {data: "data/{stem}.h5:/test/x", labels: "data/{stem}.h5:/test/y"}
stages:
  - calibrate: {batch: 256}
  - prune: {dead: true}
  - fold: {threshold: 0.95}
  - evaluate: {}
overrides:
  - match: "m1"
    set: {fold.threshold: 0.9}
output: {model: "out/{stem}.h5", report: "out/{stem}.json", summary: out/summary}
"""
open(os.path.join(reg, "registry.yaml"), "w").write(PIPE)
STEMS = ["m0", "m1", "m2", "m3", "m4"]


def summary(out="out"):
    s = json.load(open(os.path.join(reg, out, "summary.json")))
    return s, {row["stem"]: row for row in s["rows"]}


# 1. Four succeed, one fails; exit 3.
r = linfold(["run", "registry.yaml"], reg, ranks=2)
check(r.status == 3, "a registry with a corrupt model exits 3", r)
s, rows = summary()
check(s["schema"] == "linfold-registry-summary" and s["models"] == 5 and s["ok"] == 4 and
      s["failed"] == 1, "summary: 5 models, 4 ok, 1 failed (%s)" % {k: s[k] for k in s if k != "rows"})
check([rows[m]["this_run"] for m in STEMS] == ["compressed"] * 4 + ["failed"],
      "this run: 4 compressed, m4 failed")
check(rows["m4"]["status"] == "failed" and "m4.h5" in (rows["m4"]["error"] or ""),
      "m4's error names its file: %s" % rows["m4"]["error"])
check(all(os.path.exists(os.path.join(reg, "out", m + ".h5")) for m in STEMS[:4]) and
      not os.path.exists(os.path.join(reg, "out", "m4.h5")), "models written for the 4, not m4")
csv = open(os.path.join(reg, "out", "summary.csv")).read().splitlines()
check(len(csv) == 6 and csv[0].startswith("model,stem,status,this_run"),
      "summary.csv: a header and 5 rows")
check("m4" in r.err and "FAILED" in r.err, "the log says m4 failed", r)

# Each model equals the compress call with its options (m1 at the override's threshold).
for stem in STEMS[:4]:
    tau = "0.9" if stem == "m1" else "0.95"
    c = linfold(["compress", "--model", "models/%s.h5" % stem, "--data",
                 "data/%s.h5:/val/x" % stem, "--batch", "256", "--prune-dead", "--threshold", tau,
                 "--out", "c-%s.h5" % stem, "-q"], reg)
    check(c.status == 0 and filecmp.cmp(os.path.join(reg, "c-%s.h5" % stem),
                                            os.path.join(reg, "out", stem + ".h5"),
                                            shallow=False),
          "%s: the registry's model equals compress --threshold %s" % (stem, tau), c)
    rec = json.load(open(os.path.join(reg, "out", stem + ".json")))
    check(rec["plan"]["threshold"] == tau, "%s: the record's threshold is %s" % (stem, tau))
    check(rows[stem]["params_after"] == rec["params"]["after"] and
          rows[stem]["accuracy"] == rec["evaluation"]["accuracy"],
          "%s: the summary row repeats the record's figures" % stem)

# 2. A rerun skips the four and retries m4.
mtimes = {m: os.stat(os.path.join(reg, "out", m + ".h5")).st_mtime_ns for m in STEMS[:4]}
r = linfold(["run", "registry.yaml"], reg, ranks=2)
s, rows = summary()
check(r.status == 3 and [rows[m]["this_run"] for m in STEMS] == ["skipped"] * 4 + ["failed"],
      "rerun: 4 skipped, m4 retried and failed again", r)
check(all(os.stat(os.path.join(reg, "out", m + ".h5")).st_mtime_ns == mtimes[m]
          for m in STEMS[:4]), "skipped models' outputs untouched")

# 3. A touch (same bytes) skips; new weights in m2 recompress m2 only.
os.utime(os.path.join(reg, "models", "m0.h5"))
layers = models["m2"]
layers[0]["weight"][0, 0] += 0.25
linfold_format.save_model(os.path.join(reg, "models", "m2.h5"), layers)
r = linfold(["run", "registry.yaml"], reg)
s, rows = summary()
check([rows[m]["this_run"] for m in STEMS] == ["skipped", "skipped", "compressed", "skipped",
                                                "failed"],
      "touched m0 skipped, changed m2 recompressed: %s" % [rows[m]["this_run"] for m in STEMS], r)

# 4. m4 repaired: only it runs, and the registry is complete (exit 0).
linfold_format.save_model(os.path.join(reg, "models", "m4.h5"), train("m0", 7))
r = linfold(["run", "registry.yaml"], reg, ranks=2)
s, rows = summary()
check(r.status == 0 and [rows[m]["this_run"] for m in STEMS] == ["skipped"] * 4 +
      ["compressed"] and s["ok"] == 5, "repaired m4: only it runs, exit 0", r)

# 5. Groups and shards write the same files as one group.
for name, extra, ranks in (("auto", ["--set", "groups=auto"], 4), ("g3", ["--set", "groups=3"], 4),
                           ("g2", ["--set", "groups=2"], 2)):
    out = "out-" + name
    sets = extra + ["--set", "output.model=%s/{stem}.h5" % out, "--set",
                    "output.report=%s/{stem}.json" % out, "--set", "output.summary=%s/summary" % out]
    r = linfold(["run", "registry.yaml"] + sets, reg, ranks=ranks)
    check(r.status == 0, "%s: exit 0" % name, r)
    for m in STEMS:
        check(os.path.exists(os.path.join(reg, out, m + ".h5")) and
              filecmp.cmp(os.path.join(reg, "out", m + ".h5"), os.path.join(reg, out, m + ".h5"),
                          shallow=False), "%s: %s identical to the one-group run" % (name, m))
    if name == "g3":
        check("3 groups of 1 rank" in r.err, "groups=3 at 4 ranks: 3 groups", r)
sets = ["--set", "output.model=out-sh/{stem}.h5", "--set", "output.report=out-sh/{stem}.json",
        "--set", "output.summary=out-sh/summary"]
r0 = linfold(["run", "registry.yaml", "--shard", "0/2"] + sets, reg)
s0, rows0 = summary("out-sh")
r1 = linfold(["run", "registry.yaml", "--shard", "1/2"] + sets, reg)
s1, rows1 = summary("out-sh")
check(r0.status == 0 and r1.status == 0, "shards exit 0", r1)
check([rows0[m]["this_run"] for m in STEMS] == ["compressed", "not run"] * 2 + ["compressed"] and
      [rows1[m]["this_run"] for m in STEMS] == ["not run", "compressed"] * 2 + ["not run"],
      "shard 0/2 runs m0, m2, m4; shard 1/2 runs m1, m3")
check(s1["ok"] == 5, "after both shards the summary has all five ok")
for m in STEMS:
    check(os.path.exists(os.path.join(reg, "out-sh", m + ".h5")) and
          filecmp.cmp(os.path.join(reg, "out", m + ".h5"),
                      os.path.join(reg, "out-sh", m + ".h5"), shallow=False),
          "shards: %s identical" % m)

# Registry-level problems are reported with positions and nothing runs.
open(os.path.join(reg, "bad.yaml"), "w").write(PIPE.replace("glob: models/*.h5",
                                                            "glob: nothing/*.h5"))
r = linfold(["run", "bad.yaml"], reg)
check(r.status == 2 and "bad.yaml:2:9: models: the glob nothing/*.h5 matches no file (in .)" in
      r.err, "a glob that matches nothing: exit 2 at models:", r)
open(os.path.join(reg, "bad2.yaml"), "w").write(PIPE.replace("{stem}.h5:/val/x", "{steem}.h5:/val/x"))
r = linfold(["run", "bad2.yaml"], reg)
check(r.status == 2 and "bad2.yaml:4:14: unknown template '{steem}'" in r.err,
      "an unknown template: exit 2 at its value", r)

print("kept", tmp) if cli_checks.failures else shutil.rmtree(tmp)
sys.exit(cli_checks.finish("registry_cli"))
