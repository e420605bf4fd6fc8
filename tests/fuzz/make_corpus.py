#!/usr/bin/python3
"""Writes the seed corpus of the fuzz targets: tests/fuzz/corpus/{model,stats,data}/.

    /usr/bin/python3 tests/fuzz/make_corpus.py --linfold BUILD/linfold [--out tests/fuzz/corpus]

Small valid files (a few KB each) that cover the ways a reader meets its input:

  * linfold's own writer (`linfold compress`, `linfold calibrate`): fixed-length string
    attributes, skip blocks, leaky_relu with alpha, provenance attributes;
  * h5py through tools/linfold_format.py, which writes variable-length string attributes
    (their values live in a global heap, a path that HDF5 1.10.8 does not check well);
  * chunked, deflate-compressed (with shuffle and fletcher32), compact and big-endian datasets,
    other integer and float widths, the newest file format (libver="latest": version 2 object
    headers, link messages, dense attribute storage), float64 samples, int32 labels, a data file
    with several datasets.

Everything is deterministic: fixed values or a seeded numpy generator, no timestamps, relative
paths in linfold's provenance attributes. The statistics seeds are made for the fixed model of
fuzz_fixed.h (lf_fuzz_fixed_model(), same fingerprint). Rerunning the script rewrites the same
bytes. The checkpoint seeds are written by make_checkpoint_corpus.c, with linfold's own writer.
"""

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import linfold_format  # noqa: E402

# lf_model_fingerprint() of fuzz_fixed.h's lf_fuzz_fixed_model(); both sides check it.
FIXED_FINGERPRINT = 0x112284D492855AFB
ACT_CODES = {name: k for k, name in enumerate(linfold_format.ACTIVATIONS)}  # lf_act_t order


# ------------------------------------------------------------------ the fixed model of fuzz_fixed.h


def fixed_value(i, tag, n):
    """fuzz_fixed.h lf_fuzz_fixed_value(): element k of block `tag` of layer i, multiples of 1/16."""
    k = np.arange(n, dtype=np.int64)
    return (((k * 7 + i * 3 + tag * 5) % 17 - 8) / 16.0).astype(np.float32)


def fixed_model():
    widths, acts, n_in = [6, 5, 3], ["leaky_relu", "relu", "identity"], 4
    layers, prev = [], n_in
    for i, (w, act) in enumerate(zip(widths, acts)):
        layer = {"weight": fixed_value(i, 0, w * prev).reshape(w, prev),
                 "bias": fixed_value(i, 1, w), "activation": act}
        if act == "leaky_relu":
            layer["alpha"] = 0.125
        layers.append(layer)
        prev = w
    layers[2]["skips"] = {"input": fixed_value(2, 2, 3 * n_in).reshape(3, n_in),
                          0: fixed_value(2, 3, 3 * widths[0]).reshape(3, widths[0])}
    return layers


def fingerprint(layers):
    """lf_model_fingerprint(): FNV-1a 64 over the in-memory structure (model.c)."""
    h = 14695981039346656037

    def fnv(data):
        nonlocal h
        for b in data:
            h ^= b
            h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF

    layers = linfold_format.validate_layers(layers)
    fnv(struct.pack("<q", layers[0]["weight"].shape[1]))
    fnv(struct.pack("<i", len(layers)))
    for i, L in enumerate(layers):
        fnv(struct.pack("<q", L["weight"].shape[0]))
        fnv(struct.pack("<i", ACT_CODES[L["activation"]]))
        fnv(struct.pack("<f", L["alpha"] or 0.0))
        fnv(L["bias"].astype("<f4").tobytes())
        blocks = [(-1 if src == "input" else src, w) for src, w in L["skips"].items()]
        blocks.append((i - 1, L["weight"]))
        for src, w in sorted(blocks, key=lambda b: b[0]):
            fnv(struct.pack("<i", src))
            fnv(w.astype("<f4").tobytes())
    return h


# ------------------------------------------------------------------ small writers


