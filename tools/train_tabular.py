#!/usr/bin/python3
"""Train the paper's tabular MLP d-64-128-128-256-256-c on seven tabular tasks.

Hidden layers ReLU, output identity (c logits; c = number of classes, also
c = 2 outputs for binary tasks). Tasks (see TASKS below):

    digits         sklearn.datasets.load_digits          1797 x 64, 10 classes
    breast_cancer  sklearn.datasets.load_breast_cancer    569 x 30,  2 classes
    wine           sklearn.datasets.load_wine             178 x 13,  3 classes
    iris           sklearn.datasets.load_iris             150 x 4,   3 classes
    synth_a        make_classification(n_samples=3000, n_features=20,
                   n_informative=10, n_redundant=2, n_classes=2, random_state=1)
    synth_b        make_classification(n_samples=3000, n_features=40,
                   n_informative=20, n_redundant=2, n_classes=4, random_state=2)
    synth_c        make_classification(n_samples=3000, n_features=30,
                   n_informative=15, n_redundant=2, n_classes=3, random_state=3)

(make_classification otherwise uses its defaults: n_repeated=0,
n_clusters_per_class=2, flip_y=0.01, class_sep=1.0, shuffle=True.)

Preprocessing: stratified split train/val/test = 60/20/20 % via
sklearn.model_selection.train_test_split (test_size=0.4, then the held-out
part 50/50; both with random_state=--seed); StandardScaler fitted on the
train split only and applied to all splits; stored features are the
standardised float32 values, labels int64 0..c-1.

Training: Adam lr 1e-3, batch 64, CrossEntropyLoss, a fixed epoch count per
task (200 for the four small real sets, 100 for the 3000-sample synthetic
ones); by default the weights after the last epoch are saved (like the
paper's fixed-epoch training; note these models reach 100 % train accuracy).
Optional early stopping (--patience N > 0): after each epoch the mean val CE
loss is computed, the weights with the lowest val loss so far (earliest epoch
on ties) are kept, training stops once val loss has not improved for N
epochs, and the kept weights are saved. (With N = 30 the val-loss minimum
comes after only 5-30 epochs, i.e. much less trained models.) Everything is
seeded (python, numpy, torch reset to --seed at the start of every task,
shuffling via a seeded torch Generator, 2 threads,
torch.use_deterministic_algorithms), so results, including the early-stopping
choice, are deterministic for a given seed, torch build and machine.

Writes, for each task, <out-dir>/<task>/model.h5 (linfold format v1) and
<out-dir>/<task>/data.h5 (/train|val|test /x float32 [n,d], /y int64 [n];
root attrs description, scaler_mean, scaler_scale), and <out-dir>/summary.json:
a JSON list with one object per task, one per line (task, d, c, n_train,
n_val, n_test, train/val/test accuracy measured on the saved file, params,
epochs run, kept epoch and its val loss,
minimum val loss and its epoch, ...). With --tasks, entries of tasks not run are
kept from an existing summary.json. All files are written atomically
(temp file + os.replace); HDF5 output carries no timestamps.

Commands used (default fixed-epoch models, and an early-stopped comparison set):
    /usr/bin/python3 tools/train_tabular.py --out-dir /work/models/tabular --seed 0 \\
        2>&1 | tee /work/models/tabular/train.log
    /usr/bin/python3 tools/train_tabular.py --out-dir /work/models/tabular_es --seed 0 \\
        --patience 30 2>&1 | tee /work/models/tabular_es/train.log

Usage:  /usr/bin/python3 tools/train_tabular.py [--out-dir DIR] [--seed N]
            [--patience N] [--tasks NAME[,NAME...]]
"""

import argparse
import json
import os
import random
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import linfold_format as lf  # noqa: E402
import training  # noqa: E402

HIDDEN = (64, 128, 128, 256, 256)
BATCH = 64
LR = 1e-3
THRESHOLDS = (1.0, 0.99, 0.95)

# name -> (loader kind, loader kwargs, max epochs)
TASKS = {
    "digits": ("load_digits", {}, 200),
    "breast_cancer": ("load_breast_cancer", {}, 200),
    "wine": ("load_wine", {}, 200),
    "iris": ("load_iris", {}, 200),
    "synth_a": ("make_classification",
                dict(n_samples=3000, n_features=20, n_informative=10, n_redundant=2,
                     n_classes=2, random_state=1), 100),
    "synth_b": ("make_classification",
                dict(n_samples=3000, n_features=40, n_informative=20, n_redundant=2,
                     n_classes=4, random_state=2), 100),
    "synth_c": ("make_classification",
                dict(n_samples=3000, n_features=30, n_informative=15, n_redundant=2,
                     n_classes=3, random_state=3), 100),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", default="/work/models/tabular",
                   help="output directory (default: /work/models/tabular)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed for torch/numpy and the split (default 0)")
    p.add_argument("--patience", type=int, default=0,
                   help="early-stopping patience in epochs on val loss; the best-val-loss "
                        "weights are saved; 0 = off, train the fixed epoch count and save "
                        "the last epoch (default 0)")
    p.add_argument("--tasks", default=",".join(TASKS),
                   help=f"comma-separated subset of {','.join(TASKS)} (default: all)")
    args = p.parse_args()
    if args.patience < 0:
        p.error("--patience must be >= 0")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        p.error(f"unknown task(s) {bad}; choose from {list(TASKS)}")
    args.tasks = tasks
    return args


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

