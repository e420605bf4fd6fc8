"""Pieces the seeded training scripts (train_digits, train_fmnist, train_tabular) share.

Each script keeps its own data, model and schedule; these are the steps that must be identical
for the results to be reproducible: seeding, one minibatch epoch, and atomic, timestamp-free
writes of the split data file.
"""
import os
import random
import tempfile

import numpy as np

import linfold_format as lf


def seed_everything(seed):
    """Seed Python, NumPy and torch, pin torch to 2 threads and deterministic kernels."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)


def train_epoch(model, opt, loss_fn, xt, yt, batch, gen):
    """One pass over (xt, yt) in a random order drawn from gen; returns the mean loss."""
    import torch

    model.train()
    n = xt.shape[0]
    perm = torch.randperm(n, generator=gen)
    total = 0.0
    for start in range(0, n, batch):
        idx = perm[start:start + batch]
        opt.zero_grad()
        loss = loss_fn(model(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
        total += loss.item() * idx.numel()
    return total / n


def write_splits(path, splits, attrs):
    """Write /train, /val, /test (x float32, y int64) and root attributes, atomically and
    without timestamps, so the same splits give the same bytes."""
    def writer(f):
        for key, value in attrs.items():
            f.attrs[key] = value
        for name in ("train", "val", "test"):
            x, y = splits[name]
            g = f.create_group(name)
            g.create_dataset("x", data=np.ascontiguousarray(x, dtype=np.float32),
                             track_times=False)
            g.create_dataset("y", data=np.ascontiguousarray(y, dtype=np.int64),
                             track_times=False)

    lf._atomic_h5_write(path, writer)


def write_text_atomic(path, text):
    """Write text to a temporary file next to path, then os.replace it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
