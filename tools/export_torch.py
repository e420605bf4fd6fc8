#!/usr/bin/python3
"""Export a pickled PyTorch nn.Sequential MLP to a linfold model file (format v1).

Usage: tools/export_torch.py MODULE.pt OUT.h5

The script is executable and runs with Debian's /usr/bin/python3 (python3-torch, python3-h5py)
through its shebang; a python3 earlier on PATH need not have torch.

MODULE.pt must hold a whole module saved with torch.save(seq, path), not a state_dict:
a state_dict lacks the activations. The module is exported as it computes in eval mode.
The nn.Sequential (nested ones are flattened) may contain nn.Linear, each followed by at most
one of ReLU, LeakyReLU, Sigmoid, Tanh or Softmax(dim=-1); a Linear followed directly by
another Linear gets the `identity` activation. nn.Identity, nn.Dropout and an nn.Flatten
that keeps the batch axis are no-ops on (batch, features) rows and are dropped; an
nn.Flatten() that comes first turns image samples (C, H, W) or (H, W) into rows, and the
exported model then takes that row (torch's C-order flattening).
nn.BatchNorm1d with running statistics is folded exactly (float64, rounded once to float32)
into the nn.Linear right before it (before that Linear's activation) or else right after it;
one with track_running_stats=False or with no such Linear is refused.

The output is written atomically. Exit status: 0 on success, 2 on a usage error, 1 on any
other error.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import linfold_format as lf  # noqa: E402


def main(argv):
    if len(argv) != 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stdout if len(argv) == 2 else sys.stderr)
        return 0 if len(argv) == 2 and argv[1] in ("-h", "--help") else 2
    src, out = argv[1], argv[2]
    import torch

    try:
        # torch >= 2.6 defaults to weights_only=True, which cannot load a whole module.
        try:
            module = torch.load(src, map_location="cpu", weights_only=False)
        except TypeError:  # torch < 1.13 has no weights_only
            module = torch.load(src, map_location="cpu")
    except Exception as exc:
        print(f"export_torch: {src}: cannot load ({exc})", file=sys.stderr)
        return 1
    if isinstance(module, dict):
        print(f"export_torch: {src}: holds a state_dict, not a module; save the module itself "
              f"with torch.save(seq, path)", file=sys.stderr)
        return 1
    try:
        layers = lf.from_torch_sequential(module)
        lf.save_model(out, layers)
    except ValueError as exc:
        print(f"export_torch: {src}: {exc}", file=sys.stderr)
        return 1
    params = sum(l["weight"].size + l["bias"].size for l in layers)
    acts = ", ".join(l["activation"] for l in layers)
    print(f"{out}: {len(layers)} layers ({acts}), {params} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
