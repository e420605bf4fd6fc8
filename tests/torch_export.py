#!/usr/bin/python3
"""PyTorch export: no-op modules, exact BatchNorm1d folding, refusals, the export_torch CLI.

Usage: /usr/bin/python3 tests/torch_export.py LINFOLD_BINARY MPIEXEC

Builds small, seeded nn.Sequential models in eval mode with random weights and random, far from
default BatchNorm1d statistics (running_mean ~ N(0.5, 1), running_var ~ U(0.05, 4), gamma of
both signs, beta ~ N(0, 1)) and exports each with linfold_format.from_torch_sequential. For
every model, on 200 random inputs of mixed sign (so ReLU cuts on both sides of a batch norm):

  (A) the exported model evaluated in float64 (linfold_format.forward) equals the original
      torch module evaluated in float64 up to the single float32 rounding of the folded
      parameters;
  (B) the exported file, loaded back (load_model + to_torch_module, float32), agrees with the
      original torch module in float32 up to both float32 evaluations' rounding.

Tolerances are per output element and derived from float32 rounding, not fitted: see
error_bound(). A wrong fold (wrong side of an activation, mu or beta dropped, gamma ignored,
a sign error) changes outputs by O(1), far above these bounds; "wrong side" controls show this
by moving each batch norm across its ReLU. The folded parameters of four models are also
compared with the float64 formulas W' = diag(s) W, b' = s (b - mu) + beta (batch norm after a
Linear) and W' = W diag(s), b' = b + W (beta - s mu) (before a Linear): each must be that value
rounded once to float32 (relative error <= 2^-24).

The model with batch norms in every position is also exported by running tools/export_torch.py
as an executable (not through python), and the real binary runs on it: `linfold predict` on 2
MPI ranks must agree with torch within the (B) bound, and `linfold eval` with torch's top-1 as
labels must report accuracy 1. Image input goes through the binary too (nn.Flatten first; the
rows are torch's C-order flattening). Refusals (track_running_stats=False, a batch norm with
no Linear to fold into, Flatten of the batch axis, ...) must raise a ValueError naming the
module, and export_torch.py must exit 0 / 1 / 2 as its docstring says.

Prints one line per check and a final line `N passed, M failed`; exits 1 if any check failed.
"""

import copy
import json
import os
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
EXPORT = os.path.join(TOOLS, "export_torch.py")
sys.path.insert(0, TOOLS)
import linfold_format as lf  # noqa: E402
from torch_roundtrip import MPI_ENV, Checks, CommandFailed, run  # noqa: E402

SEED = 20240607
N_ROWS = 200
D_IN, H1, H2, D_OUT = 10, 16, 12, 4
RANKS = "2"

# Unit roundoff: rounding to nearest gives |fl(x) - x| <= U * |x|.
U32 = 2.0 ** -24
U64 = 2.0 ** -53
# torch evaluates an eval-mode BatchNorm1d elementwise as x * alpha + beta' with
# alpha = gamma / sqrt(var + eps), beta' = bias - mean * alpha: about 12 roundings, each
# relative to a term bounded by |s| (|x| + |mu|) + |beta|; 16 leaves room.
K_BN = 16
K_TANH = 4     # tanh is correctly rounded to within a couple of ulps (glibc, Sleef)
SLACK = 2.0    # error_bound() is first order; a factor 2 covers the second-order terms


# ---------------------------------------------------------------- error bounds

def torch_steps(seq):
    """The original module as steps for error_bound(): every BN unfused, in float64."""
    steps = []
    for _, mod in lf._torch_modules(seq):
        if isinstance(mod, nn.Linear):
            b = mod.bias.detach().double().numpy() if mod.bias is not None else 0.0
            steps.append(("lin", mod.weight.detach().double().numpy(), b))
        elif isinstance(mod, nn.BatchNorm1d):
            n = mod.num_features
            g = mod.weight.detach().double().numpy() if mod.affine else np.ones(n)
            beta = mod.bias.detach().double().numpy() if mod.affine else np.zeros(n)
            s = g / np.sqrt(mod.running_var.double().numpy() + mod.eps)
            steps.append(("bn", s, mod.running_mean.double().numpy(), beta))
        elif isinstance(mod, (nn.ReLU, nn.LeakyReLU)):
            steps.append(("act", "relu"))  # Lipschitz 1, |act(z)| <= |z|, exact
        elif isinstance(mod, nn.Tanh):
            steps.append(("act", "tanh"))
        elif not isinstance(mod, (nn.Identity, nn.Dropout, nn.Flatten)):
            raise AssertionError(f"torch_steps: {type(mod).__name__} not covered")
    return steps


