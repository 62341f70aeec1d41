"""banis-export: a banis-train checkpoint as a PyTorch state_dict.

Always (numpy + safetensors): every network tensor of the checkpoint is in the export under its
PyTorch name (Linear weights transposed to (out, in), convolution weights one level down in
`.conv`), values unchanged, nothing else in it; a checkpoint that is not banis-train's and a
truncated one are refused by name with exit 1.
With PyTorch installed: bench/banis_step_torch.py's BanisNets takes the state_dict with
load_state_dict(strict=True), and its six networks in eval mode give this library's outputs
(written by --example) to float32 rounding: that part is the test `export-torch` (--torch),
which exits 77 (meson's SKIP) without PyTorch. Checks are `check` calls, not `assert`
statements (Python drops those under -O / PYTHONOPTIMIZE).

Usage: test_export.py BANIS_TRAIN BANIS_EXPORT SOURCE_DIR WORK_DIR [--torch]
"""
import os
import shutil
import subprocess
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

train, export, src, work = sys.argv[1:5]
torch_part = "--torch" in sys.argv[5:]
if torch_part:
    try:
        import torch
    except ImportError:
        print("PyTorch not installed: the load_state_dict check is skipped (pip install torch)")
        sys.exit(77)
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
passed = 0


def ok(msg):
    global passed
    passed += 1
    print("ok:", msg)


def check(cond, what):
    if not cond:
        print("FAIL:", what, file=sys.stderr)
        sys.exit(1)


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True)


r = run(train, "--preset", "tiny", "--max-steps", "4", "--seed", "3", "--out", f"{work}/run")
check(r.returncode == 0, r.stderr)
ckpt = f"{work}/run/checkpoint_latest.safetensors"
r = run(export, "--ckpt", ckpt, "--out", f"{work}/torch.safetensors", "--example", f"{work}/ex.safetensors")
check(r.returncode == 0, r.stderr)
ours, exported = load_file(ckpt), load_file(f"{work}/torch.safetensors")

# The expected PyTorch name and value of each network tensor, from the checkpoint alone.
weights = {k: v for k, v in ours.items() if k.split(".")[0] in
           ("gen_a", "gen_b", "disc_a", "disc_b", "enc_a", "enc_b")}
conv_layers = {k.rsplit(".", 1)[0] for k, v in weights.items() if k.endswith(".weight") and v.ndim == 4}
expected = {}
for k, v in weights.items():
    layer, param = k.rsplit(".", 1)
    if layer in conv_layers:
        expected[f"{layer}.conv.{param}"] = v
    elif v.ndim == 2:
        expected[k] = v.T  # Linear (in, out) -> (out, in)
    else:
        expected[k] = v  # batch norm
check(len(weights) > 60, f"only {len(weights)} network tensors in {ckpt}")
check(set(exported) == set(expected), (sorted(set(exported) ^ set(expected))))
for k, v in expected.items():
    check(exported[k].shape == v.shape, (k, exported[k].shape, v.shape))
    check(np.array_equal(exported[k], v), k)
ok(f"{len(expected)} tensors under PyTorch names, Linear weights transposed, values unchanged")
meta = safe_open(f"{work}/torch.safetensors", "np").metadata()
cfg = safe_open(ckpt, "np").metadata()
check(meta["format"] == "pt" and float(meta["banis.width"]) == float(cfg["config.width"])
      and meta["banis.latent"] == cfg["config.latent"]
      and meta["banis.g_bn_sets"] == cfg["config.g_bn_sets"] == "2", meta)
ok("metadata: format pt, the model's width, latent size and G's batch-norm statistics sets (2)")

# Refusals: a safetensors file that is not a banis-train checkpoint; a truncated checkpoint.
np_only = f"{work}/other.safetensors"
from safetensors.numpy import save_file  # noqa: E402
save_file({"w": np.zeros((2, 2), np.float32)}, np_only)
r = run(export, "--ckpt", np_only, "--out", f"{work}/x.safetensors")
check(r.returncode == 1 and "not a banis-train checkpoint" in r.stderr and np_only in r.stderr, r.stderr)
with open(ckpt, "rb") as f:
    data = f.read()
with open(f"{work}/cut.safetensors", "wb") as f:
    f.write(data[: len(data) // 2])
r = run(export, "--ckpt", f"{work}/cut.safetensors", "--out", f"{work}/x.safetensors")
check(r.returncode == 1 and "cut.safetensors" in r.stderr, r.stderr)
check(not os.path.exists(f"{work}/x.safetensors"), 'not os.path.exists(f"{work}/x.safetensors")')
ok("a foreign and a truncated checkpoint refused by name, nothing written")

if not torch_part:
    print(f"{passed} passed (the PyTorch half is the test export-torch)")
    sys.exit(0)

sys.path.insert(0, os.path.join(src, "bench"))
from banis_step_torch import BanisNets  # noqa: E402
from safetensors.torch import load_file as load_torch  # noqa: E402

nets = BanisNets(float(meta["banis.width"]), int(meta["banis.latent"]), int(meta["banis.g_bn_sets"]))
result = nets.load_state_dict(load_torch(f"{work}/torch.safetensors"), strict=True)
check(not result.missing_keys and not result.unexpected_keys, result)
nets.eval()
ex = load_torch(f"{work}/ex.safetensors")
with torch.no_grad():
    for name, inp in [("gen_a", "input.z"), ("gen_b", "input.z"), ("disc_a", "input.x"),
                      ("disc_b", "input.x"), ("enc_a", "input.x"), ("enc_b", "input.x")]:
        y = getattr(nets, name)(ex[inp])
        check(y.shape == ex[name].shape, (name, y.shape, ex[name].shape))
        err = (y - ex[name]).abs().max().item()
        scale = ex[name].abs().max().item()
        check(scale > 0 and err <= 1e-5 * max(scale, 1.0) + 1e-6, (name, err, scale))
    # the Successors: G on its second set of batch-norm statistics (for encoder codes)
    check(nets.g_bn_sets == 2, 'nets.g_bn_sets == 2')
    for x, name in enumerate(["successor_a", "successor_b"]):
        y = nets.successor(x, ex["input.x"])
        err = (y - ex[name]).abs().max().item()
        check(err <= 1e-5, (name, err))
        other = getattr(nets, ["gen_a", "gen_b"][x])(getattr(nets, ["enc_a", "enc_b"][x])(ex["input.x"]))
        check((other - ex[name]).abs().max().item() > 1e-3, f"{name}: the two statistics sets are alike")
ok(f"PyTorch {torch.__version__}: load_state_dict(strict=True), all six networks and both Successors "
   "give our outputs")
print(f"{passed} passed")
