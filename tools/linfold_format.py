"""Reader/writer and reference forward pass for the linfold MLP file format v1.

File layout (HDF5):

    /                      attrs: format = "linfold-mlp", format_version = 1 (int64)
    /layers                attrs: count = L (int64)
    /layers/<i>            i = 0..L-1, plain decimal
        weight             float32 [out_i, in_i]   (PyTorch convention)
        bias               float32 [out_i]
        attrs: activation  one of ACTIVATIONS; leaky_relu also has float attr alpha
        skip/<src>         optional, float32 [out_i, width(src)],
                           src = "input" or decimal j < i-1

Forward: a_input = x; z_i = W_i a_{i-1} + sum_src S_{i,src} a_src + b_i;
a_i = act_i(z_i); output = a_{L-1}.

In memory a model is a list of layer dicts:

    {"weight": ndarray float32 [out, in], "bias": ndarray float32 [out],
     "activation": str, "alpha": float | None,
     "skips": {src: ndarray float32 [out, width(src)]}}   # src is "input" or int

torch is imported lazily, so the numpy parts work without it.
"""

import math
import os
import tempfile

import numpy as np

FORMAT_NAME = "linfold-mlp"
FORMAT_VERSION = 1
ACTIVATIONS = ("relu", "leaky_relu", "identity", "sigmoid", "tanh", "softmax")

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "ACTIVATIONS",
    "validate_layers", "save_model", "load_model",
    "forward", "forward_trace", "from_torch_sequential", "to_torch_module",
]


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------

def _as_f32_array(value, what, ndim):
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{what}: cannot convert to an array ({exc})") from None
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{what}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{what}: expected {ndim}-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what}: array is empty (shape {arr.shape})")
    arr32 = np.array(arr, dtype=np.float32, order="C", copy=True)
    if not np.all(np.isfinite(arr32)):
        raise ValueError(f"{what}: contains NaN or Inf (or overflows float32)")
    return arr32


def _norm_src(src, i, what):
    """Normalise a skip source key to "input" or an int j with 0 <= j < i-1."""
    if isinstance(src, str):
        if src == "input":
            return "input"
        if src.isdigit() and (src == "0" or not src.startswith("0")):
            src = int(src)
        else:
            raise ValueError(f"{what}: skip source {src!r} must be 'input' or a "
                             f"plain decimal layer index")
    if isinstance(src, (bool, np.bool_)) or not isinstance(src, (int, np.integer)):
        raise ValueError(f"{what}: skip source {src!r} must be 'input' or an int")
    src = int(src)
    if not 0 <= src < i - 1:
        raise ValueError(f"{what}: skip source layer {src} must satisfy 0 <= j < {i - 1} "
                         f"(j = i-1 is the regular weight, later layers are not "
                         f"available yet)")
    return src


