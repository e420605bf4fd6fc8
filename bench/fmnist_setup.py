#!/usr/bin/python3
"""Benchmark inputs: Fashion-MNIST as HDF5 and a seeded random MLP of the paper's shape.

Writes OUT/fmnist.h5 with /train/x (60000, 784) float32 in [0, 1], /train/y, /test/x, /test/y
from Debian's dataset-fashion-mnist, and OUT/mlp-784.h5: 784-1024-1024-512-512-256-256-10 ReLU with
He-uniform weights (seed 0), in linfold's model format. Random weights are fine for throughput.

    /usr/bin/python3 bench/fmnist_setup.py OUT_DIR
"""
import gzip
import os
import struct
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import linfold_format  # noqa: E402

SRC = "/usr/share/datasets/fashion-mnist"
WIDTHS = [784, 1024, 1024, 512, 512, 256, 256, 10]


def idx(path):
    with gzip.open(path, "rb") as f:
        magic, = struct.unpack(">I", f.read(4))
        dims = struct.unpack(">" + "I" * (magic & 0xFF), f.read(4 * (magic & 0xFF)))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(dims)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    data = os.path.join(out, "fmnist.h5")
    if not os.path.exists(data):
        tmp = data + ".tmp"
        with h5py.File(tmp, "w") as f:
            for split, prefix in (("train", "train"), ("test", "t10k")):
                x = idx(f"{SRC}/{prefix}-images-idx3-ubyte.gz").reshape(-1, 784)
                y = idx(f"{SRC}/{prefix}-labels-idx1-ubyte.gz")
                f.create_dataset(f"/{split}/x", data=(x / 255.0).astype(np.float32))
                f.create_dataset(f"/{split}/y", data=y.astype(np.int64))
        os.replace(tmp, data)
    rng = np.random.default_rng(0)
    layers = []
    for i in range(len(WIDTHS) - 1):
        fan_in, fan_out = WIDTHS[i], WIDTHS[i + 1]
        bound = np.sqrt(6.0 / fan_in)
        layers.append({
            "weight": rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32),
            "bias": rng.uniform(-0.05, 0.05, fan_out).astype(np.float32),
            "activation": "identity" if i == len(WIDTHS) - 2 else "relu",
            "alpha": None,
            "skips": {},
        })
    linfold_format.save_model(os.path.join(out, "mlp-784.h5"), layers)


if __name__ == "__main__":
    main()
