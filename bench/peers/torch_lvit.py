"""Peer benchmark: one reference LViT-T training step in PyTorch on the CPU.

The model is written from ../shared/docs/lvit-reference.md section 1 (and mirrors our
lib/models/lvit.ts): a U-Net CNN branch, a 4-level ViT down/up branch fused back through the
skips, PLAM on every decoder skip, text entering once through CTBN3 at level 1. Module names are
the official state_dict names, and the modules the official code registers but never runs are
registered too, so both parameter counts match the reference: 29,908,033 trained (they receive
gradients) and 39,933,345 registered (all of model.parameters()).

One step is: forward in training mode (BN batch statistics, dropout 0.1), 0.5 * squared-Dice +
0.5 * class-balanced BCE (lvit-reference.md 3.1), backward and an Adam update (lr 1e-3, betas
0.9/0.999, eps 1e-8), with the data already in memory; each step is timed on its own. Prints a
single JSON line so the Deno wrapper (torch_lvit.ts) can parse it.

Run with Debian's interpreter (/usr/bin/python3), where python3-torch is installed:
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/peers/torch_lvit.py --warmup 1 --runs 5
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

# Torch runs its own intra-op threads; an OpenBLAS pool per core on top of them oversubscribes
# the CPU. Must be set before torch (and with it OpenBLAS) is loaded; the wrapper sets it too.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

try:
    import numpy
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as exc:  # the wrapper turns this into a readable ok:false result
    print(json.dumps({"error": f"torch import failed: {exc}"}))
    sys.exit(3)

TEXT_TOKENS = 10
TEXT_DIM = 768
DROPOUT = 0.1


# ---------------------------------------------------------------------------------------------
# CNN pieces


class ConvBatchNorm(nn.Module):
    """3x3 conv (bias) -> BatchNorm2d -> ReLU; state_dict names conv.*, norm.*."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.conv(x)))