def validate_layers(layers):
    """Check a list of layer dicts and return a normalised deep copy.

    Arrays are converted to contiguous float32, skip keys to "input"/int,
    alpha to float (leaky_relu) or None. Raises ValueError on any problem.
    """
    if isinstance(layers, dict) or not hasattr(layers, "__len__"):
        raise ValueError("layers must be a list of layer dicts")
    layers = list(layers)
    if len(layers) == 0:
        raise ValueError("model must have at least one layer")
    out = []
    widths = {}  # "input" / int -> width
    for i, layer in enumerate(layers):
        what = f"layer {i}"
        if not isinstance(layer, dict):
            raise ValueError(f"{what}: expected a dict, got {type(layer).__name__}")
        unknown = set(layer) - {"weight", "bias", "activation", "alpha", "skips"}
        if unknown:
            raise ValueError(f"{what}: unknown keys {sorted(unknown)}")
        for key in ("weight", "bias", "activation"):
            if key not in layer:
                raise ValueError(f"{what}: missing required key {key!r}")
        w = _as_f32_array(layer["weight"], f"{what} weight", 2)
        n_out, n_in = w.shape
        if i == 0:
            widths["input"] = n_in
        elif n_in != widths[i - 1]:
            raise ValueError(f"{what}: weight has {n_in} input columns but layer {i - 1} "
                             f"has {widths[i - 1]} outputs")
        b = _as_f32_array(layer["bias"], f"{what} bias", 1)
        if b.shape != (n_out,):
            raise ValueError(f"{what}: bias shape {b.shape} does not match weight rows "
                             f"({n_out},)")
        act = layer["activation"]
        if isinstance(act, bytes):
            act = act.decode("utf-8")
        if not isinstance(act, str) or act not in ACTIVATIONS:
            raise ValueError(f"{what}: activation {act!r} not one of {list(ACTIVATIONS)}")
        alpha = layer.get("alpha")
        if act == "leaky_relu":
            if alpha is None:
                raise ValueError(f"{what}: leaky_relu requires a float 'alpha'")
            try:
                alpha = float(alpha)
            except (TypeError, ValueError):
                raise ValueError(f"{what}: alpha {alpha!r} is not a number") from None
            if not math.isfinite(alpha):
                raise ValueError(f"{what}: alpha must be finite, got {alpha}")
        elif alpha is not None:
            raise ValueError(f"{what}: alpha is only allowed with leaky_relu "
                             f"(activation is {act!r})")
        skips_in = layer.get("skips") or {}
        if not isinstance(skips_in, dict):
            raise ValueError(f"{what}: skips must be a dict, got {type(skips_in).__name__}")
        skips = {}
        for src, mat in skips_in.items():
            key = _norm_src(src, i, what)
            if key in skips:
                raise ValueError(f"{what}: duplicate skip source {key!r}")
            m = _as_f32_array(mat, f"{what} skip[{key!r}]", 2)
            want = (n_out, widths[key])
            if m.shape != want:
                raise ValueError(f"{what}: skip[{key!r}] shape {m.shape}, expected {want}")
            skips[key] = m
        widths[i] = n_out
        out.append({"weight": w, "bias": b, "activation": act,
                    "alpha": alpha if act == "leaky_relu" else None,
                    "skips": dict(sorted(skips.items(), key=lambda kv: _src_sort_key(kv[0])))})
    return out


def _src_sort_key(src):
    return (-1, "") if src == "input" else (int(src), "")


# --------------------------------------------------------------------------
# HDF5 I/O
# --------------------------------------------------------------------------