def layer_steps(layers):
    steps = []
    for l in layers:
        steps.append(("lin", l["weight"].astype(np.float64), l["bias"].astype(np.float64)))
        assert l["activation"] in ("relu", "leaky_relu", "identity", "tanh")
        steps.append(("act", "tanh" if l["activation"] == "tanh" else "relu"))
    return steps


def error_bound(steps, x, u_eval, u_param):
    """First-order bound, per output element, on |computed - exact| for the steps on rows x.

    A bounds |a| and E the accumulated error of a. A Linear of fan-in n computes
    z = W a + b with |z| <= M = |W| A + |b|; evaluating it with unit roundoff u_eval costs at
    most (n + 1) u_eval M (the standard gamma_{n+1} bound, any summation order, FMA or not),
    and parameters that are float32 roundings of the exact ones (u_param = 2^-24) add at most
    u_param M. Errors already in a reach z through |W|. A batch norm s (x - mu) + beta is
    bounded by M = |s| (A + |mu|) + |beta| and costs K_BN u_eval M. ReLU, LeakyReLU (slope
    <= 1) and tanh are 1-Lipschitz with |act(z)| <= |z|; tanh costs K_TANH u_eval A more.
    """
    a = np.abs(np.asarray(x, dtype=np.float64))
    e = np.zeros_like(a)
    for step in steps:
        if step[0] == "lin":
            w, b = np.abs(step[1]), np.abs(step[2])
            m = a @ w.T + b
            e = e @ w.T + ((w.shape[1] + 1) * u_eval + u_param) * m
            a = m
        elif step[0] == "bn":
            s, mu, beta = np.abs(step[1]), np.abs(step[2]), np.abs(step[3])
            m = s * (a + mu) + beta
            e = s * e + K_BN * u_eval * m
            a = m
        elif step[1] == "tanh":
            e = e + K_TANH * u_eval * a
    return SLACK * e


def worst(diff, bound):
    """(max of |diff| / bound, max |diff|)."""
    diff = np.abs(diff)
    return float(np.max(diff / bound)), float(np.max(diff))


# ---------------------------------------------------------------- models

def random_bn(n, gen, affine=True):
    """BatchNorm1d(n) in eval mode with random running statistics (and gamma, beta)."""
    bn = nn.BatchNorm1d(n, affine=affine)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(n, generator=gen) + 0.5)
        bn.running_var.copy_(torch.rand(n, generator=gen) * 3.95 + 0.05)
        if affine:
            sign = torch.where(torch.rand(n, generator=gen) < 0.25, -1.0, 1.0)
            bn.weight.copy_(sign * (torch.rand(n, generator=gen) * 1.7 + 0.3))
            bn.bias.copy_(torch.randn(n, generator=gen))
    return bn


