"""One BANIS training step in PyTorch eager, the same step as build/tools/banis-bench times:
the same networks (BANIS.md), the same seven optimizer steps per domain pair, each its own
forward/backward, at the paper's batch and sizes. Prints milliseconds per warm-up step
(Pioneers only) and per full step (Pioneers + Successors + Coordinators) in banis-bench's format,
so that bench/compare_step.sh can put the two side by side.

cuDNN with TF32 on (PyTorch's fastest eager settings), benchmark mode on.

Usage: python3 bench/banis_step_torch.py [--device cuda|cpu] [--batch 128] [--width 1] [--reps 5]
"""
import argparse
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def ch(width, n):
    return max(1, round(n * width))


class ConvSame(nn.Module):
    """Keras 'same' convolution (k x k, stride s, on size x size): pad (total // 2, total - total // 2)."""

    def __init__(self, cin, cout, k, s, size):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s)
        out = (size + s - 1) // s
        total = max((out - 1) * s + k - size, 0)
        self.pad = (total // 2, total - total // 2) * 2

    def forward(self, x):
        return self.conv(F.pad(x, self.pad))


class ConvTSame(nn.Module):
    """Keras 'same' transposed convolution: the full transposed output, cropped as TF does."""

    def __init__(self, cin, cout, k, s, size, bias):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, k, s, bias=bias)
        out = size * s
        total = max((size - 1) * s + k - out, 0)
        self.top = total // 2
        self.out = out

    def forward(self, x):
        y = self.conv(x)
        return y[:, :, self.top:self.top + self.out, self.top:self.top + self.out]


