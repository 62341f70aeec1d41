"""The ops of tools/kernel-bench, one by one at BANIS's shapes, through PyTorch eager on the same
device: the same names, passes and amounts, so bench/compare.sh can print the ratios. On CUDA:
cuDNN with TF32 and benchmark mode; on the CPU: PyTorch's own threads (set OMP_NUM_THREADS).

Usage: python3 bench/ops_torch.py [--device cpu|cuda] [--batch N] [--width F] [--reps N]
"""
import argparse
import time

import torch
import torch.nn.functional as F


def ch(width, n):
    return max(1, round(n * width))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    n, w = a.batch, a.width
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"PyTorch {torch.__version__} ops on {name}: batch {n}, width {w:g}, float32, {a.reps} timed reps")
    print(f"{'op':28s} {'pass':8s} {'ms':>10s} {'rate':>10s}")

    def timed(fn):
        t = 0.0
        for k in range(a.reps + 1):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            if k:
                t += time.perf_counter() - t0
        return t / a.reps

    def report(op, pas, sec, amount, bytes_):
        unit = "GB/s" if bytes_ else "GFLOP/s"
        print(f"{op:28s} {pas:8s} {1e3 * sec:10.3f} {amount / sec / 1e9:10.1f} {unit}", flush=True)

    shapes = [  # name, in channels, side, out channels, stride, transposed (as kernel-bench)
        ("G convT 8x8 s1", ch(w, 256), 8, ch(w, 256), 1, True),
        ("G convT 8x8 s2", ch(w, 256), 8, ch(w, 128), 2, True),
        ("G convT 16x16 s2", ch(w, 128), 16, ch(w, 64), 2, True),
        ("G convT 32x32 s2 ->1", ch(w, 64), 32, 1, 2, True),
        ("D conv 64x64 s2 1->", 1, 64, ch(w, 64), 2, False),
        ("E conv 64x64 s2 1->", 1, 64, ch(w, 128), 2, False),
        ("D conv 32x32 s2", ch(w, 64), 32, ch(w, 128), 2, False),
        ("E conv 32x32 s2", ch(w, 128), 32, ch(w, 256), 2, False),
        ("E conv 16x16 s2", ch(w, 256), 16, ch(w, 512), 2, False),
    ]
    for op, c, h, k, s, transpose in shapes:
        x = torch.randn(n, c, h, h, device=dev)
        if transpose:  # Keras 'same': output = input * stride (cropping as ours: pad 2, output_padding s-1)
            wt = torch.randn(c, k, 5, 5, device=dev) * 0.05
            f = lambda x, wt, s=s: F.conv_transpose2d(x, wt, stride=s, padding=2, output_padding=s - 1)
            macs = n * c * k * 25 * h * h
        else:  # Keras 'same' for stride 2 on an even side pads (1, 2); PyTorch's symmetric 2 costs the same
            wt = torch.randn(k, c, 5, 5, device=dev) * 0.05
            f = lambda x, wt, s=s: F.conv2d(F.pad(x, (1, 2, 1, 2)) if s == 2 else x, wt, stride=s,
                                            padding=0 if s == 2 else 2)
            macs = n * c * k * 25 * ((h + s - 1) // s) ** 2
        y = f(x, wt)
        seed = torch.randn_like(y)
        report(op, "forward", timed(lambda: f(x, wt)), 2 * macs, False)
        if c > 1:
            xg = x.clone().requires_grad_(True)
            report(op, "dx", timed(lambda: torch.autograd.grad(f(xg, wt), xg, seed)), 2 * macs, False)
        wg = wt.clone().requires_grad_(True)
        report(op, "dw", timed(lambda: torch.autograd.grad(f(x, wg), wg, seed)), 2 * macs, False)

    for op, shape in [("BN+LReLU (N,C,16,16)", (n, ch(w, 256), 16, 16)), ("BN+LReLU (N,8*8*C)", (n, 64 * ch(w, 256)))]:
        x = torch.randn(*shape, device=dev)
        seed = torch.randn_like(x)
        c = shape[1]
        gamma, beta = torch.ones(c, device=dev), torch.zeros(c, device=dev)
        rm, rv = torch.zeros(c, device=dev), torch.ones(c, device=dev)
        f = lambda x, g, b: F.leaky_relu(F.batch_norm(x, rm, rv, g, b, True, 0.2, 1e-3), 0.2)
        nbytes = 4.0 * x.numel()
        report(op, "forward", timed(lambda: f(x, gamma, beta)), 3 * nbytes, True)
        xg, gg, bg = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
        report(op, "backward", timed(lambda: torch.autograd.grad(f(xg, gg, bg), (xg, gg, bg), seed)), 8 * nbytes, True)

    x = torch.randn(n, ch(w, 128), 32, 32, device=dev)
    seed = torch.randn_like(x)
    nbytes = 4.0 * x.numel()
    report("LeakyReLU (N,C,32,32)", "forward", timed(lambda: F.leaky_relu(x, 0.2)), 2 * nbytes, True)
    xg = x.clone().requires_grad_(True)
    report("LeakyReLU (N,C,32,32)", "backward",
           timed(lambda: torch.autograd.grad(F.leaky_relu(xg, 0.2), xg, seed)), 5 * nbytes, True)

    n_params = round(3366058 * w * w / 0.0625)
    p = torch.nn.Parameter(torch.randn(n_params, device=dev) * 0.05)
    p.grad = torch.randn(n_params, device=dev) * 1e-3
    opt = torch.optim.Adam([p], lr=2e-4, betas=(0.5, 0.999), eps=1e-7)  # the default (foreach) path
    report("Adam (BANIS's parameters)", "step", timed(opt.step), 4.0 * 7 * n_params, True)

    for op, fin, fout in [("E Linear 8*8*C->100", 64 * ch(w, 512), 100), ("G Linear 100->8*8*C", 100, 64 * ch(w, 256))]:
        x = torch.randn(n, fin, device=dev)
        wt = torch.randn(fin, fout, device=dev) * 0.05
        seed = torch.randn(n, fout, device=dev)
        flops = 2.0 * n * fin * fout
        report(op, "forward", timed(lambda: x @ wt), flops, False)
        xg, wg = x.clone().requires_grad_(True), wt.clone().requires_grad_(True)
        report(op, "backward", timed(lambda: torch.autograd.grad(xg @ wg, (xg, wg), seed)), 2 * flops, False)


if __name__ == "__main__":
    main()