def h5file(path, libver=None, track_order=False):
    """A new file without object timestamps; libver="latest" for the newest format, where
    h5py's own File() and create_group() would stamp every group with the time."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    if libver == "latest":
        fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    if track_order:
        order = h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED
        fcpl.set_link_creation_order(order)
        fcpl.set_attr_creation_order(order)
    return h5py.File(h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fapl=fapl, fcpl=fcpl))


def mkgroup(parent, name, track_order=False):
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    if track_order:
        order = h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED
        gcpl.set_link_creation_order(order)
        gcpl.set_attr_creation_order(order)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


def random_layers(rng, n_in, spec, skips=None):
    """spec: [(width, activation), ...]; skips: {layer: [src, ...]}. Values in [-1, 1]."""
    layers, widths = [], {"input": n_in}
    prev = n_in
    for i, (w, act) in enumerate(spec):
        layer = {"weight": rng.uniform(-1, 1, (w, prev)).astype(np.float32),
                 "bias": rng.uniform(-0.5, 0.5, w).astype(np.float32), "activation": act}
        if act == "leaky_relu":
            layer["alpha"] = 0.0625
        layer["skips"] = {src: rng.uniform(-1, 1, (w, widths[src])).astype(np.float32)
                          for src in (skips or {}).get(i, [])}
        layers.append(layer)
        widths[i] = w
        prev = w
    return layers


def write_model_custom(path, layers, libver=None, dataset_kw=None, weight_dtype=np.float32,
                       string=str, int_attr=np.int64, alpha_type=np.float64, extra_attrs=0):
    """A model file written directly with h5py, for storage variants save_model does not make.
    extra_attrs adds that many string attributes at the root (more than 8 are stored "dense",
    in a fractal heap, in the newest format)."""
    layers = linfold_format.validate_layers(layers)
    order = libver is not None  # creation-order indexes, in the newest format only
    with h5file(path, libver, track_order=order) as f:
        f.attrs["format"] = string("linfold-mlp")
        f.attrs["format_version"] = int_attr(1)
        for k in range(extra_attrs):
            f.attrs[f"note_{k}"] = string(f"provenance note {k}")
        g = mkgroup(f, "layers", order)
        g.attrs["count"] = int_attr(len(layers))
        for i, L in enumerate(layers):
            gi = mkgroup(g, str(i), order)
            gi.attrs["activation"] = string(L["activation"])
            if L["alpha"] is not None:
                gi.attrs["alpha"] = alpha_type(L["alpha"])
            gi.create_dataset("weight", data=L["weight"].astype(weight_dtype), track_times=False,
                              **(dataset_kw or {}))
            gi.create_dataset("bias", data=L["bias"].astype(weight_dtype), track_times=False)
            if L["skips"]:
                gs = mkgroup(gi, "skip", order)
                for src, w in L["skips"].items():
                    gs.create_dataset(str(src), data=w.astype(weight_dtype), track_times=False,
                                      **(dataset_kw or {}))


def write_compact(group, name, data):
    """A dataset with compact layout (its data inside the object header)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    dcpl.set_obj_track_times(False)
    space = h5py.h5s.create_simple(data.shape)
    tid = h5py.h5t.py_create(data.dtype)
    ds = h5py.h5d.create(group.id, name.encode(), tid, space, dcpl=dcpl)
    ds.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(data))


def write_data(path, datasets, libver=None, attrs=None):
    """datasets: {path: (array, create_dataset keywords)}."""
    with h5file(path, libver) as f:
        for name, (arr, kw) in datasets.items():
            parent = os.path.dirname(name)
            if parent not in ("", "/") and parent not in f:
                mkgroup(f, parent)
            if kw == "compact":
                write_compact(f[parent or "/"], os.path.basename(name), arr)
            else:
                f.create_dataset(name, data=arr, track_times=False, **kw)
        for (obj, key), value in (attrs or {}).items():
            f[obj].attrs[key] = value


def run(cmd, cwd):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS="1")
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


# ------------------------------------------------------------------ the corpus