def _atomic_h5_write(path, writer):
    """Call writer(h5file) on a temp file next to path, then os.replace it."""
    import h5py

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"output directory does not exist: {directory}")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            writer(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_model(path, layers):
    """Validate layers and write them atomically to path in format v1."""
    layers = validate_layers(layers)

    def writer(f):
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
        g_layers = f.create_group("layers")
        g_layers.attrs["count"] = np.int64(len(layers))
        for i, layer in enumerate(layers):
            g = g_layers.create_group(str(i))
            g.create_dataset("weight", data=layer["weight"], dtype=np.float32,
                             track_times=False)
            g.create_dataset("bias", data=layer["bias"], dtype=np.float32,
                             track_times=False)
            g.attrs["activation"] = layer["activation"]
            if layer["activation"] == "leaky_relu":
                g.attrs["alpha"] = np.float64(layer["alpha"])
            if layer["skips"]:
                gs = g.create_group("skip")
                for src, mat in layer["skips"].items():
                    gs.create_dataset(str(src), data=mat, dtype=np.float32,
                                      track_times=False)

    _atomic_h5_write(path, writer)


def _str_attr(attrs, name, what):
    if name not in attrs:
        raise ValueError(f"{what}: missing attribute {name!r}")
    v = attrs[name]
    if isinstance(v, np.ndarray) and v.shape in ((), (1,)):
        v = v.reshape(-1)[0]
    if isinstance(v, (bytes, np.bytes_)):
        v = bytes(v).decode("utf-8")
    if not isinstance(v, str):
        raise ValueError(f"{what}: attribute {name!r} must be a string, got {v!r}")
    return v


def _int_attr(attrs, name, what):
    if name not in attrs:
        raise ValueError(f"{what}: missing attribute {name!r}")
    v = attrs[name]
    if isinstance(v, np.ndarray) and v.shape in ((), (1,)):
        v = v.reshape(-1)[0]
    if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{what}: attribute {name!r} must be an integer, got {v!r}")
    return int(v)


def _read_f32(group, name, what):
    import h5py

    if name not in group or not isinstance(group[name], h5py.Dataset):
        raise ValueError(f"{what}: missing dataset {name!r}")
    ds = group[name]
    if ds.dtype != np.float32:
        raise ValueError(f"{what}: dataset {name!r} has dtype {ds.dtype}, expected float32")
    return np.asarray(ds[()], dtype=np.float32)


def load_model(path):
    """Read a format-v1 file and return a validated list of layer dicts."""
    import h5py

    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: cannot open as HDF5 ({exc})") from None
    with f:
        fmt = _str_attr(f.attrs, "format", path)
        if fmt != FORMAT_NAME:
            raise ValueError(f"{path}: format is {fmt!r}, expected {FORMAT_NAME!r}")
        ver = _int_attr(f.attrs, "format_version", path)
        if ver != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported format_version {ver} "
                             f"(this reader handles {FORMAT_VERSION})")
        if "layers" not in f or not isinstance(f["layers"], h5py.Group):
            raise ValueError(f"{path}: missing group /layers")
        g_layers = f["layers"]
        count = _int_attr(g_layers.attrs, "count", f"{path}:/layers")
        if count < 1:
            raise ValueError(f"{path}: /layers count must be >= 1, got {count}")
        expected = {str(i) for i in range(count)}
        present = set(g_layers.keys())
        if present != expected:
            raise ValueError(f"{path}: /layers has members {sorted(present)}, expected "
                             f"exactly 0..{count - 1}")
        layers = []
        for i in range(count):
            what = f"{path}:/layers/{i}"
            g = g_layers[str(i)]
            if not isinstance(g, h5py.Group):
                raise ValueError(f"{what}: not a group")
            layer = {
                "weight": _read_f32(g, "weight", what),
                "bias": _read_f32(g, "bias", what),
                "activation": _str_attr(g.attrs, "activation", what),
                "alpha": None,
                "skips": {},
            }
            if layer["activation"] == "leaky_relu":
                if "alpha" not in g.attrs:
                    raise ValueError(f"{what}: leaky_relu without 'alpha' attribute")
                a = np.asarray(g.attrs["alpha"]).reshape(-1)
                if a.size != 1 or a.dtype.kind not in "fiu":
                    raise ValueError(f"{what}: alpha must be a scalar number")
                layer["alpha"] = float(a[0])
            if "skip" in g:
                gs = g["skip"]
                if not isinstance(gs, h5py.Group):
                    raise ValueError(f"{what}: 'skip' is not a group")
                for src in gs.keys():
                    layer["skips"][_norm_src(src, i, what)] = _read_f32(gs, src, what + "/skip")
            layers.append(layer)
    try:
        return validate_layers(layers)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------
# reference forward pass (numpy, float64)
# --------------------------------------------------------------------------

def _apply_act(z, act, alpha):
    if act == "relu":
        return np.maximum(z, 0.0)
    if act == "leaky_relu":
        return np.where(z > 0, z, alpha * z)
    if act == "identity":
        return z
    if act == "sigmoid":
        # numerically stable logistic
        out = np.empty_like(z)
        pos = z >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
        ez = np.exp(z[~pos])
        out[~pos] = ez / (1.0 + ez)
        return out
    if act == "tanh":
        return np.tanh(z)
    if act == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(f"unknown activation {act!r}")


