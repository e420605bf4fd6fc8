#!/usr/bin/python3
"""The peers for bench/compressed_read.sh: HDF5's own decoding rate (h5py reading the whole
dataset) and zlib's inflate rate on the same chunks (what linfold's chunk check adds), in rows/s,
best of 3.

    /usr/bin/python3 bench/compressed_read.py FILE.h5 DATASET
"""
import sys
import time
import zlib

import h5py
import numpy as np


def best(fn):
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        rows = fn()
        rates.append(rows / (time.perf_counter() - t0))
    return max(rates)


def main():
    path, name = sys.argv[1], sys.argv[2]
    with h5py.File(path, "r") as f:
        d = f[name]
        rows = d.shape[0]
        out = np.empty(d.shape, dtype=np.float32)

        def hdf5_read():
            d.read_direct(out)
            return rows

        print(f"h5py read (HDF5 decodes) rows/s {best(hdf5_read):.0f}")
        if d.compression != "gzip":
            return
        raw = [d.id.read_direct_chunk((r, 0))[1] for r in range(0, rows, d.chunks[0])]
        # Shuffle filters come before deflate on writing, so inflate is the whole cost that counts.

        def inflate():
            for b in raw:
                zlib.decompress(b)
            return rows

        print(f"zlib inflate of the raw chunks rows/s {best(inflate):.0f}")


if __name__ == "__main__":
    main()