def build_models(gen):
    """name -> (list of modules, input shape of one sample). Linear weights use torch's
    default (seeded) initialisation; everything is put in eval mode by the caller."""
    def lin(i, o):
        return nn.Linear(i, o)

    def bn(n, affine=True):
        return random_bn(n, gen, affine)

    return {
        "bn_after_linear": ([lin(D_IN, H1), bn(H1), nn.ReLU(), lin(H1, D_OUT)], (D_IN,)),
        "bn_after_relu": ([lin(D_IN, H1), nn.ReLU(), bn(H1), lin(H1, D_OUT)], (D_IN,)),
        "bn_input": ([bn(D_IN), lin(D_IN, H1), nn.ReLU(), lin(H1, D_OUT)], (D_IN,)),
        "bn_end": ([lin(D_IN, H1), nn.ReLU(), lin(H1, D_OUT), bn(D_OUT)], (D_IN,)),
        "bn_between_linears": ([lin(D_IN, H1), bn(H1), lin(H1, D_OUT)], (D_IN,)),
        "bn_affine_false": ([bn(D_IN, False), lin(D_IN, H1), bn(H1, False), nn.ReLU(),
                             bn(H1, False), lin(H1, D_OUT)], (D_IN,)),
        "dropout": ([nn.Dropout(0.5), lin(D_IN, H1), nn.Dropout(0.3), nn.ReLU(),
                     nn.Dropout(0.9), lin(H1, D_OUT), nn.Dropout(0.1)], (D_IN,)),
        "identity": ([nn.Identity(), lin(D_IN, H1), nn.Identity(), nn.ReLU(), nn.Identity(),
                      lin(H1, D_OUT), nn.Identity()], (D_IN,)),
        # batch norms in every position, two in a row, nested Sequentials, tanh
        "bn_everywhere": ([bn(D_IN), lin(D_IN, H1), bn(H1), nn.Dropout(0.2), nn.ReLU(),
                           bn(H1), bn(H1, False), lin(H1, H2), bn(H2),
                           nn.Sequential(nn.Tanh(), nn.Sequential(bn(H2), nn.Identity())),
                           lin(H2, D_OUT), bn(D_OUT)], (D_IN,)),
        "flatten_chw": ([nn.Flatten(), lin(3 * 4 * 5, H1), bn(H1), nn.ReLU(), nn.Dropout(0.5),
                         nn.Flatten(), lin(H1, D_OUT)], (3, 4, 5)),
        "flatten_hw": ([nn.Flatten(), nn.Dropout(0.1), bn(6 * 5), lin(6 * 5, H1), nn.ReLU(),
                        lin(H1, D_OUT)], (6, 5)),
    }


def swap_bn_relu(mods):
    """The same modules with the first BatchNorm1d and the ReLU next to it swapped."""
    mods = list(mods)
    i = next(k for k, m in enumerate(mods) if isinstance(m, nn.BatchNorm1d))
    j = i + 1 if isinstance(mods[i + 1], nn.ReLU) else i - 1
    assert isinstance(mods[j], nn.ReLU)
    mods[i], mods[j] = mods[j], mods[i]
    return nn.Sequential(*copy.deepcopy(mods)).eval()


def torch_out(module, x, dtype=torch.float32):
    with torch.no_grad():
        return module.to(dtype)(torch.from_numpy(x).to(dtype)).double().numpy()


def f64(t):
    return t.detach().double().numpy()


def bn_s_mu_beta(bn):
    s = f64(bn.weight) / np.sqrt(f64(bn.running_var) + bn.eps)
    return s, f64(bn.running_mean), f64(bn.bias)


def expected_folds(name, mods):
    """Independent float64 folds of the brief's formulas: [(what, exported layer, W', b')]."""
    if name == "bn_after_linear":      # Linear, BN, ReLU, Linear: into the first Linear's rows
        l0, bn = mods[0], mods[1]
        s, mu, beta = bn_s_mu_beta(bn)
        return [(0, s[:, None] * f64(l0.weight), s * (f64(l0.bias) - mu) + beta)]
    if name == "bn_end":               # ..., Linear, BN: into the last Linear's rows
        l1, bn = mods[2], mods[3]
        s, mu, beta = bn_s_mu_beta(bn)
        return [(1, s[:, None] * f64(l1.weight), s * (f64(l1.bias) - mu) + beta)]
    if name == "bn_after_relu":        # Linear, ReLU, BN, Linear: into the second's columns
        bn, l1 = mods[2], mods[3]
        s, mu, beta = bn_s_mu_beta(bn)
        w = f64(l1.weight)
        return [(1, w * s[None, :], f64(l1.bias) + w @ (beta - s * mu))]
    if name == "bn_input":             # BN, Linear: into the first Linear's columns
        bn, l0 = mods[0], mods[1]
        s, mu, beta = bn_s_mu_beta(bn)
        w = f64(l0.weight)
        return [(0, w * s[None, :], f64(l0.bias) + w @ (beta - s * mu))]
    return []


# ---------------------------------------------------------------- checks