def forward_trace(layers, x, validate=True):
    """Return (pre_activations, activations): lists of float64 [n, out_i] arrays.

    x is [n, d] or [d]; a 1-D x gives 1-D entries.
    """
    if validate:
        layers = validate_layers(layers)
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"x: expected a real numeric array, got dtype {x.dtype}")
    squeeze = x.ndim == 1
    if squeeze:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"x: expected shape [n, d] or [d], got {x.shape}")
    d = layers[0]["weight"].shape[1]
    if x.shape[1] != d:
        raise ValueError(f"x: has {x.shape[1]} features, model expects {d}")
    acts = {"input": x.astype(np.float64)}
    zs, outs = [], []
    prev = acts["input"]
    for i, layer in enumerate(layers):
        z = prev @ layer["weight"].astype(np.float64).T
        for src, m in layer["skips"].items():
            z += acts[src] @ m.astype(np.float64).T
        z += layer["bias"].astype(np.float64)
        a = _apply_act(z, layer["activation"], layer["alpha"])
        acts[i] = a
        prev = a
        zs.append(z[0] if squeeze else z)
        outs.append(a[0] if squeeze else a)
    return zs, outs


def forward(layers, x, validate=True):
    """Model output (float64) for x of shape [n, d] (or [d])."""
    return forward_trace(layers, x, validate=validate)[1][-1]


# --------------------------------------------------------------------------
# torch interop
# --------------------------------------------------------------------------

def _torch_act_name(module):
    import torch.nn as nn

    if isinstance(module, nn.ReLU):
        return "relu", None
    if isinstance(module, nn.LeakyReLU):
        return "leaky_relu", float(module.negative_slope)
    if isinstance(module, nn.Sigmoid):
        return "sigmoid", None
    if isinstance(module, nn.Tanh):
        return "tanh", None
    if isinstance(module, nn.Softmax):
        if module.dim not in (-1, 1):
            raise ValueError(f"nn.Softmax(dim={module.dim}) not supported; the format "
                             f"applies softmax over the feature axis (dim=-1 or 1)")
        return "softmax", None
    return None


def _torch_modules(seq, prefix=""):
    """Yield (label, module) for the modules of seq in order, nested nn.Sequential flattened.

    label is the index path used in error messages: "3", or "3.1" inside a nested Sequential.
    """
    import torch.nn as nn

    for idx, mod in enumerate(seq):
        label = f"{prefix}{idx}"
        if isinstance(mod, nn.Sequential):
            yield from _torch_modules(mod, label + ".")
        else:
            yield label, mod


def _f64(tensor):
    return tensor.detach().cpu().double().numpy().copy()


def _torch_batchnorm(mod, label):
    """Eval-mode nn.BatchNorm1d as float64 (s, mu, beta): BN(x) = s * (x - mu) + beta,
    s = gamma / sqrt(running_var + eps); gamma = 1 and beta = 0 when affine=False."""
    n = int(mod.num_features)
    what = f"module {label} (BatchNorm1d({n}))"
    if not mod.track_running_stats or mod.running_mean is None or mod.running_var is None:
        raise ValueError(f"{what} has track_running_stats=False: without running statistics "
                         f"it normalises with each batch's own mean and variance even in eval "
                         f"mode, so it is not a fixed affine map and cannot be folded")
    mu, var = _f64(mod.running_mean), _f64(mod.running_var)
    if mod.affine:
        gamma, beta = _f64(mod.weight), _f64(mod.bias)
    else:
        gamma, beta = np.ones(n), np.zeros(n)
    for name, arr in (("running_mean", mu), ("running_var", var), ("weight", gamma),
                      ("bias", beta)):
        if arr.shape != (n,):
            raise ValueError(f"{what}: {name} has shape {arr.shape}, expected ({n},)")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what}: {name} contains NaN or Inf")
    den = var + float(mod.eps)
    if not np.all(den > 0):
        j = int(np.argmax(~(den > 0)))
        raise ValueError(f"{what}: running_var + eps = {den[j]:g} is not positive "
                         f"(feature {j})")
    return gamma / np.sqrt(den), mu, beta


