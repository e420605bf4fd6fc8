#!/usr/bin/python3
"""The refit of linfold's reconstruction (docs/algorithm.md), written in NumPy: the peer that
bench/refit_cost.sh times linfold against, and an independent check of its weights.

    /usr/bin/python3 bench/refit_numpy.py ORIGINAL.h5 PRUNED.h5 DATA.h5:/x REFITTED.h5

PRUNED.h5 is linfold's compression of ORIGINAL.h5 by pruning alone (no fold, so no skip block),
without --reconstruct; REFITTED.h5 is the same command's output with --reconstruct. The script
finds which neurons PRUNED.h5 kept (their incoming weights are the original's, unchanged),
refits every layer after the first that lost neurons the way linfold does (float32 forward
passes, double sums over the rows, rows r with r % 5 == 4 held out, lambda from the grid
1e-6 .. 1e-1 relative to diag(G), then all rows; a layer keeps its weights when the refit does
not lower the held-out error), times each layer, and compares the weights with REFITTED.h5.
NumPy uses OpenBLAS with the threads OPENBLAS_NUM_THREADS allows. Prints one line per layer
and a JSON summary on the last line.
"""
import json
import os
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import linfold_format  # noqa: E402

LAMBDAS = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]


def act(z, layer):
    return linfold_format._apply_act(z, layer["activation"], layer["alpha"]).astype(np.float32)


def forward_to(layers, x, last):
    """float32 activations of layers 0..last-1 and the pre-activation of layer `last`."""
    a = x
    for i in range(last):
        a = act(a @ layers[i]["weight"].T + layers[i]["bias"], layers[i])
    return a, a @ layers[last]["weight"].T + layers[last]["bias"]


def kept_neurons(orig, pruned):
    """Per layer, the original neurons the pruned model kept, in order (matched on weights)."""
    kept, prev = [], np.arange(orig[0]["weight"].shape[1])
    for lo, lp in zip(orig, pruned):
        if lo["skips"] or lp["skips"]:
            sys.exit("refit_numpy: skip blocks (a fold) are not handled; prune only")
        w = lo["weight"][:, prev]
        k, t = [], 0
        for j in range(w.shape[0]):
            if t < lp["weight"].shape[0] and np.array_equal(w[j], lp["weight"][t]):
                k.append(j)
                t += 1
        if t != lp["weight"].shape[0]:
            sys.exit("refit_numpy: the pruned model is not a pruning of the original")
        kept.append(np.array(k))
        prev = kept[-1]
    return kept


def solve(g, b, lam):
    a = g.copy()
    d = np.diag(a).copy()
    a[np.diag_indices_from(a)] += lam * np.where(d > 0, d, 1.0)
    return np.linalg.solve(a, b)


def held_error(gh, bh, zzh, x):
    return zzh + np.sum(x * (gh @ x)) - 2.0 * np.sum(x * bh)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    orig = linfold_format.load_model(sys.argv[1])
    pruned = linfold_format.load_model(sys.argv[2])
    path, _, name = sys.argv[3].partition(":")
    with h5py.File(path, "r") as f:
        x = np.asarray(f[name], dtype=np.float32)
    ref = linfold_format.load_model(sys.argv[4])
    kept = kept_neurons(orig, pruned)
    held = (np.arange(x.shape[0]) % 5) == 4
    fit = ~held
    model = [dict(layer) for layer in pruned]
    changed, total, out = False, 0.0, []
    for i in range(len(model)):
        if i > 0 and (changed or len(kept[i - 1]) < orig[i - 1]["weight"].shape[0]):
            t0 = time.perf_counter()
            h32, _ = forward_to(model, x, i)
            _, z32 = forward_to(orig, x, i)
            h = np.hstack([h32.astype(np.float64), np.ones((x.shape[0], 1))])
            z = z32[:, kept[i]].astype(np.float64)
            gf, gh = h[fit].T @ h[fit], h[held].T @ h[held]
            bf, bh = h[fit].T @ z[fit], h[held].T @ z[held]
            zzh = float(np.sum(z[held] ** 2))
            t1 = time.perf_counter()
            errs = [held_error(gh, bh, zzh, solve(gf, bf, lam)) for lam in LAMBDAS]
            best = int(np.argmin(errs))
            xs = solve(gf + gh, bf + bh, LAMBDAS[best])
            x0 = np.vstack([model[i]["weight"].T.astype(np.float64), model[i]["bias"][None, :]])
            before = held_error(gh, bh, zzh, x0)
            keep = not errs[best] < before
            if not keep:
                model[i] = dict(model[i], weight=xs[:-1].T.astype(np.float32),
                                bias=xs[-1].astype(np.float32))
            t2 = time.perf_counter()
            w_ref = np.vstack([ref[i]["weight"].T, ref[i]["bias"][None, :]]).astype(np.float64)
            w_np = np.vstack([model[i]["weight"].T, model[i]["bias"][None, :]]).astype(np.float64)
            diff = float(np.max(np.abs(w_ref - w_np)) / max(np.max(np.abs(w_ref)), 1e-300))
            rec = {"layer": i, "k": h.shape[1], "n_out": z.shape[1], "lambda": LAMBDAS[best],
                   "kept": keep, "seconds": t2 - t0, "sums_seconds": t1 - t0,
                   "weights_rel_diff_vs_linfold": diff}
            out.append(rec)
            total += t2 - t0
            print(f"numpy refit: layer {i} ({h.shape[1] - 1} inputs + bias, {z.shape[1]} outputs): "
                  f"lambda {LAMBDAS[best]:g}{' (keeps its weights)' if keep else ''}, "
                  f"{t2 - t0:.2f} s (sums {t1 - t0:.2f} s); weights vs linfold: {diff:.2e}")
            changed = True
    print(json.dumps({"layers": out, "seconds": total}))


if __name__ == "__main__":
    main()
