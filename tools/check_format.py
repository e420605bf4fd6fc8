#!/usr/bin/python3
"""Self-test: numpy forward of model.h5 vs. to_torch_module on the test split.

Usage: /usr/bin/python3 tools/check_format.py [--dir tests/data/digits] [--tol 1e-4]
Exit status 1 if the float32 torch module differs by more than --tol.
"""

import argparse
import os
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import linfold_format as lf  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=os.path.join(os.path.dirname(HERE), "tests", "data", "digits"))
    p.add_argument("--tol", type=float, default=1e-4)
    args = p.parse_args()

    layers = lf.load_model(os.path.join(args.dir, "model.h5"))
    with h5py.File(os.path.join(args.dir, "data.h5"), "r") as f:
        x = f["test/x"][()]
        y = f["test/y"][()]
    print("layers:", ", ".join(
        f"{l['weight'].shape[1]}->{l['weight'].shape[0]} {l['activation']}"
        + (f" skips={list(l['skips'])}" if l["skips"] else "") for l in layers))

    ref = lf.forward(layers, x)
    with torch.no_grad():
        out32 = lf.to_torch_module(layers)(torch.from_numpy(x)).numpy()
        out64 = lf.to_torch_module(layers, dtype=torch.float64)(
            torch.from_numpy(x.astype(np.float64))).numpy()
    d32 = float(np.max(np.abs(ref - out32)))
    d64 = float(np.max(np.abs(ref - out64)))
    acc = float(np.mean(ref.argmax(1) == y))
    print(f"test samples {len(y)}, accuracy {acc:.4f}")
    print(f"max abs diff numpy(float64) vs torch float32: {d32:.3g}")
    print(f"max abs diff numpy(float64) vs torch float64: {d64:.3g}")
    agree = bool(np.all(ref.argmax(1) == out32.argmax(1)))
    print(f"argmax agreement: {agree}")
    ok = d32 <= args.tol and agree
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