def from_torch_sequential(seq):
    """Convert an nn.Sequential MLP to layer dicts, reading it as in eval mode.

    Each nn.Linear may be followed by at most one of ReLU, LeakyReLU, Sigmoid, Tanh,
    Softmax(dim=-1|1); a Linear with nothing after it gets 'identity'. A Linear without bias
    gets a zero bias. Nested nn.Sequential modules are flattened. No-ops, skipped anywhere:
    nn.Identity, nn.Dropout (any p; the identity in eval mode) and nn.Flatten where it keeps
    the batch axis of (batch, features) rows. nn.Flatten() (start_dim=1, end_dim=-1) may also
    come first, before any nn.Linear or nn.BatchNorm1d: the model then takes each (C, H, W) or
    (H, W) sample as one row, flattened in C order exactly as torch does.

    nn.BatchNorm1d with running statistics is the affine map s * (x - mu) + beta with
    s = gamma / sqrt(running_var + eps) (gamma = 1, beta = 0 when affine=False). It is folded
    into an adjacent nn.Linear (W, b), in float64 and rounded once to float32:
      - right after a Linear, before its activation (or at the end): W' = diag(s) W,
        b' = s * (b - mu) + beta;
      - otherwise (at the input, or after an activation) into the next Linear:
        W' = W diag(s), b' = b + W (beta - s * mu).
    Consecutive batch norms compose. A BatchNorm1d without running statistics
    (track_running_stats=False), or with no Linear to fold into, raises ValueError.
    """
    import torch.nn as nn

    if not isinstance(seq, nn.Sequential):
        raise ValueError(f"expected torch.nn.Sequential, got {type(seq).__name__}")
    layers = []
    pending = None  # float64 layer dict of the last Linear, waiting for its activation
    pre = None      # batch norm(s) waiting for the next Linear: x -> s * x + t (float64)
    rows = False    # the data is known to be (batch, features): after a Linear or a Flatten
    after = "it is at the input"  # why a batch norm here cannot fold into a previous Linear
    for label, mod in _torch_modules(seq):
        name = type(mod).__name__
        if isinstance(mod, (nn.Identity, nn.Dropout)):
            continue
        if isinstance(mod, nn.Flatten):
            dims = (mod.start_dim, mod.end_dim)
            what = f"module {label} (Flatten(start_dim={dims[0]}, end_dim={dims[1]}))"
            if rows:
                if dims[0] in (1, -1) and dims[1] in (1, -1):
                    continue
                raise ValueError(f"{what} would flatten the batch axis of the (batch, "
                                 f"features) rows; only a Flatten that keeps it (a no-op) "
                                 f"is allowed after the input")
            if pre is not None:
                raise ValueError(f"{what} follows BatchNorm1d module {pre['label']}, which "
                                 f"may then see (N, C, L) input normalised per channel; put "
                                 f"nn.Flatten first")
            if dims != (1, -1):
                raise ValueError(f"{what} at the input must be nn.Flatten(start_dim=1, "
                                 f"end_dim=-1), which turns each sample into one row")
            rows = True
            continue
        if isinstance(mod, nn.Linear):
            if pending is not None:
                layers.append(pending)
            w = _f64(mod.weight)
            b = _f64(mod.bias) if mod.bias is not None else np.zeros(w.shape[0])
            if pre is not None:
                if pre["n"] != w.shape[1]:
                    raise ValueError(f"module {label} (Linear) has {w.shape[1]} inputs but "
                                     f"BatchNorm1d module {pre['label']} before it has "
                                     f"{pre['n']} features")
                b = b + w @ pre["t"]
                w = w * pre["s"][None, :]
                pre = None
            pending = {"weight": w, "bias": b, "activation": None, "alpha": None,
                       "skips": {}, "label": label}
            rows = True
            continue
        if isinstance(mod, nn.BatchNorm1d):
            s, mu, beta = _torch_batchnorm(mod, label)
            if pending is not None and pending["activation"] is None:
                if s.size != pending["weight"].shape[0]:
                    raise ValueError(f"module {label} (BatchNorm1d({s.size})) has {s.size} "
                                     f"features but follows module {pending['label']} "
                                     f"(Linear) with {pending['weight'].shape[0]} outputs")
                pending["weight"] = s[:, None] * pending["weight"]
                pending["bias"] = s * (pending["bias"] - mu) + beta
            elif pre is None:
                pre = {"s": s, "t": beta - s * mu, "n": s.size, "label": label,
                       "after": after}
            else:
                if s.size != pre["n"]:
                    raise ValueError(f"module {label} (BatchNorm1d({s.size})) has {s.size} "
                                     f"features but follows BatchNorm1d module "
                                     f"{pre['label']} with {pre['n']}")
                pre["t"] = s * (pre["t"] - mu) + beta
                pre["s"] = s * pre["s"]
            continue
        act = _torch_act_name(mod)
        if act is None:
            raise ValueError(f"module {label} ({name}) is not supported; only nn.Linear, "
                             f"BatchNorm1d, ReLU/LeakyReLU/Sigmoid/Tanh/Softmax and the "
                             f"no-ops Identity/Dropout/Flatten are allowed")
        if pre is not None:
            raise ValueError(f"module {label} ({name}) follows BatchNorm1d module "
                             f"{pre['label']}, which cannot be folded: {pre['after']}, and "
                             f"an activation, not an nn.Linear, comes after it")
        if pending is None:
            raise ValueError(f"module {label} ({name}) is not preceded by an nn.Linear")
        if pending["activation"] is not None:
            raise ValueError(f"module {label} ({name}): two activations in a row after one "
                             f"nn.Linear")
        pending["activation"], pending["alpha"] = act
        after = f"it comes after the activation module {label} ({name})"
    if pre is not None:
        raise ValueError(f"module {pre['label']} (BatchNorm1d({pre['n']})) cannot be folded: "
                         f"{pre['after']}, and no nn.Linear comes after it")
    if pending is None:
        raise ValueError("nn.Sequential contains no nn.Linear")
    layers.append(pending)
    for layer in layers:
        del layer["label"]
        if layer["activation"] is None:
            layer["activation"] = "identity"
        # the one rounding of the (folded) float64 parameters
        layer["weight"] = layer["weight"].astype(np.float32)
        layer["bias"] = layer["bias"].astype(np.float32)
    return validate_layers(layers)