def check_model(c, name, mods, sample_shape, rng, tmp):
    """Export one model and run (A), (B) and the fold and wrong-side checks on it.
    Returns (seq, layers, x_rows, out32, bound32) for use with the binary."""
    seq = nn.Sequential(*mods).eval()
    x = rng.standard_normal((N_ROWS,) + sample_shape).astype(np.float32)
    rows = x.reshape(N_ROWS, -1)  # C order, as nn.Flatten
    try:
        layers = lf.from_torch_sequential(seq)
    except ValueError as exc:
        c.check(False, f"{name}: from_torch_sequential accepts it", str(exc))
        return None
    path = os.path.join(tmp, name + ".h5")
    lf.save_model(path, layers)
    loaded = lf.load_model(path)

    out64 = torch_out(copy.deepcopy(seq), x, torch.float64)
    out32 = torch_out(seq, x)
    steps_orig, steps_exp = torch_steps(seq), layer_steps(loaded)

    # (A) the fold itself: only the one rounding of each folded parameter to float32.
    bound = (error_bound(steps_exp, rows, U64, U32) + error_bound(steps_orig, rows, U64, 0.0))
    ratio, err = worst(lf.forward(loaded, rows) - out64, bound)
    c.check(ratio <= 1.0, f"{name}: (A) float64 forward of the export == torch float64",
            f"max|diff| {err:.2e}, {ratio:.3f} of the bound (max bound {bound.max():.2e})")

    # (B) the file read back into torch, float32 on both sides.
    bound32 = (error_bound(steps_exp, rows, U32, U32) + error_bound(steps_orig, rows, U32, 0.0))
    back = torch_out(lf.to_torch_module(loaded), rows)
    ratio, err = worst(back - out32, bound32)
    c.check(ratio <= 1.0, f"{name}: (B) to_torch_module(load_model) float32 == torch float32",
            f"max|diff| {err:.2e}, {ratio:.3f} of the bound (max bound {bound32.max():.2e})")

    for i, w_exp, b_exp in expected_folds(name, mods):
        w, b = loaded[i]["weight"], loaded[i]["bias"]
        ok = w.shape == w_exp.shape and b.shape == b_exp.shape
        rel = max(float(np.max(np.abs(w - w_exp) / np.abs(w_exp))),
                  float(np.max(np.abs(b - b_exp) / np.abs(b_exp)))) if ok else float("inf")
        c.check(ok and rel <= U32 * (1 + 1e-6),
                f"{name}: layer {i} = float64 fold rounded once to float32",
                f"max relative error {rel / U32:.3f} * 2^-24")

    if name in ("bn_after_linear", "bn_after_relu"):
        # A converter that folded this batch norm into the Linear on its other side would
        # compute the swapped network; it must be far outside the (A) bound.
        wrong = torch_out(swap_bn_relu(mods), x, torch.float64)
        ratio, err = worst(wrong - out64, bound)
        c.check(ratio > 1e3, f"{name}: control: batch norm on the other side of the ReLU "
                f"differs far beyond the bound", f"max|diff| {err:.2e}, {ratio:.2e} of it")
    return seq, layers, rows, out32, bound32


def expect_refusal(c, what, seq, needles):
    try:
        lf.from_torch_sequential(seq.eval())
    except ValueError as exc:
        msg = str(exc)
        c.check(all(n in msg for n in needles), f"refuses {what}", msg)
        return
    except Exception as exc:  # noqa: BLE001 - any other exception is a failure too
        c.check(False, f"refuses {what}", f"raised {type(exc).__name__}: {exc}")
        return
    c.check(False, f"refuses {what}", "accepted")


