"""Interop with the reference implementation: Python's safetensors package must load what we
write, and we must load what it writes. Usage: safetensors_interop.py PEER_EXE TMPDIR"""
import os
import subprocess
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def check(cond, what):  # not `assert`: Python drops those under -O / PYTHONOPTIMIZE
    if not cond:
        print("FAIL:", what, file=sys.stderr)
        sys.exit(1)

peer, tmp = sys.argv[1], sys.argv[2]
os.makedirs(tmp, exist_ok=True)
ours = os.path.join(tmp, "ours.safetensors")
subprocess.run([peer, "write", ours], check=True)
with safe_open(ours, framework="numpy") as f:
    check(f.metadata() == {"step": "42"}, f.metadata())
    w, b = f.get_tensor("layer.weight"), f.get_tensor("layer.bias")
expected = np.array([0, 1.5, -2, 3.25, 1e-3, -7])
check(w.dtype == np.float32 and w.shape == (2, 3), (w.dtype, w.shape))
check(np.array_equal(w.ravel(), expected.astype(np.float32)), w)
check(b.dtype == np.float64 and np.array_equal(b, expected[:3]), b)

theirs = os.path.join(tmp, "theirs.safetensors")
save_file({"x": (np.arange(12, dtype=np.float32).reshape(3, 4) / 4).astype(np.float32),
           "y": np.array([-1, 0.5], dtype=np.float64)}, theirs, metadata={"origin": "python"})
subprocess.run([peer, "read", theirs], check=True)
print("1 passed, 0 failed")