def make_models(out, work, linfold, rng):
    save = linfold_format.save_model
    small = random_layers(rng, 4, [(3, "relu"), (2, "identity")])
    save(os.path.join(out, "h5py-small.h5"), small)
    deep = random_layers(rng, 5, [(4, "leaky_relu"), (4, "relu"), (3, "tanh"), (3, "sigmoid"),
                                  (2, "softmax")], skips={2: ["input"], 3: ["input", 0, 1]})
    save(os.path.join(out, "h5py-skip-activations.h5"), deep)
    write_model_custom(os.path.join(out, "h5py-chunked.h5"), small,
                       dataset_kw={"chunks": (2, 2), "fillvalue": 0.0})
    # The newest format indexes chunks with other structures (single chunk, fixed array).
    write_model_custom(os.path.join(out, "h5py-deflate-latest.h5"), deep, libver="latest",
                       dataset_kw={"chunks": True, "compression": "gzip", "compression_opts": 6})
    write_model_custom(os.path.join(out, "h5py-shuffle-fletcher.h5"), small,
                       dataset_kw={"chunks": (2, 2), "compression": "gzip", "shuffle": True,
                                   "fletcher32": True})
    write_model_custom(os.path.join(out, "h5py-latest-dense-attrs.h5"), deep, libver="latest",
                       extra_attrs=10)
    write_model_custom(os.path.join(out, "h5py-fixed-strings-f64.h5"), deep,
                       weight_dtype=np.float64, string=np.bytes_, int_attr=np.int32,
                       alpha_type=np.float32)
    write_model_custom(os.path.join(out, "h5py-bigendian.h5"), small, weight_dtype=">f4",
                       int_attr=lambda v: np.array(v, dtype=">u2"))
    many = random_layers(rng, 2, [(2, "relu")] * 19 + [(1, "identity")])
    write_model_custom(os.path.join(out, "h5py-20-layers.h5"), many, libver="latest")

    # linfold's own writer: compress a model with leaky_relu and skip blocks.
    x = rng.uniform(0, 1, (64, 5)).astype(np.float32)
    write_data(os.path.join(work, "calib5.h5"), {"/x": (x, {})})
    save(os.path.join(work, "deep.h5"), deep)
    run([linfold, "compress", "--model", "deep.h5", "--data", "calib5.h5:/x", "--threshold",
         "0.9", "--no-progress", "--quiet", "--out", "linfold-compressed.h5"], work)
    shutil.copy(os.path.join(work, "linfold-compressed.h5"), out)
    relu = random_layers(rng, 5, [(6, "relu"), (6, "relu"), (2, "identity")])
    relu[0]["bias"] = np.abs(relu[0]["bias"]) + 1.0  # many linear neurons: folds into skips
    save(os.path.join(work, "relu.h5"), relu)
    run([linfold, "compress", "--model", "relu.h5", "--data", "calib5.h5:/x", "--threshold",
         "0.8", "--prune-dead", "--no-progress", "--quiet", "--out", "linfold-folded.h5"], work)
    shutil.copy(os.path.join(work, "linfold-folded.h5"), out)