def bn(c, spatial):
    # Keras momentum 0.8 = PyTorch momentum 0.2; epsilon 1e-3
    return (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(c, eps=1e-3, momentum=0.2)


class Reshape(nn.Module):
    def __init__(self, *shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.view(x.shape[0], *self.shape)


def generator(w, latent):
    c0, c1, c2, c3 = ch(w, 256), ch(w, 256), ch(w, 128), ch(w, 64)
    return nn.Sequential(
        nn.Linear(latent, 8 * 8 * c0, bias=False), bn(8 * 8 * c0, False), nn.LeakyReLU(0.2), Reshape(c0, 8, 8),
        ConvTSame(c0, c1, 5, 1, 8, False), bn(c1, True), nn.LeakyReLU(0.2),
        ConvTSame(c1, c2, 5, 2, 8, False), bn(c2, True), nn.LeakyReLU(0.2),
        ConvTSame(c2, c3, 5, 2, 16, False), bn(c3, True), nn.LeakyReLU(0.2),
        ConvTSame(c3, 1, 5, 2, 32, False), nn.Tanh())


def discriminator(w):
    c1, c2 = ch(w, 64), ch(w, 128)
    return nn.Sequential(
        ConvSame(1, c1, 5, 2, 64), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        ConvSame(c1, c2, 5, 2, 32), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(16 * 16 * c2, 1))  # logits: BCE from logits, as ours


def encoder(w, latent):
    c1, c2, c3 = ch(w, 128), ch(w, 256), ch(w, 512)
    return nn.Sequential(
        ConvSame(1, c1, 5, 2, 64), bn(c1, True), nn.LeakyReLU(0.2),
        ConvSame(c1, c2, 5, 2, 32), bn(c2, True), nn.LeakyReLU(0.2),
        ConvSame(c2, c3, 5, 2, 16), bn(c3, True), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(8 * 8 * c3, latent))


class BanisNets(nn.Module):
    """The six networks under the names banis-train's checkpoints use: `banis-export` writes a
    state_dict that `BanisNets(width, latent, g_bn_sets).load_state_dict(...)` takes as it is
    (module indices are the same as ours; a convolution's weight is one level down, in `.conv`).
    With g_bn_sets=2 each generator's batch norms keep a second set of running statistics
    (`running_mean_1`, `running_var_1`) for encoder codes: `successor` uses it, G(z) the first."""

    def __init__(self, width, latent, g_bn_sets=1):
        super().__init__()
        self.gen_a, self.gen_b = generator(width, latent), generator(width, latent)
        self.disc_a, self.disc_b = discriminator(width), discriminator(width)
        self.enc_a, self.enc_b = encoder(width, latent), encoder(width, latent)
        self.g_bn_sets = g_bn_sets
        if g_bn_sets == 2:
            for m in self._gen_norms(self.gen_a) + self._gen_norms(self.gen_b):
                m.register_buffer("running_mean_1", torch.zeros_like(m.running_mean))
                m.register_buffer("running_var_1", torch.ones_like(m.running_var))

    @staticmethod
    def _gen_norms(g):
        return [m for m in g if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def _swap_stats(self, g):
        for m in self._gen_norms(g):
            m.running_mean, m.running_mean_1 = m.running_mean_1, m.running_mean
            m.running_var, m.running_var_1 = m.running_var_1, m.running_var

    def successor(self, x, src):
        """S_X(src) = G_X(E_X(src)) (x = 0: A, 1: B), G on its encoder-code statistics."""
        g, e = (self.gen_a, self.gen_b)[x], (self.enc_a, self.enc_b)[x]
        if self.g_bn_sets == 2:
            self._swap_stats(g)
        try:
            return g(e(src))
        finally:
            if self.g_bn_sets == 2:
                self._swap_stats(g)


class Banis:
    def __init__(self, width, latent, dev):
        self.latent = latent
        self.nets = BanisNets(width, latent).to(dev)
        self.gen = [self.nets.gen_a, self.nets.gen_b]
        self.disc = [self.nets.disc_a, self.nets.disc_b]
        self.enc = [self.nets.enc_a, self.nets.enc_b]
        adam = lambda p, lr: torch.optim.Adam(p, lr=lr, betas=(0.5, 0.999), eps=1e-7)
        self.opt_d = [adam(self.disc[x].parameters(), 2e-5) for x in range(2)]
        self.opt_g = [adam(self.gen[0].parameters(), 2e-5), adam(self.gen[1].parameters(), 1e-5)]
        sgd = lambda mods: torch.optim.SGD([p for m in mods for p in m.parameters()], lr=1e-4)
        self.opt_s = [sgd([self.enc[x], self.gen[x]]) for x in range(2)]
        self.opt_c = [sgd([self.enc[x], self.gen[x], self.enc[1 - x], self.gen[1 - x]]) for x in range(2)]

    def successor(self, x, src):
        return self.gen[x](self.enc[x](src))

    def pioneer_step(self, x, real):
        n = real.shape[0]
        z = torch.rand(n, self.latent, device=real.device) * 2 - 1
        g = self.gen[x]
        g.eval()  # x_gen = G_X(z) in inference mode, as the reference code
        with torch.no_grad():
            gen = g(z)
        g.train()
        labels = torch.cat([torch.ones(n, 1, device=real.device), torch.zeros(n, 1, device=real.device)])
        self.opt_d[x].zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(self.disc[x](torch.cat([real, gen])), labels).backward()
        self.opt_d[x].step()
        d = self.disc[x]
        d.requires_grad_(False)  # frozen inside the Pioneer
        self.opt_g[x].zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(d(g(z)), torch.ones(n, 1, device=real.device)).backward()
        self.opt_g[x].step()
        d.requires_grad_(True)
        return gen

    def sgd_step(self, opt, out, target):
        opt.zero_grad(set_to_none=True)
        F.mse_loss(out, target.detach()).backward()
        opt.step()

    def step(self, full, a, b):
        gen = [self.pioneer_step(0, a), self.pioneer_step(1, b)]
        if full:
            self.sgd_step(self.opt_s[0], self.successor(0, b), gen[0])
            self.sgd_step(self.opt_s[1], self.successor(1, a), gen[1])
            self.sgd_step(self.opt_s[0], self.successor(0, b), a)
            self.sgd_step(self.opt_s[1], self.successor(1, a), b)
            self.sgd_step(self.opt_c[0], self.successor(1, self.successor(0, b)), b)
            self.sgd_step(self.opt_c[1], self.successor(0, self.successor(1, a)), a)


def proc_status_bytes(key):
    """A line of /proc/self/status ("VmRSS:", "VmHWM:") in bytes, None where it cannot be read:
    the method tools/banis_bench.c applies to its own process, so that the CPU figures compare."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return 1024 * int(line.split()[1])
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("banis_step_torch.py: --device cuda, but PyTorch sees no GPU")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(1)
    rss0 = proc_status_bytes("VmRSS:")
    m = Banis(args.width, 100, dev)
    # images in [-1, 1] with the data's sparsity: dark background, bright thin structures
    a = (torch.rand(args.batch, 1, 64, 64, device=dev) > 0.8).float() * 1.6 - 0.8
    b = (torch.rand(args.batch, 1, 64, 64, device=dev) > 0.9).float() * 1.6 - 0.8
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    nparams = sum(p.numel() for net in m.gen + m.disc + m.enc for p in net.parameters())
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"PyTorch {torch.__version__} BANIS step on {name}: batch {args.batch}, width {args.width:g} "
          f"({nparams} parameters), {args.reps} timed reps after 1 warm-up rep")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    ms = []
    for full in (False, True):
        m.step(full, a, b)  # untimed: cuDNN autotuning, allocator
        sync()
        t0 = time.perf_counter()
        for _ in range(args.reps):
            m.step(full, a, b)
        sync()
        ms.append(1e3 * (time.perf_counter() - t0) / args.reps)
        print(f"{'full' if full else 'warm-up':<10s} step: {ms[-1]:9.1f} ms")
    if dev.type == "cuda":
        print(f"peak device memory: {torch.cuda.max_memory_allocated(dev) / 2**20:.1f} MiB")
    hwm = proc_status_bytes("VmHWM:")
    if dev.type == "cpu" and rss0 is not None and hwm is not None:
        print(f"peak RSS growth: {(hwm - rss0) / 2**20:.1f} MiB (the process's peak resident memory, "
              f"VmHWM, minus its resident memory before the model was built)")
    print(f"projected paper schedule (17,000 warm-up + 23,000 full steps): "
          f"{(17000 * ms[0] + 23000 * ms[1]) / 1e3 / 3600:.1f} h")


if __name__ == "__main__":
    main()