def check_refusals(c, gen):
    def bn(n):
        return random_bn(n, gen)

    no_stats = nn.BatchNorm1d(H1, track_running_stats=False)
    expect_refusal(c, "BatchNorm1d(track_running_stats=False) after a Linear",
                   nn.Sequential(nn.Linear(D_IN, H1), no_stats, nn.ReLU(),
                                 nn.Linear(H1, D_OUT)),
                   ["module 1 (BatchNorm1d(16))", "track_running_stats=False"])
    expect_refusal(c, "BatchNorm1d(track_running_stats=False) at the input",
                   nn.Sequential(nn.BatchNorm1d(D_IN, track_running_stats=False),
                                 nn.Linear(D_IN, D_OUT)),
                   ["module 0 (BatchNorm1d(10))", "track_running_stats=False"])
    expect_refusal(c, "a batch norm after the last activation",
                   nn.Sequential(nn.Linear(D_IN, H1), nn.ReLU(), bn(H1)),
                   ["module 2 (BatchNorm1d(16)) cannot be folded", "module 1 (ReLU)"])
    expect_refusal(c, "a batch norm followed by an activation at the input",
                   nn.Sequential(bn(D_IN), nn.ReLU(), nn.Linear(D_IN, D_OUT)),
                   ["module 1 (ReLU) follows BatchNorm1d module 0", "at the input"])
    expect_refusal(c, "a batch norm between two activations",
                   nn.Sequential(nn.Linear(D_IN, H1), nn.ReLU(), bn(H1), nn.Tanh(),
                                 nn.Linear(H1, D_OUT)),
                   ["module 3 (Tanh) follows BatchNorm1d module 2", "module 1 (ReLU)"])
    expect_refusal(c, "a batch norm alone", nn.Sequential(bn(D_IN)),
                   ["module 0 (BatchNorm1d(10)) cannot be folded"])
    expect_refusal(c, "a batch norm whose width differs from the Linear before it",
                   nn.Sequential(nn.Linear(D_IN, H1), bn(H2)),
                   ["module 1 (BatchNorm1d(12))", "16 outputs"])
    expect_refusal(c, "a batch norm whose width differs from the Linear after it",
                   nn.Sequential(bn(H2), nn.Linear(D_IN, D_OUT)),
                   ["module 1 (Linear) has 10 inputs", "BatchNorm1d module 0"])
    expect_refusal(c, "a Flatten of the batch axis",
                   nn.Sequential(nn.Linear(D_IN, H1), nn.Flatten(0), nn.Linear(H1, D_OUT)),
                   ["module 1 (Flatten(start_dim=0, end_dim=-1))", "batch axis"])
    expect_refusal(c, "a partial Flatten at the input",
                   nn.Sequential(nn.Flatten(2), nn.Linear(D_IN, D_OUT)),
                   ["module 0 (Flatten(start_dim=2, end_dim=-1)) at the input"])
    expect_refusal(c, "a Flatten after an input batch norm",
                   nn.Sequential(bn(D_IN), nn.Flatten(), nn.Linear(D_IN, D_OUT)),
                   ["module 1 (Flatten", "BatchNorm1d module 0"])
    expect_refusal(c, "an unsupported module (as before)",
                   nn.Sequential(nn.Linear(D_IN, H1), nn.LayerNorm(H1)),
                   ["module 1 (LayerNorm) is not supported"])
    expect_refusal(c, "an unsupported module inside a nested Sequential",
                   nn.Sequential(nn.Linear(D_IN, H1), nn.Sequential(nn.ReLU(), nn.GELU())),
                   ["module 1.1 (GELU) is not supported"])
    expect_refusal(c, "two activations after one Linear (as before)",
                   nn.Sequential(nn.Linear(D_IN, H1), nn.ReLU(), nn.Dropout(), nn.Tanh()),
                   ["module 3 (Tanh): two activations in a row"])


def run_cli(args):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=60)


def check_export_cli(c, tmp, seq, layers):
    """Run tools/export_torch.py directly (argv[0] is the script); returns the output path."""
    if not c.check(os.access(EXPORT, os.X_OK), "export_torch.py is executable", EXPORT):
        return None
    pt, out = os.path.join(tmp, "module.pt"), os.path.join(tmp, "cli.h5")
    torch.save(seq, pt)
    p = run_cli([EXPORT, pt, out])
    ok = c.check(p.returncode == 0 and os.path.exists(out), "export_torch.py MODULE.pt OUT.h5: "
                 "exit 0", f"exit {p.returncode}: {p.stdout.strip()} {p.stderr.strip()}")
    if ok:
        got = lf.load_model(out)
        same = len(got) == len(layers) and all(
            np.array_equal(g[k], l[k]) for g, l in zip(got, layers) for k in ("weight", "bias"))
        c.check(same, "export_torch.py writes the same parameters as from_torch_sequential")

    p = run_cli([EXPORT])
    c.check(p.returncode == 2 and "Usage: tools/export_torch.py MODULE.pt OUT.h5" in p.stderr,
            "export_torch.py without arguments: exit 2, usage on stderr", f"exit {p.returncode}")
    p = run_cli([EXPORT, "--help"])
    c.check(p.returncode == 0 and "BatchNorm1d" in p.stdout,
            "export_torch.py --help: exit 0, usage on stdout", f"exit {p.returncode}")

    bad_pt, bad_out = os.path.join(tmp, "no_stats.pt"), os.path.join(tmp, "no_stats.h5")
    torch.save(nn.Sequential(nn.Linear(D_IN, H1), nn.BatchNorm1d(H1, track_running_stats=False),
                             nn.Linear(H1, D_OUT)).eval(), bad_pt)
    p = run_cli([EXPORT, bad_pt, bad_out])
    c.check(p.returncode == 1 and "module 1 (BatchNorm1d(16))" in p.stderr
            and "track_running_stats=False" in p.stderr and not os.path.exists(bad_out),
            "export_torch.py on track_running_stats=False: exit 1, names the module, no output",
            f"exit {p.returncode}: {p.stderr.strip()}")
    return out if ok else None


