"""Peer benchmark: one "unet-small" training step in PyTorch on the CPU.

Forward, 0.5 * dice + 0.5 * class-balanced BCE, backward and an Adam update, with the data
already in memory; each step is timed on its own. Prints a single JSON line so the Deno
wrapper (torch_unet.ts) can parse it.

Run with Debian's interpreter (/usr/bin/python3), where python3-torch is installed.
"""

import argparse
import json
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as exc:  # the wrapper turns this into a readable ok:false result
    print(json.dumps({"error": f"torch import failed: {exc}"}))
    sys.exit(3)


class CBR(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=True),
            nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(CBR(cin, cout), CBR(cout, cout))


class Down(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.MaxPool2d(2), DoubleConv(cin, cout))


class Up(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2, bias=True)
        self.conv = DoubleConv(cin, cin // 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # Upsampled features first, skip second: the channel order our model uses.
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNetSmall(nn.Module):
    def __init__(self):
        super().__init__()
        self.inc = DoubleConv(3, 16)
        self.down1 = Down(16, 32)
        self.down2 = Down(32, 64)
        self.down3 = Down(64, 128)
        self.up1 = Up(128)
        self.up2 = Up(64)
        self.up3 = Up(32)
        self.outc = nn.Conv2d(16, 1, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        h = self.down3(x3)
        h = self.up1(h, x3)
        h = self.up2(h, x2)
        h = self.up3(h, x1)
        return torch.sigmoid(self.outc(h))


def seg_loss(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """0.5 * dice + 0.5 * class-balanced BCE, written out so it matches the other peers."""
    pf = p.reshape(-1)
    yf = y.reshape(-1)
    # F.binary_cross_entropy floors log at -100 and keeps its gradient finite where the
    # sigmoid saturates to exactly 0 or 1; clamping torch.log by hand gave 0 * inf = NaN there.
    bce = F.binary_cross_entropy(pf, yf, reduction="none")
    pos = (yf > 0.5).float()
    neg = (yf < 0.5).float()
    bce_bal = (0.5 * (bce * pos).sum() / (pos.sum() + 1e-12)
               + 0.5 * (bce * neg).sum() / (neg.sum() + 1e-12))

    pi = p.reshape(p.shape[0], -1)
    yi = y.reshape(y.shape[0], -1)
    inter = (pi * yi).sum(1)
    denom = (pi * pi).sum(1) + (yi * yi).sum(1) + 4e-5
    dice = (1 - (2 * inter + 4e-5) / denom).mean()
    return 0.5 * dice + 0.5 * bce_bal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.size % 8 != 0 or args.runs < 1:
        ap.error("--size must be divisible by 8 and --runs >= 1")

    # A fixed thread count keeps the peer comparable across machines and runs.
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = UNetSmall().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    x = torch.rand(args.batch, 3, args.size, args.size)
    y = (torch.rand(args.batch, 1, args.size, args.size) > 0.5).float()

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = seg_loss(model(x), y)
        loss.backward()
        opt.step()
        # .item() forces the whole step to finish before the clock stops.
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000.0)

    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "runs": args.runs,
        "torch": torch.__version__,
        "params": params,
    }))


if __name__ == "__main__":
    main()