def load_task(name):
    import sklearn.datasets as skd

    kind, kwargs, _ = TASKS[name]
    if kind == "make_classification":
        x, y = skd.make_classification(**kwargs)
        src = f"sklearn.datasets.make_classification({', '.join(f'{k}={v}' for k, v in kwargs.items())}) (other args default)"
    else:
        ds = getattr(skd, kind)()
        x, y = ds.data, ds.target
        src = f"sklearn.datasets.{kind}()"
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64), src


def make_splits(x, y, seed):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x_tr, x_rest, y_tr, y_rest = train_test_split(
        x, y, test_size=0.4, stratify=y, random_state=seed)
    x_va, x_te, y_va, y_te = train_test_split(
        x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed)
    scaler = StandardScaler().fit(x_tr)

    def tf(a):
        return np.ascontiguousarray(scaler.transform(a), dtype=np.float32)

    splits = {"train": (tf(x_tr), y_tr.copy()), "val": (tf(x_va), y_va.copy()),
              "test": (tf(x_te), y_te.copy())}
    return splits, scaler


def write_data(path, splits, scaler, desc):
    training.write_splits(path, splits, {
        "description": desc,
        "scaler_mean": np.asarray(scaler.mean_, dtype=np.float64),
        "scaler_scale": np.asarray(scaler.scale_, dtype=np.float64),
    })


def write_summary(path, entries):
    """JSON list, one task object per line (valid JSON and grep-friendly)."""
    order = {t: k for k, t in enumerate(TASKS)}
    entries = sorted(entries, key=lambda e: (order.get(e["task"], len(order)), e["task"]))
    lines = [json.dumps(e, sort_keys=False) for e in entries]
    training.write_text_atomic(path, "[\n" + ",\n".join(lines) + "\n]\n")


# --------------------------------------------------------------------------
# model / training
# --------------------------------------------------------------------------

def build_model(d, c):
    import torch.nn as nn

    mods, prev = [], d
    for h in HIDDEN:
        mods += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    mods.append(nn.Linear(prev, c))
    return nn.Sequential(*mods)


def val_loss(model, x, y):
    import torch

    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(x))
        return float(torch.nn.functional.cross_entropy(out, torch.from_numpy(y)).item())


def train(model, splits, max_epochs, patience, seed):
    import copy

    import torch

    x, y = splits["train"]
    xv, yv = splits["val"]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    best = (float("inf"), 0, None)  # (val loss, epoch, state_dict)
    epoch, vl = 0, float("nan")
    for epoch in range(1, max_epochs + 1):
        mean_loss = training.train_epoch(model, opt, loss_fn, xt, yt, BATCH, gen)
        vl = val_loss(model, xv, yv)
        if vl < best[0]:
            best = (vl, epoch, copy.deepcopy(model.state_dict()))
        if epoch == 1 or epoch % 25 == 0:
            print(f"  epoch {epoch:4d}  train loss {mean_loss:.5f}  val loss {vl:.5f}",
                  flush=True)
        if patience and epoch - best[1] >= patience:
            print(f"  early stop after epoch {epoch} (best val loss {best[0]:.5f} at "
                  f"epoch {best[1]})", flush=True)
            break
    if patience:
        model.load_state_dict(best[2])
        kept = best[1]
    else:
        kept = epoch
    model.eval()
    return {"epochs_run": epoch, "kept_epoch": kept, "best_val_loss": best[0],
            "best_val_epoch": best[1], "last_val_loss": vl,
            "kept_val_loss": val_loss(model, xv, yv)}


def activation_stats(layers, x):
    zs, _ = lf.forward_trace(layers, x, validate=False)
    out = []
    for i, (layer, z) in enumerate(zip(layers, zs)):
        if layer["activation"] != "relu":
            continue
        rate = (z > 0).mean(axis=0)
        out.append({"layer": i, "width": int(z.shape[1]),
                    "always_active": int(np.sum(rate == 1.0)),
                    "dead": int(np.sum(rate == 0.0)),
                    **{f"rate_ge_{t:g}": int(np.sum(rate >= t)) for t in THRESHOLDS}})
    return out