def make_stats(out, work, linfold, rng):
    model = fixed_model()
    fp = fingerprint(model)
    assert fp == FIXED_FINGERPRINT, f"fixed model fingerprint {fp:016x}, expected " \
                                    f"{FIXED_FINGERPRINT:016x}: keep fuzz_fixed.h in step"
    linfold_format.save_model(os.path.join(work, "fixed.h5"), model)
    x = rng.uniform(-1, 1, (40, 4)).astype(np.float32)
    write_data(os.path.join(work, "calib4.h5"), {"/x": (x, {})})
    run([linfold, "calibrate", "--model", "fixed.h5", "--data", "calib4.h5:/x", "--no-progress",
         "--quiet", "--out", "linfold-calibrate.h5"], work)
    run([linfold, "calibrate", "--model", "fixed.h5", "--data", "calib4.h5:/x", "--output-sums",
         "--no-progress", "--quiet", "--out", "linfold-calibrate-sums.h5"], work)
    for name in ("linfold-calibrate.h5", "linfold-calibrate-sums.h5"):
        with h5py.File(os.path.join(work, name), "r") as f:
            got = f.attrs["model_fingerprint"]
            got = got.decode() if isinstance(got, bytes) else got
            assert got == f"{fp:016x}", f"linfold calibrate wrote fingerprint {got}"
        shutil.copy(os.path.join(work, name), out)

    # h5py: variable-length strings, other types and storage.
    samples = 40
    widths = [L["weight"].shape[0] for L in model]

    def write_stats(path, libver=None, string=str, count_dtype=np.int64, z_dtype=np.float32,
                    sums=False, kw=None):
        with h5file(path, libver) as f:
            f.attrs["format"] = string("linfold-stats")
            f.attrs["format_version"] = np.int64(1)
            f.attrs["samples"] = count_dtype(samples)
            f.attrs["model_fingerprint"] = string(f"{fp:016x}")
            g = mkgroup(f, "layers")
            g.attrs["count"] = np.int64(len(widths))
            for i, w in enumerate(widths):
                gi = mkgroup(g, str(i))
                pos = rng.integers(0, samples // 2, w)
                neg = rng.integers(0, samples // 2, w)
                zmin = rng.uniform(-2, 0, w)
                zmax = rng.uniform(0, 2, w)
                for name, arr, dt in (("positive", pos, count_dtype), ("negative", neg, count_dtype),
                                      ("zmin", zmin, z_dtype), ("zmax", zmax, z_dtype)):
                    gi.create_dataset(name, data=arr.astype(dt), track_times=False, **(kw or {}))
                if sums:
                    gi.create_dataset("output_sum", data=rng.uniform(0, 10, w), track_times=False,
                                      **(kw or {}))

    write_stats(os.path.join(out, "h5py-vlen.h5"))
    write_stats(os.path.join(out, "h5py-types-deflate.h5"), libver="latest",
                count_dtype=np.int32, z_dtype=np.float64, sums=True,
                kw={"chunks": True, "compression": "gzip", "shuffle": True})
    write_stats(os.path.join(out, "h5py-latest-fixed-strings.h5"), libver="latest",
                string=np.bytes_, sums=True)


def make_data(out, rng):
    def xy(n, d):
        return rng.uniform(0, 1, (n, d)).astype(np.float32), rng.integers(0, 10, n)

    x, y = xy(20, 4)
    write_data(os.path.join(out, "f32-i64.h5"), {"/x": (x, {}), "/y": (y.astype(np.int64), {})})
    x, y = xy(24, 3)
    write_data(os.path.join(out, "f64-i32.h5"),
               {"/x": (x.astype(np.float64), {}), "/y": (y.astype(np.int32), {})})
    x, y = xy(30, 5)
    write_data(os.path.join(out, "chunked-deflate.h5"),
               {"/x": (x, {"chunks": (8, 5), "compression": "gzip", "shuffle": True}),
                "/y": (y.astype(np.int16), {"chunks": (7,), "compression": "gzip",
                                            "fletcher32": True})})
    x, y = xy(12, 4)
    write_data(os.path.join(out, "bigendian-compact.h5"),
               {"/x": (x.astype(">f4"), "compact"), "/y": (y.astype(">i8"), "compact")})
    x, y = xy(16, 6)
    tx, ty = xy(10, 6)
    write_data(os.path.join(out, "several-latest.h5"),
               {"/x": (x, {}), "/y": (y.astype(np.uint8), {}), "/train/x": (tx, {}),
                "/train/y": (ty.astype(np.int64), {}), "/val/x": (x[:4].astype(np.float64), {})},
               libver="latest",
               attrs={("/", "description"): "several datasets", ("/x", "units"): "pixels",
                      ("/train", "rows"): np.int64(10)})
    # Only the chunks that hold data are allocated: the rest read as the fill value.
    with h5file(os.path.join(out, "sparse-chunks.h5")) as f:
        ds = f.create_dataset("x", shape=(32, 4), dtype=np.float32, chunks=(8, 4),
                              fillvalue=0.5, track_times=False)
        ds[8:16] = rng.uniform(0, 1, (8, 4)).astype(np.float32)
        f.create_dataset("y", data=rng.integers(0, 3, 32).astype(np.int64), track_times=False)
    write_data(os.path.join(out, "empty.h5"),
               {"/x": (np.zeros((0, 4), np.float32), {}), "/y": (np.zeros(0, np.int64), {})})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--linfold", required=True, help="the linfold binary (for its writers)")
    ap.add_argument("--out", default=os.path.join(HERE, "corpus"), help="corpus root")
    args = ap.parse_args()
    linfold = os.path.abspath(args.linfold)
    rng = np.random.default_rng(20240607)
    with tempfile.TemporaryDirectory() as work:
        for kind, make in (("model", lambda o: make_models(o, work, linfold, rng)),
                           ("stats", lambda o: make_stats(o, work, linfold, rng)),
                           ("data", lambda o: make_data(o, rng))):
            out = os.path.join(args.out, kind)
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            make(out)
    total = 0
    for kind in ("model", "stats", "data"):
        d = os.path.join(args.out, kind)
        for name in sorted(os.listdir(d)):
            size = os.path.getsize(os.path.join(d, name))
            total += size
            print(f"{kind}/{name}: {size} bytes")
    print(f"total: {total} bytes")


if __name__ == "__main__":
    main()
