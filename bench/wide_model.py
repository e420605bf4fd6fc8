#!/usr/bin/python3
"""A seeded synthetic wide MLP and calibration rows, for the wide-model benchmarks.

    wide_model.py OUT_DIR [WIDTHS] [ROWS] [LINEAR_SHARE]

WIDTHS defaults to 1024,8192,8192,8192,10 (142.7 M parameters, 571 MB); hidden layers are ReLU,
the last identity. Weights are N(0, 1/fan_in); a share LINEAR_SHARE (default 0.9) of each hidden
layer's neurons gets a bias of 100, which keeps them positive on every row of the data (inputs
are U[0, 1)), so those neurons are provably linear on the calibration rows. Writes
OUT_DIR/wide.h5 (linfold format, tools/linfold_format.py) and OUT_DIR/wide-data.h5 with /x
(ROWS, WIDTHS[0]) float32 (default 2,048 rows). Seed 20261203: the same files every time.
"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from linfold_format import save_model  # noqa: E402

out = sys.argv[1]
widths = [int(w) for w in (sys.argv[2] if len(sys.argv) > 2 else "1024,8192,8192,8192,10").split(",")]
rows = int(sys.argv[3]) if len(sys.argv) > 3 else 2048
share = float(sys.argv[4]) if len(sys.argv) > 4 else 0.9
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(20261203)
layers = []
for i in range(len(widths) - 1):
    n_in, n_out = widths[i], widths[i + 1]
    w = (rng.standard_normal((n_out, n_in), dtype=np.float32) / np.float32(np.sqrt(n_in)))
    b = (rng.standard_normal(n_out, dtype=np.float32) * np.float32(0.01))
    hidden = i < len(widths) - 2
    if hidden:
        b[: int(share * n_out)] = 100.0
    layers.append({"weight": w.astype(np.float32), "bias": b.astype(np.float32),
                   "activation": "relu" if hidden else "identity", "alpha": None, "skips": {}})
model = os.path.join(out, "wide.h5")
if not os.path.exists(model):
    save_model(model, layers)
data = os.path.join(out, "wide-data.h5")
if not os.path.exists(data):
    with h5py.File(data + ".tmp", "w") as f:
        f["x"] = rng.random((rows, widths[0]), dtype=np.float32)
    os.replace(data + ".tmp", data)
print(model, data)
