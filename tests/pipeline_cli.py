#!/usr/bin/python3
"""`linfold run` end to end: pipelines/digits.yaml against `linfold compress`, validation with
exact positions, malformed YAML, overrides, --print-config, --dry-run, the run record, and a
checkpoint: SIGUSR1 mid-calibration (exit 75), refused by another pipeline, resumed at another
rank count to the uninterrupted run's model.

    pipeline_cli.py LINFOLD MPIEXEC SOURCE_DIR

Everything runs in a temporary copy of the repository's layout (pipelines/ and tests/data/digits),
so that the shipped pipeline runs exactly as written without writing into the source tree.
Expected positions are found in the test's own pipeline text (the line and column of a token),
never copied from linfold's output. Runs under /usr/bin/python3 (h5py, numpy). About 40 s.
"""
import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

LINFOLD, MPIEXEC, SRC = sys.argv[1:4]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_checks  # noqa: E402
from cli_checks import check, linfold  # noqa: E402

cli_checks.setup(LINFOLD, MPIEXEC, timeout=120)
TIMEOUT = 120


def position(text, token, nth=0):
    """1-based line and column (in characters) of the nth occurrence of token in text."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(token, at + 1)
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    return line, col


def problems(err):
    return [l for l in err.splitlines() if not l.startswith("linfold:")]


tmp = tempfile.mkdtemp(prefix="linfold-pipeline-")
root = os.path.join(tmp, "repo")
os.makedirs(os.path.join(root, "pipelines"))
shutil.copytree(os.path.join(SRC, "tests", "data", "digits"),
                os.path.join(root, "tests", "data", "digits"))
shutil.copy(os.path.join(SRC, "pipelines", "digits.yaml"), os.path.join(root, "pipelines"))
PIPE = "pipelines/digits.yaml"
DIG = "tests/data/digits"
MODEL, DATA = DIG + "/model.h5", DIG + "/data.h5"

# ------------------------------------------------------------------ the shipped pipeline
# `linfold run` at 1..4 ranks writes the same model, byte for byte, as the compress call with the
# same options; the output directory (pipelines/out) is created.
ref = linfold(["compress", "--model", MODEL, "--data", DATA + ":/val/x", "--batch", "1024",
               "--prune-dead", "--threshold", "0.8", "--select", "optimal", "--out", "c.h5",
               "-q"], root)
check(ref.status == 0, "compress runs", ref)
for ranks in (1, 2, 3, 4):
    out = "pipelines/out/digits-compressed.h5"
    for f in (out, "pipelines/out/digits-report.json"):
        if os.path.exists(os.path.join(root, f)):
            os.remove(os.path.join(root, f))
    r = linfold(["run", PIPE], root, ranks)
    check(r.status == 0, "run digits.yaml at %d ranks exits 0" % ranks, r)
    check(os.path.exists(os.path.join(root, out)) and
          filecmp.cmp(os.path.join(root, "c.h5"), os.path.join(root, out), shallow=False),
          "run at %d ranks writes compress's model byte for byte" % ranks, r)
    rec = json.load(open(os.path.join(root, "pipelines/out/digits-report.json")))
    check(rec["schema"] == "linfold-run-record" and rec["schema_version"] == 1 and
          rec["ranks"] == ranks and rec["exit_status"] == 0 and rec["error"] is None,
          "run record at %d ranks: schema, ranks, status" % ranks)
    check(len(rec["peak_memory_mib"]) == ranks, "one peak memory figure per rank")
    check([s["stage"] for s in rec["stages"]] ==
          ["read", "calibrate", "prune", "fold", "evaluate", "write"], "stage times in order")

# The record's figures against independent sources: `eval --json` of the written model, the
# model file's own parameter count, sha256sum of the inputs.
ev = linfold(["eval", "--model", "c.h5", "--data", DATA + ":/test/x", "--labels",
              DATA + ":/test/y", "--reference", MODEL, "--json", "-q"], root)
check(ev.status == 0, "eval --json runs", ev)
evj = json.loads(ev.out)
check(rec["evaluation"] == evj, "the record's evaluation equals eval --json's")


def count_params(path):
    total = 0
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            nonlocal total
            if isinstance(obj, h5py.Dataset):
                total += int(np.prod(obj.shape))
        f.visititems(visit)
    return total


check(rec["params"]["after"] == count_params(os.path.join(root, "c.h5")),
      "the record's parameters after = the datasets' sizes in the written model (%d vs %d)" %
      (rec["params"]["after"], count_params(os.path.join(root, "c.h5"))))
check(rec["params"]["before"] == count_params(os.path.join(root, MODEL)),
      "the record's parameters before = the input model's")
sha = subprocess.run(["sha256sum", os.path.join(root, MODEL), os.path.join(root, DATA)],
                     capture_output=True, text=True).stdout.split()
pipe_sha = subprocess.run(["sha256sum", os.path.join(root, PIPE)], capture_output=True,
                          text=True).stdout.split()[0]
check(rec["sha256"]["model"] == sha[0] and rec["sha256"]["data"] == sha[2] and
      rec["sha256"]["pipeline_file"] == pipe_sha,
      "the record's SHA-256 of model, data and pipeline file equal sha256sum's")
layers = rec["layers"]
check(all(l["kept"] + l["folded"] + l["pruned"] == l["neurons"] for l in layers) and
      all(sum(l["activation_rate_histogram"]) == l["neurons"] for l in layers),
      "per layer: kept + folded + pruned = neurons = the histogram's total")

# --print-config: the effective YAML runs to the same model; printing it again gives the same.
pc = linfold(["run", PIPE, "--print-config", "-q"], root)
check(pc.status == 0 and "output-sums: false" in pc.out and "select: optimal" in pc.out,
      "print-config fills in the defaults", pc)
eff = os.path.join(root, "pipelines", "effective.yaml")
open(eff, "w").write(pc.out.replace("out/digits-", "out/eff-"))
r = linfold(["run", "pipelines/effective.yaml", "-q"], root)
check(r.status == 0 and filecmp.cmp(os.path.join(root, "c.h5"),
                                    os.path.join(root, "pipelines/out/eff-compressed.h5"),
                                    shallow=False), "the printed config runs to the same model", r)
pc2 = linfold(["run", "pipelines/effective.yaml", "--print-config", "-q"], root)
check(pc2.out == pc.out.replace("out/digits-", "out/eff-"), "print-config is a fixed point", pc2)

# --set overrides, against the compress flags they stand for.
r = linfold(["run", PIPE, "--set", "fold.threshold=0.9", "--set", "output.model=s.h5",
             "--set", "output.report=s.json", "-q"], root)
c9 = linfold(["compress", "--model", MODEL, "--data", DATA + ":/val/x", "--prune-dead",
              "--threshold", "0.9", "--select", "optimal", "--out", "c9.h5", "-q"], root)
check(r.status == 0 and c9.status == 0 and
      filecmp.cmp(os.path.join(root, "pipelines/s.h5"), os.path.join(root, "c9.h5"),
                  shallow=False), "--set fold.threshold=0.9 equals compress --threshold 0.9", r)

# --dry-run: valid, prints the plan, writes nothing (not even the output directory).
shutil.rmtree(os.path.join(root, "pipelines", "out"))
r = linfold(["run", PIPE, "--dry-run"], root)
check(r.status == 0 and "valid" in r.out and "3. fold        threshold 0.8" in r.out and
      "359 rows" in r.out, "dry-run prints the resolved plan", r)
check(not os.path.exists(os.path.join(root, "pipelines", "out")), "dry-run writes nothing")


# ------------------------------------------------------------------ validation
def expect_problems(name, text, expected, extra=(), files_checked=False):
    """Runs a pipeline and checks exit 2, nothing written, and exactly the expected problems:
    (token, nth, message regex) each at the token's position."""
    path = os.path.join(root, "pipelines", name)
    with open(path, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    before = set(os.listdir(os.path.join(root, "pipelines")))
    r = linfold(["run", "pipelines/" + name] + list(extra), root)
    check(r.status == 2, "%s: exit 2" % name, r)
    got = problems(r.err)
    want = []
    for token, nth, msg in expected:
        if isinstance(token, tuple):
            line, col = token
        else:
            line, col = position(text if isinstance(text, str) else text.decode("latin-1"),
                                 token, nth)
        want.append(("pipelines/%s:%d:%d: " % (name, line, col), msg))
    check(len(got) == len(want), "%s: %d problems reported, got %d: %s" %
          (name, len(want), len(got), got), r)
    for (prefix, msg), line in zip(want, got):
        check(line.startswith(prefix) and re.search(msg, line[len(prefix):]) is not None,
              "%s: expected %s%s, got %s" % (name, prefix, msg, line), r)
    after = set(os.listdir(os.path.join(root, "pipelines")))
    check(after == before, "%s: nothing written (%s)" % (name, after - before))
    check(re.search(r"linfold: error: pipelines/%s: %d problems?" % (re.escape(name), len(want)),
                    r.err) is not None, "%s: one closing error line with the count" % name, r)
    return r


HEAD = "version: 1\nmodel: ../%s\ncalibration: ../%s:/val/x\n" % (MODEL, DATA)
bad = (HEAD +
       "evaluation: {data: ../%s:/test/x, labels: ../%s:/test/y}\n" % (DATA, DATA) +
       "stages:\n"
       "  - calibrate: {batch: 0}\n"
       "  - prune: {dead: yes, fraction: 1.5}\n"
       "  - fold: {threshhold: 0.8, select: best}\n"
       "  - evaluate: {batches: 10}\n"
       "output: {model: m.h5, reprot: r.json}\n")
expect_problems("many.yaml", bad, [
    ("0}", 0, r"^batch must be a whole number >= 1, not '0'$"),
    ("yes", 0, r"^dead must be true or false, not 'yes'$"),
    ("1.5", 0, r"^fraction 1\.5 is outside \[0, 1\)$"),
    ("threshhold", 0, r"^unknown key 'threshhold' in stage fold \(did you mean 'threshold'\?\)$"),
    ("best", 0, r"^select 'best' is not greedy or optimal$"),
    ("batches", 0, r"^unknown key 'batches' in stage evaluate \(did you mean 'batch'\?\)$"),
    ("reprot", 0, r"^unknown key 'reprot' in output \(did you mean 'report'\?\)$"),
])
expect_problems("types.yaml", HEAD + "stages: {calibrate: {}}\nchekpoint: 3\n", [
    ("{calibrate", 0, r"^stages must be a non-empty list"),
    ("chekpoint", 0, r"did you mean 'checkpoint'"),
])
expect_problems("order.yaml", HEAD +
                "stages:\n  - fold: {threshold: 0.9}\n  - calibrate: {}\n  - fold: {}\n"
                "output: {model: m.h5}\n", [
                    ("calibrate", 0, r"^stage calibrate cannot come after fold"),
                    ("fold", 1, r"^stage fold appears twice \(first at line 5\)$"),
                ])
expect_problems("version.yaml", "version: 2\nmodel: x.h5\nstages: [calibrate]\n", [
    ("2", 0, r"^version must be 1"),
    ("calibrate", 0, r"^stage calibrate needs calibration data$"),
])
expect_problems("prune_by.yaml", HEAD + "stages:\n  - calibrate: {}\n"
                "  - prune: {fraction: 0.3, by: size}\n  - fold: {}\noutput: {model: m.h5}\n", [
                    ("size", 0, r"^by must be rate, energy or variance, not 'size'$"),
                ])
# prune.by=energy is compress --prune-by energy, byte for byte.
open(os.path.join(root, "pipelines", "energy.yaml"), "w").write(
    HEAD + "stages:\n  - calibrate: {}\n  - prune: {fraction: 0.3, by: energy}\n  - fold: {}\n"
    "output: {model: e.h5}\n")
r = linfold(["run", "pipelines/energy.yaml", "-q"], root)
ce = linfold(["compress", "--model", MODEL, "--data", DATA + ":/val/x", "--prune-fraction", "0.3",
              "--prune-by", "energy", "--out", "ce.h5", "-q"], root)
cr = linfold(["compress", "--model", MODEL, "--data", DATA + ":/val/x", "--prune-fraction", "0.3",
              "--prune-by", "rate", "--out", "cr.h5", "-q"], root)
check(r.status == 0 and ce.status == 0 and
      filecmp.cmp(os.path.join(root, "pipelines/e.h5"), os.path.join(root, "ce.h5"), shallow=False),
      "prune by energy in a pipeline equals compress --prune-by energy", r)
check(cr.status == 0 and not filecmp.cmp(os.path.join(root, "ce.h5"), os.path.join(root, "cr.h5"),
                                         shallow=False), "pruning by rate prunes other neurons", cr)
with h5py.File(os.path.join(root, "ce.h5"), "r") as f:
    by = f.attrs["prune_by"]
    check((by.decode() if isinstance(by, bytes) else by) == "energy",
          "the model records prune_by = energy")
r = linfold(["compress", "--model", MODEL, "--data", DATA + ":/val/x", "--prune-by", "energy",
             "--out", "x.h5", "-q"], root)
check(r.status == 2 and "--prune-by has no effect without a --prune-fraction above 0" in r.err,
      "--prune-by without a fraction is refused", r)
r = linfold(["compress", "--model", MODEL, "--data", DATA + ":/val/x", "--prune-fraction", "0.3",
             "--prune-by", "weight", "--out", "x.h5", "-q"], root)
check(r.status == 2 and "--prune-by 'weight' is not rate, energy or variance" in r.err,
      "an unknown --prune-by is refused", r)
expect_problems("confidence.yaml", HEAD +
                "evaluation: {data: ../%s:/test/x, labels: ../%s:/test/y}\n" % (DATA, DATA) +
                "stages:\n  - calibrate: {}\n  - search: {sweep: [0.9], confidence: 1}\n", [
                    ("1}", 0, r"^confidence 1 is outside \[0, 1\)$"),
                    ("1}", 0, r"^confidence goes with max-accuracy-drop$"),
                ])
# The budget's confidence: 0.95 by default, and search.confidence=0 equals compress --confidence 0.
budget = os.path.join(root, "pipelines", "budget.yaml")
open(budget, "w").write(HEAD + "evaluation: {data: ../%s:/val/x, labels: ../%s:/val/y}\n"
                        % (DATA, DATA) + "stages:\n  - calibrate: {}\n"
                        "  - search: {max-accuracy-drop: 0.04, search-fractions: [0]}\n"
                        "output: {model: b0.h5}\n")
pc = linfold(["run", "pipelines/budget.yaml", "--print-config", "-q"], root)
check(pc.status == 0 and re.search(r"max-accuracy-drop: 0\.04\n\s*confidence: 0\.95\n", pc.out),
      "print-config gives the budget's default confidence 0.95", pc)
r = linfold(["run", "pipelines/budget.yaml", "--set", "search.confidence=0", "-q"], root)
cb = linfold(["compress", "--model", MODEL, "--data", DATA + ":/val/x", "--max-accuracy-drop",
              "0.04", "--confidence", "0", "--search-fractions", "0", "--eval-data",
              DATA + ":/val/x", "--eval-labels", DATA + ":/val/y", "--out", "b0.h5", "-q"], root)
check(r.status == 0 and cb.status == 0 and
      filecmp.cmp(os.path.join(root, "pipelines/b0.h5"), os.path.join(root, "b0.h5"),
                  shallow=False), "--set search.confidence=0 equals compress --confidence 0", r)
# The run record's frontier carries each candidate's discordant rows, drop and bound.
r = linfold(["run", "pipelines/budget.yaml", "--set", "output.model=b95.h5", "--set",
             "output.report=b95.json", "-q"], root)
fr = json.load(open(os.path.join(root, "pipelines/b95.json")))["frontier"] if r.status == 0 else []
check(len(fr) >= 2 and all(
    abs(e["drop"] - (e["worse"] - e["better"]) / 359) < 1e-12 and e["drop_upper_bound"] > e["drop"]
    for e in fr), "the record's frontier has worse, better, drop and its bound above it", r)
expect_problems("noout.yaml", HEAD + "stages:\n  - calibrate: {}\n  - fold: {}\n", [
    ("fold", 0, r"^stage fold makes a model: name the output model$"),
])
r = linfold(["run", PIPE, "--set", "fold.threshold=1.5", "--set", "search.sweep=0.9",
             "--set", "nonsense"], root)
# Overrides apply in order, before the file's values are checked.
check(r.status == 2 and problems(r.err) == [
    "--set fold.threshold=1.5: threshold 1.5 is outside (0, 1]",
    "--set search.sweep=0.9: the pipeline has no search stage",
    "--set nonsense: expected KEY=VALUE, for example fold.threshold=0.9"],
      "--set problems name the override", r)

# Files: a missing model, a missing data set, a width mismatch, a labels length mismatch, an
# output that is an input. All reported at once, at the line that names each.
with h5py.File(os.path.join(root, "narrow.h5"), "w") as f:
    f["x"] = np.zeros((10, 63), np.float32)
    f["y"] = np.zeros((11,), np.int64)
files = ("version: 1\nmodel: ../%s\ncalibration: ../narrow.h5:/x\n" % MODEL +
         "evaluation: {data: ../%s:/nothing, labels: ../narrow.h5:/y}\n" % DATA +
         "reference: ../missing.h5\n"
         "stages: [calibrate, {fold: {threshold: 0.9}}]\n"
         "output: {model: ../%s, report: nodir/deeper/r.json}\n" % DATA)
expect_problems("files.yaml", files, [
    ("../narrow.h5:/x", 0, r"has 63 columns, but the model takes 64 inputs"),
    ("../%s:/nothing" % DATA, 0, r"missing dataset /nothing"),
    ("../missing.h5", 0, r"missing\.h5: no such file"),
    ("../%s" % DATA, 1, r"output\.model"),
])
check(not os.path.exists(os.path.join(root, "pipelines", "nodir")),
      "a refused pipeline creates no output directory")

# ------------------------------------------------------------------ malformed YAML
deep = "a: " + "[" * 100000 + "]" * 100000 + "\n"
big = "version: 1\n" + "# padding\n" * 1100000
malformed = [
    ("tab.yaml", "version: 1\nstages:\n\t- calibrate: {}\n", (3, 1), r"tab character"),
    ("dup.yaml", "version: 1\nmodel: a.h5\nmodel: b.h5\n", (3, 1), r"duplicate key 'model'"),
    ("anchor.yaml", "version: 1\nmodel: &m a.h5\nreference: *m\n", (2, 8), r"anchors and aliases"),
    ("alias.yaml", "version: 1\nreference: *m\n", (2, 12), r"alias|anchor"),
    # "a: " then "[" at column 4 is depth 2 (the root mapping is 1): depth 33 is column 35.
    ("deep.yaml", deep, (1, 35), r"nested more than 32 deep"),
    ("big.yaml", big, (1, 1), r"limited to 1 MiB; pipelines/big.yaml has %d bytes" % len(big)),
    ("latin1.yaml", b"version: 1\nname: caf\xe9\n", (2, 10), r"UTF-8"),
    ("nul.yaml", b"version: 1\x00\n", (1, 11), r"NUL"),
    ("quote.yaml", "version: 1\nmodel: 'a.h5\n", None, r"quote|scalar"),
    ("empty.yaml", "", None, r"empty"),
]
for name, text, pos, msg in malformed:
    path = os.path.join(root, "pipelines", name)
    with open(path, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    r = linfold(["run", "pipelines/" + name], root)
    got = problems(r.err)
    check(r.status == 2, "%s: exit 2" % name, r)
    check(len(got) == 1, "%s: one problem line" % name, r)
    if got:
        prefix = "pipelines/%s:" % name + ("%d:%d: " % pos if pos else "")
        check(got[0].startswith(prefix) and re.search(msg, got[0]) is not None,
              "%s: '%s' starts with %s and matches /%s/" % (name, got[0], prefix, msg), r)

# ------------------------------------------------------------------ checkpoint and resume
# SIGUSR1 (SLURM's warning) to the ranks of a 2-rank run once its first checkpoint exists: exit 75
# and a checkpoint. A rerun with another pipeline is refused; --resume at 3 ranks finishes, and
# the model is byte for byte the uninterrupted 1-rank run's. The signal goes to the linfold
# processes only (mpiexec forwards signals too, and a second SIGUSR1 would kill a rank).
rng = np.random.default_rng(1)
with h5py.File(os.path.join(root, "big.h5"), "w") as f:
    f["x"] = (rng.random((300000, 64), dtype=np.float32) * 16).astype(np.float32)
CK = ("version: 1\nmodel: ../%s\ncalibration: ../big.h5:/x\n" % MODEL +
      "stages: [calibrate, {prune: {dead: true}}, {fold: {threshold: 0.9}}]\n"
      "output: {model: ck/m.h5, report: ck/r.json}\n")
open(os.path.join(root, "pipelines", "ck.yaml"), "w").write(CK + "checkpoint: {every-batches: 1}\n")
open(os.path.join(root, "pipelines", "plain.yaml"), "w").write(CK.replace("ck/", "plain/"))
r = linfold(["run", "pipelines/plain.yaml", "-q"], root)
check(r.status == 0, "the uninterrupted run", r)
ckpt = os.path.join(root, "pipelines", "ck", "m.h5.ckpt.h5")
r = linfold(["run", "pipelines/ck.yaml", "--resume"], root)
check(r.status == 2 and "--resume: there is no checkpoint at pipelines/ck/m.h5.ckpt.h5" in r.err,
      "--resume without a checkpoint: exit 2", r)
proc = subprocess.Popen([MPIEXEC, "-n", "2", LINFOLD, "run", "pipelines/ck.yaml"], cwd=root,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
deadline = time.time() + 60
while not os.path.exists(ckpt) and time.time() < deadline and proc.poll() is None:
    time.sleep(0.02)
ranks = subprocess.run(["pgrep", "-f", "^%s run pipelines/ck.yaml" % re.escape(LINFOLD)],
                       capture_output=True, text=True).stdout.split()
for pid in ranks:
    os.kill(int(pid), signal.SIGUSR1)
out, err = proc.communicate(timeout=TIMEOUT)
check(proc.returncode == 75 and re.search(r"checkpoint written to pipelines/ck/m\.h5\.ckpt\.h5 "
                                          r"after [0-9,]+ of 300,000 rows \(SIGUSR1\)", err),
      "SIGUSR1 to both ranks: exit 75 and one checkpoint line (exit %s, %d ranks signalled)\n%s" %
      (proc.returncode, len(ranks), err[-1500:]))
check(os.path.exists(ckpt) and not os.path.exists(os.path.join(root, "pipelines/ck/m.h5")),
      "a checkpoint, no model")
rec = json.load(open(os.path.join(root, "pipelines/ck/r.json")))
check(rec["exit_status"] == 75 and rec["error"]["code"] == "LF_ERR_CHECKPOINT",
      "the record says the run stopped at a checkpoint")
r = linfold(["run", "pipelines/ck.yaml", "--set", "fold.threshold=0.95"], root)
check(r.status != 0 and "is a checkpoint of another run" in r.err and
      "the pipeline with SHA-256" in r.err, "a checkpoint of another pipeline is refused", r)
r = linfold(["run", "pipelines/ck.yaml", "--resume", "-q"], root, ranks=3)
check(r.status == 0 and filecmp.cmp(os.path.join(root, "pipelines/plain/m.h5"),
                                    os.path.join(root, "pipelines/ck/m.h5"), shallow=False),
      "resumed at 3 ranks: the uninterrupted run's model, byte for byte", r)
check(not os.path.exists(ckpt), "the checkpoint is removed once the model is written")

# ------------------------------------------------------------------ a failing run
# NaN in the calibration rows: the run fails after validation; no model, but a record that
# says why (exit status 1, the error naming the data set and the row).
with h5py.File(os.path.join(root, "nan.h5"), "w") as f:
    x = np.ones((50, 64), np.float32)
    x[17, 3] = np.nan
    f["x"] = x
open(os.path.join(root, "pipelines", "nan.yaml"), "w").write(
    "version: 1\nmodel: ../%s\ncalibration: ../nan.h5:/x\n" % MODEL +
    "stages: [calibrate, fold]\noutput: {model: nan-out.h5, report: nan-report.json}\n")
r = linfold(["run", "pipelines/nan.yaml"], root)
check(r.status == 1, "NaN calibration rows: exit 1", r)
check(not os.path.exists(os.path.join(root, "pipelines", "nan-out.h5")), "no model written")
recf = os.path.join(root, "pipelines", "nan-report.json")
if os.path.exists(recf):
    rec = json.load(open(recf))
    check(rec["exit_status"] == 1 and rec["error"]["code"] == "LF_ERR_VALUE" and
          "17" in rec["error"]["message"], "the record names the failure: %s" % rec["error"])
else:
    check(False, "a failed run still writes its record")

shutil.rmtree(tmp)
sys.exit(cli_checks.finish("pipeline_cli"))