def to_torch_module(layers, dtype=None):
    """Return a torch.nn.Module (eval mode) computing forward(layers, x).

    dtype defaults to torch.float32; pass torch.float64 for a tighter check.
    """
    import torch
    import torch.nn as nn

    layers = validate_layers(layers)
    if dtype is None:
        dtype = torch.float32

    class LinfoldMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.linears = nn.ModuleList()
            self.skips = nn.ModuleDict()
            self.acts = []
            self.skip_srcs = []
            for i, layer in enumerate(layers):
                n_out, n_in = layer["weight"].shape
                lin = nn.Linear(n_in, n_out, bias=True)
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(layer["weight"]))
                    lin.bias.copy_(torch.from_numpy(layer["bias"]))
                self.linears.append(lin)
                srcs = []
                for src, m in layer["skips"].items():
                    sl = nn.Linear(m.shape[1], m.shape[0], bias=False)
                    with torch.no_grad():
                        sl.weight.copy_(torch.from_numpy(m))
                    self.skips[f"l{i}_from_{src}"] = sl
                    srcs.append(src)
                self.skip_srcs.append(srcs)
                self.acts.append((layer["activation"], layer["alpha"]))

        def forward(self, x):
            cache = {"input": x}
            a = x
            for i, lin in enumerate(self.linears):
                z = lin(a)
                for src in self.skip_srcs[i]:
                    z = z + self.skips[f"l{i}_from_{src}"](cache[src])
                act, alpha = self.acts[i]
                if act == "relu":
                    a = torch.relu(z)
                elif act == "leaky_relu":
                    a = torch.nn.functional.leaky_relu(z, alpha)
                elif act == "identity":
                    a = z
                elif act == "sigmoid":
                    a = torch.sigmoid(z)
                elif act == "tanh":
                    a = torch.tanh(z)
                else:  # softmax
                    a = torch.softmax(z, dim=-1)
                cache[i] = a
            return a

    return LinfoldMLP().to(dtype=dtype).eval()