class DownBlock(nn.Module):
    """MaxPool 2x2, then two ConvBatchNorm (names nConvs.0/1)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.maxpool = nn.MaxPool2d(2)
        self.nConvs = nn.Sequential(ConvBatchNorm(cin, cout), ConvBatchNorm(cout, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nConvs(self.maxpool(x))


class PixLevelModule(nn.Module):
    """PLAM: per-pixel channel mean / max of two 1x1-conv maps, a 3 -> 6 -> 1 per-pixel MLP on
    (avg, max, avg + max), and the skip times that unbounded gain (no sigmoid)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv_avg = nn.Conv2d(c, c, 1, bias=False)
        self.relu_avg = nn.ReLU()
        self.conv_max = nn.Conv2d(c, c, 1, bias=False)
        self.relu_max = nn.ReLU()
        self.bottleneck = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 1))
        # Registered but never run by the reference (lvit-reference.md 1.5): kept for the
        # registered count and the state_dict names.
        self.conv_sig = nn.Sequential(nn.Conv2d(c, c, 1), nn.Sigmoid())

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        a = self.relu_avg(self.conv_avg(s)).mean(dim=1, keepdim=True)
        m = self.relu_max(self.conv_max(s)).max(dim=1, keepdim=True)[0]
        feats = torch.cat([a, m, a + m], dim=1)  # [B, 3, H, W], order (avg, max, sum)
        gain = self.bottleneck(feats.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return s * gain


class UpBlockAttention(nn.Module):
    """Nearest x2 of the deeper feature, concat [PLAM(skip), up], two ConvBatchNorm."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2)  # nearest, nn.Upsample's default
        self.pixModule = PixLevelModule(cin // 2)
        self.nConvs = nn.Sequential(ConvBatchNorm(cin, cout), ConvBatchNorm(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.nConvs(torch.cat([self.pixModule(skip), self.up(x)], dim=1))


class Reconstruct(nn.Module):
    """Tokens [B, T, C] -> [B, C, g, g] -> nearest x f -> 1x1 conv -> BN -> ReLU."""

    def __init__(self, c: int, factor: int):
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(c, c, 1)
        self.norm = nn.BatchNorm2d(c)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        side = int(round(t ** 0.5))
        h = x.transpose(1, 2).reshape(b, c, side, side)
        h = F.interpolate(h, scale_factor=self.factor, mode="nearest")
        return self.activation(self.norm(self.conv(h)))


# ---------------------------------------------------------------------------------------------
# ViT pieces


class ConvBN1d(nn.Module):
    """The CTBN family: Conv1d(k 3, pad 1, bias) -> BatchNorm1d -> ReLU on [B, Cin, L]."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm1d(cout)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.conv(x)))

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """On tokens [B, T, C]: the conv slides over the T tokens in raster order (the reference
        quirk that mixes the end of one row with the start of the next)."""
        return self(x.transpose(1, 2)).transpose(1, 2)


class Embeddings(nn.Module):
    """Patch conv (kernel = stride = p), row-major flatten, + zero-initialised position
    embedding, dropout."""

    def __init__(self, c: int, patch: int, tokens: int):
        super().__init__()
        self.patch_embeddings = nn.Conv2d(c, c, patch, stride=patch)
        self.position_embeddings = nn.Parameter(torch.zeros(1, tokens, c))
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch_embeddings(x).flatten(2).transpose(1, 2)
        return self.dropout(h + self.position_embeddings)


class Attention(nn.Module):
    """MHSA, qkv laid out [q | k | v], each head-major; attention and projection dropout 0."""

    def __init__(self, c: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (c // heads) ** -0.5
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        # Written out (no fused attention) as the reference computes it.
        att = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc1 -> GELU -> Dropout -> fc2 -> GELU -> Dropout (the reference's doubled GELU)."""

    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.fc2 = nn.Linear(hidden, c)
        self.act = nn.GELU()
        self.drop = nn.Dropout(DROPOUT)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.act(self.fc1(x)))
        return self.drop(self.act(self.fc2(h)))


class Block(nn.Module):
    """Pre-norm transformer block; DropPath 0."""

    def __init__(self, c: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(c)
        self.attn = Attention(c, heads)
        self.norm2 = nn.LayerNorm(c)
        self.mlp = Mlp(c, c * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """One ViT object of the reference. All eight have the same modules; which of them run
    depends on the caller (down path level 1, down path levels 2-4, up path)."""

    def __init__(self, c: int, patch: int, tokens: int, heads: int = 8, depth: int = 1,
                 mlp_ratio: int = 4):
        super().__init__()
        self.embeddings = Embeddings(c, patch, tokens)
        self.Encoder_blocks = nn.Sequential(*[Block(c, heads, mlp_ratio) for _ in range(depth)])
        # norm and head never run (lvit-reference.md 1.5); registered for the counts and names.
        self.norm = nn.LayerNorm(c)
        self.head = nn.Linear(c, 1)
        self.CTBN = ConvBN1d(c, c // 2)
        self.CTBN2 = ConvBN1d(2 * c, c)
        self.CTBN3 = ConvBN1d(TEXT_TOKENS, tokens)

    def down_first(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Level 1: embed, add CTBN3 of the text [B, words, C] (words are the conv's input
        channels, tokens its outputs), then the blocks."""
        return self.Encoder_blocks(self.embeddings(x) + self.CTBN3(text))

    def down(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """Levels 2-4: the blocks on this level's patches alone, halved by CTBN, then
        concatenated [halved, previous level's output]."""
        z = self.Encoder_blocks(self.embeddings(x))
        return torch.cat([self.CTBN.tokens(z), prev], dim=2)

    def up(self, y: torch.Tensor, above: torch.Tensor | None) -> torch.Tensor:
        """Up path: the blocks on the down output, plus CTBN2 of the level above."""
        u = self.Encoder_blocks(y)
        return u if above is None else u + self.CTBN2.tokens(above)


# ---------------------------------------------------------------------------------------------
# LViT


class LViT(nn.Module):
    """LViT-T (lvit-reference.md 1.4) with base width 64 on size x size images."""

    def __init__(self, size: int = 224, c0: int = 64):
        super().__init__()
        ch = [c0, 2 * c0, 4 * c0, 8 * c0]
        tokens = (size // 16) ** 2
        self.inc = ConvBatchNorm(3, ch[0])
        self.down1 = DownBlock(ch[0], ch[1])
        self.down2 = DownBlock(ch[1], ch[2])
        self.down3 = DownBlock(ch[2], ch[3])
        self.down4 = DownBlock(ch[3], ch[3])
        self.downVit = VisionTransformer(ch[0], 16, tokens)
        self.downVit1 = VisionTransformer(ch[1], 8, tokens)
        self.downVit2 = VisionTransformer(ch[2], 4, tokens)
        self.downVit3 = VisionTransformer(ch[3], 2, tokens)
        self.upVit = VisionTransformer(ch[0], 16, tokens)
        self.upVit1 = VisionTransformer(ch[1], 8, tokens)
        self.upVit2 = VisionTransformer(ch[2], 4, tokens)
        self.upVit3 = VisionTransformer(ch[3], 2, tokens)
        self.up4 = UpBlockAttention(2 * ch[3], ch[2])
        self.up3 = UpBlockAttention(2 * ch[2], ch[1])
        self.up2 = UpBlockAttention(2 * ch[1], ch[0])
        self.up1 = UpBlockAttention(2 * ch[0], ch[0])
        self.outc = nn.Conv2d(ch[0], 1, 1)
        self.last_activation = nn.Sigmoid()
        self.multi_activation = nn.Softmax(dim=1)  # unused: one class
        self.reconstruct1 = Reconstruct(ch[0], 16)
        self.reconstruct2 = Reconstruct(ch[1], 8)
        self.reconstruct3 = Reconstruct(ch[2], 4)
        self.reconstruct4 = Reconstruct(ch[3], 2)
        # Stand-alone PLAMs the reference registers and never calls (lvit-reference.md 1.5).
        self.pix_module1 = PixLevelModule(ch[0])
        self.pix_module2 = PixLevelModule(ch[1])
        self.pix_module3 = PixLevelModule(ch[2])
        self.pix_module4 = PixLevelModule(ch[3])
        self.text_module4 = nn.Conv1d(TEXT_DIM, ch[3], 3, padding=1)
        self.text_module3 = nn.Conv1d(ch[3], ch[2], 3, padding=1)
        self.text_module2 = nn.Conv1d(ch[2], ch[1], 3, padding=1)
        self.text_module1 = nn.Conv1d(ch[1], ch[0], 3, padding=1)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        # Text path: Conv1d along the words, no norm or activation. T2..T4 are computed (the
        # reference does) but only T1 is consumed.
        t4 = self.text_module4(text.transpose(1, 2))
        t3 = self.text_module3(t4)
        t2 = self.text_module2(t3)
        t1 = self.text_module1(t2).transpose(1, 2)  # [B, words, 64]

        # CNN encoder on the un-fused features.
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)

        y1 = self.downVit.down_first(x1, t1)
        y2 = self.downVit1.down(x2, y1)
        y3 = self.downVit2.down(x3, y2)
        y4 = self.downVit3.down(x4, y3)
        u4 = self.upVit3.up(y4, None)
        u3 = self.upVit2.up(y3, u4)
        u2 = self.upVit1.up(y2, u3)
        u1 = self.upVit.up(y1, u2)

        x1 = x1 + self.reconstruct1(u1)
        x2 = x2 + self.reconstruct2(u2)
        x3 = x3 + self.reconstruct3(u3)
        x4 = x4 + self.reconstruct4(u4)

        d = self.up4(x5, x4)
        d = self.up3(d, x3)
        d = self.up2(d, x2)
        d = self.up1(d, x1)
        return self.last_activation(self.outc(d))


def seg_loss(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """0.5 * squared-denominator Dice + 0.5 * class-balanced BCE (lvit-reference.md 3.1),
    written out as torch_unet.py does so the peers compute the same thing."""
    pf = p.reshape(-1)
    yf = y.reshape(-1)
    # F.binary_cross_entropy floors log at -100 and keeps its gradient finite where the
    # sigmoid saturates to exactly 0 or 1; clamping torch.log by hand gave 0 * inf = NaN there.
    bce = F.binary_cross_entropy(pf, yf, reduction="none")
    pos = (yf > 0.5).float()
    neg = (yf < 0.5).float()
    bce_bal = (0.5 * (bce * pos).sum() / (pos.sum() + 1e-12)
               + 0.5 * (bce * neg).sum() / (neg.sum() + 1e-12))

    # The reference's 0.5-weighted form with 1e-5 smoothing, equivalently 4e-5 unweighted.
    pi = p.reshape(p.shape[0], -1)
    yi = y.reshape(y.shape[0], -1)
    inter = (pi * yi).sum(1)
    denom = (pi * pi).sum(1) + (yi * yi).sum(1) + 4e-5
    dice = (1 - (2 * inter + 4e-5) / denom).mean()
    return 0.5 * dice + 0.5 * bce_bal


def counts(model: nn.Module) -> dict:
    """Trained (holding a gradient after a step) and registered parameter counts."""
    return {
        "params_trained": sum(p.numel() for p in model.parameters() if p.grad is not None),
        "params_registered": sum(p.numel() for p in model.parameters()),
    }


def batch_data(args):
    """The fixed batch every step trains on: `--data FILE` (what bench/main.ts writes: the images,
    text and masks our timed step trains on, float32 little-endian, in that order), else uniform
    random images and text with random labels. Random labels cannot be learned, so weights
    trained on them drift in a way ours (on learnable blobs) do not: the paired benchmark gives
    both sides the same batch."""
    shapes = [(args.batch, 3, args.size, args.size), (args.batch, TEXT_TOKENS, TEXT_DIM),
              (args.batch, 1, args.size, args.size)]
    if args.data is None:
        torch.manual_seed(0)
        x = torch.rand(*shapes[0])
        text = torch.randn(*shapes[1])
        y = (torch.rand(*shapes[2]) > 0.5).float()
        return x, text, y
    sizes = [math.prod(s) for s in shapes]
    with open(args.data, "rb") as f:
        raw = f.read()
    if len(raw) != 4 * sum(sizes):
        raise SystemExit(f"--data {args.data}: {len(raw)} bytes, expected {4 * sum(sizes)} "
                         f"(images, text, masks of batch {args.batch} at {args.size})")
    flat = torch.from_numpy(numpy.frombuffer(raw, dtype="<f4").astype(numpy.float32))
    parts = torch.split(flat, sizes)
    return tuple(p.reshape(s).clone() for p, s in zip(parts, shapes))


def build(args):
    """The seeded model, in training mode, and its training step on the fixed batch."""
    x, text, y = batch_data(args)
    torch.manual_seed(0)
    model = LViT(args.size).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = seg_loss(model(x, text), y)
        loss.backward()
        opt.step()
        # .item() forces the whole step to finish before the clock stops.
        return loss.item()

    return model, step


def serve(args, model: nn.Module, step) -> None:
    """Paired timing (bench/main.ts --paired): the caller alternates our step and this one, so
    both are timed under the same host load. Answers go to a private copy of stdout, one JSON
    line per command, and anything else printed goes to stderr, so that a stray print cannot
    shift the answers. A step that fails (Debian's torch 1.13 sometimes produces a NaN in the
    BCE input on 2 threads) leaves NaN weights that would poison every later step: the model and
    its optimizer are built again from the seed and warmed before the failure is reported, so
    that the rebuild does not overlap the caller's next step."""
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr

    def answer(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    answer({"ready": True, "torch": torch.__version__, "threads": args.threads, **counts(model)})
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        if cmd != "step":
            answer({"step_error": f"unknown command {cmd!r}"})
            continue
        t0 = time.perf_counter()
        try:
            loss = step()
        except RuntimeError as exc:
            why = str(exc).splitlines()[0]
            for _ in range(3):
                try:
                    model, step = build(args)
                    step()  # warm the new optimizer state before timing resumes
                    break
                except RuntimeError as again:
                    why += f"; the rebuilt model failed too: {str(again).splitlines()[0]}"
            else:
                raise RuntimeError(why)
            answer({"step_error": why})
            continue
        answer({"ms": (time.perf_counter() - t0) * 1000.0, "loss": loss})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224,
                    help="image side; the reference counts hold at 224 only")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", help="train on this batch (float32 little-endian images, text and "
                                    "masks, as bench/main.ts writes it) instead of random data")
    ap.add_argument("--state-dict", action="store_true",
                    help="print the state_dict names and shapes as JSON and exit (no training)")
    ap.add_argument("--serve", action="store_true",
                    help="after the warm-up, print a ready line, then time one step per 'step' "
                         "line read from stdin (one JSON line each) until 'quit' or EOF")
    args = ap.parse_args()
    if args.size % 16 != 0 or args.size < 64 or args.runs < 1 or args.batch < 1:
        ap.error("--size must be a multiple of 16 and >= 64, --runs and --batch >= 1")
    if args.serve and args.warmup < 1:
        # The ready line counts the parameters that hold a gradient, which needs a step.
        ap.error("--serve needs --warmup >= 1")

    # A fixed thread count keeps the peer comparable across machines and runs.
    torch.set_num_threads(args.threads)

    if args.state_dict:
        torch.manual_seed(0)
        sd = {k: list(v.shape) for k, v in LViT(args.size).train().state_dict().items()}
        print(json.dumps({"state_dict": sd}))
        return

    model, step = build(args)
    for _ in range(args.warmup):
        step()
    if args.serve:
        serve(args, model, step)
        return
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - t0) * 1000.0)

    # Grads were cleared to None at the start of the last step, so exactly the parameters the
    # forward used hold one now; Adam skips the others, as it does in the reference.
    print(json.dumps({
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "runs": args.runs,
        "times_ms": times,
        "torch": torch.__version__,
        "threads": args.threads,
        "batch": args.batch,
        "size": args.size,
        "loss": loss,
        **counts(model),
    }))


if __name__ == "__main__":
    main()
