"""The same convolution shapes as tools/kernel-bench, through PyTorch (cuDNN, TF32 on), on the
same GPU: milliseconds and TFLOP/s for the forward pass and the backward pass (input and
weight gradients). Usage: python3 bench/conv_torch.py [--reps N]"""
import argparse
import time

import torch

SHAPES = [  # name, n, c, h, w, k, r, stride, transpose (as kernel-bench)
    ("G convT 8x8 256->256 s1", 128, 256, 8, 8, 256, 5, 1, True),
    ("G convT 8x8 256->128 s2", 128, 256, 8, 8, 128, 5, 2, True),
    ("G convT 16x16 128->64 s2", 128, 128, 16, 16, 64, 5, 2, True),
    ("G convT 32x32 64->1 s2", 128, 64, 32, 32, 1, 5, 2, True),
    ("D/E conv 64x64 1->64 s2", 128, 1, 64, 64, 64, 5, 2, False),
    ("D conv 32x32 64->128 s2", 128, 64, 32, 32, 128, 5, 2, False),
    ("E conv 32x32 128->256 s2", 128, 128, 32, 32, 256, 5, 2, False),
    ("E conv 16x16 256->512 s2", 128, 256, 16, 16, 512, 5, 2, False),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    print(f"{'shape':28s} {'pass':8s} {'ms':>10s} {'TFLOP/s':>10s}")
    for name, n, c, h, w, k, r, s, transpose in SHAPES:
        x = torch.randn(n, c, h, w, device=dev, requires_grad=True)
        if transpose:  # Keras 'same': output = input * stride
            pad, out_pad = (r - 1) // 2 if s == 1 else 1, s - 1 if s > 1 else 0
            conv = torch.nn.ConvTranspose2d(c, k, r, s, padding=2 if s == 1 else pad, output_padding=out_pad,
                                            bias=False).to(dev)
            oh = h * s
            macs = n * c * k * r * r * h * w
        else:
            conv = torch.nn.Conv2d(c, k, r, s, padding=2, bias=False).to(dev)
            oh = (h + s - 1) // s
            macs = n * c * k * r * r * oh * oh
        for label in ("forward", "backward"):
            times = []
            for rep in range(args.reps + 1):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                y = conv(x)
                if label == "backward":
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    y.sum().backward()
                torch.cuda.synchronize()
                if rep:
                    times.append(time.perf_counter() - t0)
            t = sum(times) / len(times)
            flops = 2 * macs * (1 if label == "forward" else 2)
            print(f"{name:28s} {label:8s} {1e3 * t:10.3f} {flops / t / 1e12:10.2f}")


if __name__ == "__main__":
    main()