def run_task(name, args, out_root):
    import torch

    t0 = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    x, y, src = load_task(name)
    classes = np.unique(y)
    if not np.array_equal(classes, np.arange(len(classes))):
        raise ValueError(f"{name}: labels {classes} are not 0..c-1")
    c = int(len(classes))
    d = int(x.shape[1])
    splits, scaler = make_splits(x, y, args.seed)
    max_epochs = TASKS[name][2]
    print(f"\n=== {name}: {x.shape[0]} samples, d={d}, c={c}; "
          + ", ".join(f"{k} {len(v[1])}" for k, v in splits.items())
          + f"; max {max_epochs} epochs, patience {args.patience}", flush=True)

    model = build_model(d, c)
    n_params = int(sum(p.numel() for p in model.parameters()))
    info = train(model, splits, max_epochs, args.patience, args.seed)

    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, "model.h5")
    data_path = os.path.join(out_dir, "data.h5")
    lf.save_model(model_path, lf.from_torch_sequential(model))
    desc = (f"{src}; {x.shape[0]} samples, {d} features, {c} classes. Stratified split "
            "train/val/test = 60/20/20 % via sklearn.model_selection.train_test_split: "
            f"test_size=0.4 (random_state={args.seed}), then the held-out part split "
            f"50/50 into val/test (random_state={args.seed}). Features standardised "
            "with sklearn StandardScaler fitted on the train split only (root attrs "
            "scaler_mean/scaler_scale), stored as float32; labels int64 0..c-1. "
            "Generated by tools/train_tabular.py.")
    write_data(data_path, splits, scaler, desc)

    layers = lf.load_model(model_path)
    with torch.no_grad():
        torch_test = model(torch.from_numpy(splits["test"][0])).numpy()
    diff = float(np.max(np.abs(lf.forward(layers, splits["test"][0]) - torch_test)))
    acc = {k: float(np.mean(np.argmax(lf.forward(layers, splits[k][0]), axis=1)
                           == splits[k][1])) for k in splits}
    stats = activation_stats(layers, splits["val"][0])
    secs = time.time() - t0
    print(f"  kept epoch {info['kept_epoch']} of {info['epochs_run']} run (val loss "
          f"{info['kept_val_loss']:.4f}; min {info['best_val_loss']:.4f} at epoch "
          f"{info['best_val_epoch']}); acc train "
          f"{acc['train']:.4f} val {acc['val']:.4f} test {acc['test']:.4f}; "
          f"max |file - torch| {diff:.2g}; {secs:.1f} s", flush=True)
    print("  val always-active/dead per hidden layer: "
          + " ".join(f"L{s['layer']}:{s['always_active']}/{s['dead']}" for s in stats),
          flush=True)
    return {
        "task": name, "d": d, "c": c,
        "n_train": int(len(splits["train"][1])), "n_val": int(len(splits["val"][1])),
        "n_test": int(len(splits["test"][1])),
        "train_acc": round(acc["train"], 6), "val_acc": round(acc["val"], 6),
        "test_acc": round(acc["test"], 6),
        "params": n_params,
        "architecture": f"{d}-{'-'.join(map(str, HIDDEN))}-{c}",
        "max_epochs": max_epochs, "epochs_run": info["epochs_run"],
        "kept_epoch": info["kept_epoch"], "kept_val_loss": round(info["kept_val_loss"], 6),
        "best_val_loss": round(info["best_val_loss"], 6),
        "best_val_epoch": info["best_val_epoch"],
        "patience": args.patience, "seed": args.seed,
        "source": src,
        "val_always_active": [s["always_active"] for s in stats],
        "val_dead": [s["dead"] for s in stats],
        "max_abs_logit_diff_file_vs_torch_test": diff,
        "seconds": round(secs, 1),
        "model": model_path, "data": data_path,
        "model_bytes": os.path.getsize(model_path), "data_bytes": os.path.getsize(data_path),
    }


def main():
    args = parse_args()
    out_root = os.path.abspath(args.out_dir)
    os.makedirs(out_root, exist_ok=True)

    import torch

    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, seed {args.seed}, Adam lr {LR}, batch {BATCH}, "
          f"hidden {'-'.join(map(str, HIDDEN))}", flush=True)

    summary_path = os.path.join(out_root, "summary.json")
    entries = {}
    if os.path.exists(summary_path) and set(args.tasks) != set(TASKS):
        with open(summary_path) as fh:
            for e in json.load(fh):
                entries[e["task"]] = e
    t0 = time.time()
    for name in args.tasks:
        entries[name] = run_task(name, args, out_root)
        write_summary(summary_path, list(entries.values()))
    print(f"\nwrote {summary_path}; total {time.time() - t0:.1f} s")
    print(f"{'task':14s} {'d':>3s} {'c':>2s} {'n_tr/va/te':>14s} {'train':>7s} {'val':>7s} "
          f"{'test':>7s} {'params':>7s} {'ep kept/run':>11s}")
    for name in args.tasks:
        e = entries[name]
        print(f"{name:14s} {e['d']:3d} {e['c']:2d} "
              f"{e['n_train']:>5d}/{e['n_val']}/{e['n_test']:<4d} "
              f"{e['train_acc']:7.4f} {e['val_acc']:7.4f} {e['test_acc']:7.4f} "
              f"{e['params']:7d} {e['kept_epoch']:>5d}/{e['epochs_run']}")


if __name__ == "__main__":
    main()
