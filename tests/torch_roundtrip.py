#!/usr/bin/python3
"""PyTorch round trip through linfold: export, compress under MPI, reload, compare.

Usage: /usr/bin/python3 tests/torch_roundtrip.py LINFOLD_BINARY MPIEXEC

Builds small, seeded nn.Sequential MLPs in which the compression is known in advance, exports
them with tools/linfold_format.py (model 1 through tools/export_torch.py), compresses them
with `linfold compress --threshold 1.0 --layer-rule all --prune-dead` on 2 MPI ranks, runs
`linfold predict` on 2 ranks, loads the compressed file back into PyTorch with
linfold_format.to_torch_module (skip blocks included) and checks it.

Why the results are known: the calibration inputs are non-negative (uniform [0, 1)). A ReLU
or LeakyReLU neuron whose incoming weights are all >= 0 and whose bias is > 0 then has z > 0
on every input (its inputs are the model inputs or ReLU outputs, all >= 0), so it is linear
at threshold 1 and folding it is exact. A ReLU neuron whose incoming weights are all <= 0 and
whose bias is < 0 has z < 0 on every input, so it is dead and pruning it is exact. Every
other neuron is random. So the compressed model must compute the same function on the
calibration rows up to float32 rounding, and it must lose at least the constructed neurons.

Model 1 (12 -> 32 ReLU -> 24 ReLU -> 16 LeakyReLU(0.1) -> 5) checks:
  (a) PyTorch on the compressed file vs `linfold predict` on it: max|diff| / max|out| <= 1e-5
      (the format reader, the skip blocks and the C forward pass agree);
  (b) top-1 of the compressed model == top-1 of the original torch model on every row;
  (c) the compressed file is smaller (parameter count computed in Python, equal to what
      `linfold inspect` prints), has skip blocks, and lost at least the constructed
      linear and dead neurons of every hidden layer;
  (d) original torch outputs vs compressed torch outputs: max|diff| / max|out| <= 1e-5.
Model 2 (12 -> 20 identity -> 16 ReLU -> 5): a Linear followed directly by a Linear. The
  identity layer must vanish (the compressed model reads the input with a ReLU layer), with
  (a), (b) and (d) as above.
Model 3 (12 -> 20 identity -> 16 ReLU, all linear or dead -> 5): the whole network is affine
  on the data, so it must collapse to a single identity layer (5, 12) without skip blocks,
  whose weight is the float64 product of the surviving path, with (a), (b) and (d).

Prints one line per check and a final line `N passed, M failed`; exits 1 if any check failed.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(os.path.dirname(HERE), "tools")
sys.path.insert(0, TOOLS)
import linfold_format as lf  # noqa: E402

TOL = 1e-5          # relative: max|diff| / max|reference output|
N_ROWS = 300
N_IN, N_OUT = 12, 5
RANKS = "2"
SEED = 20240531

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_mpi_yield_when_idle": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=""):
        ok = bool(ok)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail else ""), flush=True)
        return ok


class CommandFailed(Exception):
    pass


def run(cmd, env):
    """Run cmd; return stdout, or raise CommandFailed with the command and its output."""
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"timed out after 60 s: {' '.join(cmd)}\n{exc.stdout or ''}"
                            f"{exc.stderr or ''}") from None
    if p.returncode != 0:
        raise CommandFailed(f"exit status {p.returncode}: {' '.join(cmd)}\n"
                            f"--- stdout\n{p.stdout}--- stderr\n{p.stderr}")
    return p.stdout


def rel_diff(a, ref):
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(a - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


def torch_out(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)).double().numpy()


def n_params(layers):
    return int(sum(l["weight"].size + l["bias"].size + sum(m.size for m in l["skips"].values())
                   for l in layers))


# ---------------------------------------------------------------- models

def force_linear(lin, rows):
    """Rows of lin get incoming weights >= 0 and bias > 0: always active on inputs >= 0."""
    with torch.no_grad():
        lin.weight[rows] = lin.weight[rows].abs()
        lin.bias[rows] = lin.bias[rows].abs() + 0.05


def force_dead(lin, rows):
    """Rows of lin get incoming weights <= 0 and bias < 0: never active on inputs >= 0."""
    with torch.no_grad():
        lin.weight[rows] = -lin.weight[rows].abs()
        lin.bias[rows] = -(lin.bias[rows].abs() + 0.05)


def model_mixed():
    """12 -> 32 ReLU -> 24 ReLU -> 16 LeakyReLU -> 5, with constructed linear/dead neurons.

    Returns (seq, expected upper bounds on the compressed hidden widths)."""
    l0, l1, l2, l3 = nn.Linear(N_IN, 32), nn.Linear(32, 24), nn.Linear(24, 16), nn.Linear(16, N_OUT)
    force_linear(l0, slice(0, 10))
    force_dead(l0, slice(10, 18))
    force_linear(l1, slice(0, 8))
    force_dead(l1, slice(8, 14))
    force_linear(l2, slice(0, 6))  # LeakyReLU neurons are linear but never dead
    seq = nn.Sequential(l0, nn.ReLU(), l1, nn.ReLU(), l2, nn.LeakyReLU(0.1), l3)
    return seq, [32 - 10 - 8, 24 - 8 - 6, 16 - 6]


def model_identity():
    """12 -> 20 (identity, mixed signs) -> 16 ReLU (random) -> 5."""
    return nn.Sequential(nn.Linear(N_IN, 20), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, N_OUT))


def model_collapse():
    """12 -> 20 identity -> 16 ReLU, every neuron constructed linear or dead -> 5."""
    l0, l1, l2 = nn.Linear(N_IN, 20), nn.Linear(20, 16), nn.Linear(16, N_OUT)
    force_linear(l0, slice(0, 20))  # identity layer with outputs >= 0 on inputs >= 0
    force_linear(l1, slice(0, 11))
    force_dead(l1, slice(11, 16))
    return nn.Sequential(l0, l1, nn.ReLU(), l2), list(range(11))


# ---------------------------------------------------------------- one model

def compress_and_compare(c, name, seq, x, tmp, lf_bin, mpiexec, env, use_export_cli):
    """Export, compress, predict, reload. Runs checks (a), (b), (d) and returns the
    (original layers, compressed layers, inspect output of both), or None on a failure."""
    d = os.path.join(tmp, name)
    os.mkdir(d)
    orig_h5, data_h5 = os.path.join(d, "orig.h5"), os.path.join(d, "data.h5")
    small_h5, pred_h5 = os.path.join(d, "small.h5"), os.path.join(d, "pred.h5")
    seq = seq.eval()
    out_orig = torch_out(seq, x)
    with h5py.File(data_h5, "w") as f:
        f.create_dataset("x", data=x)
        f.create_dataset("y", data=np.argmax(out_orig, axis=1).astype(np.int64))
    mpi = [mpiexec, "-n", RANKS, "--oversubscribe", lf_bin]
    try:
        if use_export_cli:
            pt = os.path.join(d, "module.pt")
            torch.save(seq, pt)
            run([sys.executable, os.path.join(TOOLS, "export_torch.py"), pt, orig_h5], env)
        else:
            lf.save_model(orig_h5, lf.from_torch_sequential(seq))
        summary = run(mpi + ["compress", "--model", orig_h5, "--data", data_h5 + ":/x",
                             "--threshold", "1.0", "--layer-rule", "all", "--prune-dead",
                             "--out", small_h5], env)
        print(f"--- {name}: linfold compress\n{summary.rstrip()}")
        run(mpi + ["predict", "--model", small_h5, "--data", data_h5 + ":/x",
                   "--out", pred_h5], env)
        inspect_orig = run([lf_bin, "inspect", orig_h5], env)
        inspect_small = run([lf_bin, "inspect", small_h5], env)
    except CommandFailed as exc:
        c.check(False, f"{name}: linfold commands", str(exc))
        return None
    print(f"--- {name}: linfold inspect small.h5\n{inspect_small.rstrip()}")

    layers_orig = lf.load_model(orig_h5)
    layers_small = lf.load_model(small_h5)
    # The export itself must be faithful, or the comparisons below prove nothing.
    r = rel_diff(lf.forward(layers_orig, x), out_orig)
    c.check(r <= TOL, f"{name}: exported orig.h5 (numpy float64) matches torch", f"rel {r:.2e}")

    small_torch = lf.to_torch_module(layers_small)
    out_small = torch_out(small_torch, x)
    with h5py.File(pred_h5, "r") as f:
        out_pred = f["outputs"][()]
    ok = c.check(out_pred.shape == (len(x), N_OUT), f"{name}: predict /outputs shape",
                 f"{out_pred.shape}")
    if ok:
        r = rel_diff(out_small, out_pred)
        c.check(r <= TOL, f"{name}: (a) torch(small.h5) vs linfold predict", f"rel {r:.2e}")
    top_orig, top_small = np.argmax(out_orig, axis=1), np.argmax(out_small, axis=1)
    agree = int(np.sum(top_orig == top_small))
    c.check(agree == len(x), f"{name}: (b) top-1 small == top-1 original torch",
            f"{agree} of {len(x)}")
    r = rel_diff(out_small, out_orig)
    c.check(r <= TOL, f"{name}: (d) torch(small.h5) vs original torch", f"rel {r:.2e}")
    return layers_orig, layers_small, inspect_orig, inspect_small


def check_inspect_params(c, name, which, text, layers):
    m = re.search(r"^parameters: (\d+) \((\d+) in skip blocks\)", text, re.M)
    want = (n_params(layers), int(sum(mm.size for l in layers for mm in l["skips"].values())))
    got = (int(m.group(1)), int(m.group(2))) if m else None
    c.check(got == want, f"{name}: linfold inspect {which} parameters == Python count",
            f"inspect {got}, Python {want}")


def main(argv):
    if len(argv) != 3:
        print("usage: torch_roundtrip.py LINFOLD_BINARY MPIEXEC", file=sys.stderr)
        return 2
    lf_bin, mpiexec = os.path.abspath(argv[1]), argv[2]
    for path in (lf_bin,):
        if not os.access(path, os.X_OK):
            print(f"FAIL: {path} is not an executable", file=sys.stderr)
            return 1
    env = dict(os.environ)
    for k, v in MPI_ENV.items():
        env.setdefault(k, v)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    x = rng.random((N_ROWS, N_IN), dtype=np.float32)  # uniform [0, 1): non-negative
    c = Checks()
    t0 = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="linfold_torch_") as tmp:
        # ---- model 1: ReLU + LeakyReLU with constructed linear and dead neurons
        seq, max_widths = model_mixed()
        res = compress_and_compare(c, "mixed", seq, x, tmp, lf_bin, mpiexec, env, True)
        if res:
            lo, ls, io, is_ = res
            check_inspect_params(c, "mixed", "orig.h5", io, lo)
            check_inspect_params(c, "mixed", "small.h5", is_, ls)
            po, ps = n_params(lo), n_params(ls)
            c.check(ps < po, "mixed: (c) compressed has fewer parameters",
                    f"{ps} of {po} ({100.0 * ps / po:.1f} %)")
            n_skip = sum(len(l["skips"]) for l in ls)
            c.check(n_skip > 0, "mixed: (c) compressed has skip blocks", f"{n_skip} blocks")
            widths = [l["weight"].shape[0] for l in ls[:-1]]
            c.check(len(ls) == len(lo) and all(w <= m for w, m in zip(widths, max_widths)),
                    "mixed: (c) hidden widths lost the constructed linear and dead neurons",
                    f"widths {widths}, at most {max_widths}")
            c.check([l["activation"] for l in ls] == [l["activation"] for l in lo],
                    "mixed: activations kept (relu, relu, leaky_relu, identity)",
                    ", ".join(l["activation"] for l in ls))

        # ---- model 2: an identity hidden layer (Linear directly followed by Linear)
        res = compress_and_compare(c, "identity", model_identity(), x, tmp, lf_bin, mpiexec,
                                   env, False)
        if res:
            lo, ls, _, _ = res
            c.check(lo[0]["activation"] == "identity" and len(lo) == 3,
                    "identity: exported model has an identity hidden layer",
                    ", ".join(l["activation"] for l in lo))
            c.check(len(ls) == 2 and ls[0]["activation"] == "relu"
                    and ls[0]["weight"].shape[1] == N_IN,
                    "identity: identity layer collapsed (ReLU layer reads the input)",
                    "; ".join(f"{l['activation']} {l['weight'].shape}" for l in ls))

        # ---- model 3: everything linear or dead: one affine layer
        seq, kept = model_collapse()
        res = compress_and_compare(c, "collapse", seq, x, tmp, lf_bin, mpiexec, env, False)
        if res:
            lo, ls, _, _ = res
            shape_ok = (len(ls) == 1 and ls[0]["activation"] == "identity" and not ls[0]["skips"]
                        and ls[0]["weight"].shape == (N_OUT, N_IN))
            c.check(shape_ok, "collapse: whole model collapsed to one affine layer (5, 12)",
                    "; ".join(f"{l['activation']} {l['weight'].shape} skips {sorted(l['skips'])}"
                              for l in ls))
            if shape_ok:
                w = [l["weight"].astype(np.float64) for l in lo]
                b = [l["bias"].astype(np.float64) for l in lo]
                w_exp = w[2][:, kept] @ w[1][kept] @ w[0]
                b_exp = w[2][:, kept] @ (w[1][kept] @ b[0] + b[1][kept]) + b[2]
                r = max(rel_diff(ls[0]["weight"], w_exp), rel_diff(ls[0]["bias"], b_exp))
                c.check(r <= TOL, "collapse: weight and bias equal the float64 product",
                        f"rel {r:.2e}")

    print(f"elapsed {time.monotonic() - t0:.1f} s")
    print(f"{c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
