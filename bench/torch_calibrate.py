#!/usr/bin/python3
"""PyTorch doing linfold's calibration pass: forward in batches with hooks that count, for every
hidden neuron, the rows with a positive pre-activation (and track min/max like linfold).

    OPENBLAS_NUM_THREADS=T /usr/bin/python3 bench/torch_calibrate.py MODEL.h5 DATA.h5 /train/x BATCH

Prints one line: rows, seconds (forward loop only; data already in memory), rows/s, kernel.
"""
import os
import sys
import time

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import linfold_format  # noqa: E402


def main():
    model_path, data_path, dset, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    threads = int(os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    layers = linfold_format.load_model(model_path)
    net = linfold_format.to_torch_module(layers)
    with h5py.File(data_path, "r") as f:
        x = torch.from_numpy(np.ascontiguousarray(f[dset][:]))
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    counts = [torch.zeros(m.out_features, dtype=torch.int64) for m in linears]
    zmin = [torch.full((m.out_features,), float("inf")) for m in linears]
    zmax = [torch.full((m.out_features,), float("-inf")) for m in linears]

    def hook(k):
        def count(_module, _inputs, z):
            counts[k].add_((z > 0).sum(0))
            torch.minimum(zmin[k], z.min(0).values, out=zmin[k])
            torch.maximum(zmax[k], z.max(0).values, out=zmax[k])
        return count

    for k, m in enumerate(linears):
        m.register_forward_hook(hook(k))
    with torch.no_grad():
        net(x[:batch])  # warm-up, not timed
        for c in counts:
            c.zero_()
        t0 = time.perf_counter()
        for r in range(0, x.shape[0], batch):
            net(x[r:r + batch])
        elapsed = time.perf_counter() - t0
    n = x.shape[0]
    print(f"torch rows {n} seconds {elapsed:.4f} rows/s {n / elapsed:.0f} "
          f"threads {threads} kernel {os.environ.get('OPENBLAS_CORETYPE', 'library')}")


if __name__ == "__main__":
    main()