def check_binary(c, name, model_h5, rows, out32, bound32, tmp, lf_bin, mpiexec, env):
    """linfold predict on 2 ranks vs torch float32 within the (B) bound; linfold eval with
    torch's top-1 as labels reports accuracy 1."""
    data_h5, pred_h5 = os.path.join(tmp, name + "_data.h5"), os.path.join(tmp, name + "_pred.h5")
    labels = np.argmax(out32, axis=1)
    with h5py.File(data_h5, "w") as f:
        f.create_dataset("x", data=rows)
        f.create_dataset("y", data=labels.astype(np.int64))
    mpi = [mpiexec, "-n", RANKS, "--oversubscribe", lf_bin]
    try:
        run(mpi + ["predict", "--model", model_h5, "--data", data_h5 + ":/x", "--out", pred_h5],
            env)
        ev = json.loads(run(mpi + ["eval", "--model", model_h5, "--data", data_h5 + ":/x",
                                   "--labels", data_h5 + ":/y", "--json"], env))
    except (CommandFailed, ValueError) as exc:
        c.check(False, f"{name}: linfold predict and eval", str(exc))
        return
    with h5py.File(pred_h5, "r") as f:
        pred = f["outputs"][()]
    if not c.check(pred.shape == out32.shape, f"{name}: linfold predict /outputs shape",
                   f"{pred.shape}"):
        return
    ratio, err = worst(pred - out32, bound32)
    c.check(ratio <= 1.0, f"{name}: linfold predict (2 ranks) == torch float32",
            f"max|diff| {err:.2e}, {ratio:.3f} of the bound (max bound {bound32.max():.2e})")
    # Top-1 can only be compared where torch's margin exceeds what rounding can move.
    top2 = np.sort(out32, axis=1)[:, -2:]
    margin = float(np.min((top2[:, 1] - top2[:, 0]) / (2 * bound32.max(axis=1))))
    if c.check(margin > 1.0, f"{name}: every torch top-1 margin exceeds twice the bound",
               f"smallest margin / (2 bound) {margin:.1f}"):
        c.check(ev.get("samples") == len(rows) and ev.get("accuracy") == 1.0,
                f"{name}: linfold eval with torch's top-1 as labels: accuracy 1",
                f"samples {ev.get('samples')}, accuracy {ev.get('accuracy')}")


def main(argv):
    if len(argv) != 3:
        print("usage: torch_export.py LINFOLD_BINARY MPIEXEC", file=sys.stderr)
        return 2
    lf_bin, mpiexec = os.path.abspath(argv[1]), argv[2]
    if not os.access(lf_bin, os.X_OK):
        print(f"FAIL: {lf_bin} is not an executable", file=sys.stderr)
        return 1
    env = dict(os.environ)
    for k, v in MPI_ENV.items():
        env.setdefault(k, v)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    c = Checks()
    t0 = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="linfold_torch_export_") as tmp:
        results = {}
        for name, (mods, shape) in build_models(gen).items():
            results[name] = check_model(c, name, mods, shape, rng, tmp)
        check_refusals(c, gen)

        res = results["bn_everywhere"]
        if res:
            seq, layers, rows, out32, bound32 = res
            cli_h5 = check_export_cli(c, tmp, seq, layers)
            if cli_h5:
                check_binary(c, "bn_everywhere", cli_h5, rows, out32, bound32, tmp, lf_bin,
                             mpiexec, env)
        res = results["flatten_chw"]
        if res:
            _, _, rows, out32, bound32 = res
            check_binary(c, "flatten_chw", os.path.join(tmp, "flatten_chw.h5"), rows, out32,
                         bound32, tmp, lf_bin, mpiexec, env)

    print(f"elapsed {time.monotonic() - t0:.1f} s")
    print(f"{c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
