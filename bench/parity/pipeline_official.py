"""Pipeline parity, official side (README.md, "Training and evaluation pipeline"): runs the
official LViT code (Load_Dataset.py, utils.py, train_model.py, test_model.py, nets/) on fixed
inputs and writes what it computed to $PARITY_OUT/pipeline/ for pipeline_ours.ts:

  pre/      ValGenerator tensors of all 44 MoNuSeg images (image f32 CHW, mask u8)
  aug/      RandomGenerator outputs with forced draws (every rot90/flip, every angle, none)
  loss/     WeightedDiceBCE(0.5, 0.5) on fixed probabilities: value and gradients (f32, f64)
  metrics/  validation Dice/IoU (Train_one_epoch) and test Dice/IoU (test_model.py)
  official.json  schedule, selection, Adam, init statistics, BN, dropout, draw statistics, texts

Official code from $PARITY_LVIT_OFFICIAL (default $PARITY_OFFICIAL/lvit, i.e.
bench/parity/official/lvit), data from $PARITY_DATA (default <official>/datasets/MoNuSeg).
Packages the official modules import but this does not use (bert_embedding, timm, ml_collections)
are replaced by stand-ins; nothing of the official code is copied: functions are imported, or
their source text is taken from the official files (ast) and executed.
usage: pipeline_official.py"""
import ast
import json
import os
import random
import sys
import textwrap
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OFFICIAL = os.environ.get("PARITY_LVIT_OFFICIAL",
                          os.path.join(os.environ.get("PARITY_OFFICIAL", os.path.join(HERE, "official")), "lvit"))
DATA = os.environ.get("PARITY_DATA", os.path.join(OFFICIAL, "datasets", "MoNuSeg"))
OUT = os.path.join(os.environ.get("PARITY_OUT", os.path.join(HERE, "out")), "pipeline")
for sub in ["pre", "aug", "loss", "metrics"]:
    os.makedirs(os.path.join(OUT, sub), exist_ok=True)

# Stand-ins for imports that are not installed and not exercised here.
bert = types.ModuleType("bert_embedding")


class BertEmbedding:
    """Stand-in: one zero 768-vector per whitespace word (the text tensor is not compared)."""

    def __call__(self, texts):
        return [(t.split(), [np.zeros(768, np.float32)] * max(10, len(t.split()))) for t in texts]


bert.BertEmbedding = BertEmbedding
timm = types.ModuleType("timm")
timm_models = types.ModuleType("timm.models")
timm_layers = types.ModuleType("timm.models.layers")


class DropPath:  # only built for drop_path > 0, which LViT never uses
    pass


timm_layers.DropPath = DropPath
mlc = types.ModuleType("ml_collections")


class ConfigDict(dict):
    def __getattr__(self, k):
        return self[k]

    def __setattr__(self, k, v):
        self[k] = v


mlc.ConfigDict = ConfigDict
sys.modules.update({"bert_embedding": bert, "timm": timm, "timm.models": timm_models,
                    "timm.models.layers": timm_layers, "ml_collections": mlc})
sys.path.insert(0, OFFICIAL)

import torch  # noqa: E402

torch.set_num_threads(1)
import Config as config  # noqa: E402
import Load_Dataset as LD  # noqa: E402
import utils  # noqa: E402
from nets.LViT import LViT  # noqa: E402

report = {"official": OFFICIAL, "data": DATA,
          "versions": {"torch": torch.__version__, "numpy": np.__version__,
                       "scipy": __import__("scipy").__version__,
                       "cv2": __import__("cv2").__version__,
                       "sklearn": __import__("sklearn").__version__}}


def source_of(path, name):
    """The source text of a top-level def/class `name` of an official file."""
    src = open(os.path.join(OFFICIAL, path)).read()
    for node in ast.parse(src).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return ast.get_source_segment(src, node)
    raise KeyError(f"{name} not in {path}")


def wf32(path, a):
    np.ascontiguousarray(a, dtype="<f4").tofile(os.path.join(OUT, path))


def wf64(path, a):
    np.ascontiguousarray(a, dtype="<f8").tofile(os.path.join(OUT, path))


# ------------------------------------------------------------------------------------------
# 1. Preprocessing: ImageToImage2D + ValGenerator on every image of every split.
SPLITS = [("train", "Train"), ("val", "Val"), ("test", "Test")]
pre = {}
texts = {}
for split, stem in SPLITS:
    folder = os.path.join(DATA, f"{stem}_Folder") + "/"
    row_text = utils.read_text(folder + f"{stem}_text.xlsx")
    texts[split] = {k: v.split("\n")[0] for k, v in row_text.items()}
    ds = LD.ImageToImage2D(folder, "MoNuSeg", row_text, LD.ValGenerator(output_size=[224, 224]),
                           image_size=224)
    names = []
    for i in range(len(ds)):
        sample, name = ds[i]
        img = sample["image"].numpy()
        lab = sample["label"].numpy()
        assert img.shape == (3, 224, 224) and img.dtype == np.float32, img.shape
        assert lab.shape == (224, 224) and set(np.unique(lab)) <= {0, 1}
        wf32(f"pre/{name}.img.f32", img)
        lab.astype(np.uint8).tofile(os.path.join(OUT, f"pre/{name}.mask.u8"))
        names.append((name, float(lab.mean())))
    pre[split] = sorted(names)
report["pre"] = pre
report["texts"] = texts

# ------------------------------------------------------------------------------------------
# 2. Augmentation: RandomGenerator.__call__ with its draws forced, on raw ImageToImage2D samples
# (uint8 HWC BGR image, HxWx1 mask, before the joint transform).
train_folder = os.path.join(DATA, "Train_Folder") + "/"
raw_ds = LD.ImageToImage2D(train_folder, "MoNuSeg", utils.read_text(train_folder + "Train_text.xlsx"),
                           lambda s: s, image_size=224)
order = sorted(range(len(raw_ds)), key=lambda i: raw_ds.images_list[i])
AUG_IMAGES = [raw_ds.images_list[i] for i in order[:2]]
ops = [("none",)] + [("rotflip", k, a) for k in range(4) for a in range(2)] + \
      [("rotate", ang) for ang in range(-20, 20)]


class Forced:
    """Replaces python `random` and numpy's randint inside Load_Dataset for one call."""

    def __init__(self, rnd, ints):
        self.rnd, self.ints = list(rnd), list(ints)

    def random(self):
        return self.rnd.pop(0)

    def randint(self, lo, hi):
        v = self.ints.pop(0)
        assert lo <= v < hi, (lo, hi, v)
        return v


gen = LD.RandomGenerator(output_size=[224, 224])
real_random, real_randint = LD.random, np.random.randint
aug = {"images": AUG_IMAGES, "ops": [list(o) for o in ops], "exact_unit": True}
for name in AUG_IMAGES:
    sample, _ = raw_ds[raw_ds.images_list.index(name)]
    for j, op in enumerate(ops):
        if op[0] == "none":
            f = Forced([0.1, 0.1], [])
        elif op[0] == "rotflip":
            f = Forced([0.9], [op[1], op[2]])
        else:
            f = Forced([0.1, 0.9], [op[1]])
        LD.random, np.random.randint = f, f.randint
        try:
            out = gen({"image": sample["image"].copy(), "label": sample["label"].copy(),
                       "text": sample["text"]})
        finally:
            LD.random, np.random.randint = real_random, real_randint
        assert not f.rnd and not f.ints, "draws not consumed as expected"
        img = out["image"].numpy()
        lab = out["label"].numpy()
        u8 = np.rint(img * 255).astype(np.uint8)
        # The tensor is exactly uint8/255 (float32), so the uint8 file carries it losslessly.
        if not np.array_equal(torch.from_numpy(u8).float().div(255).numpy(), img):
            aug["exact_unit"] = False
        u8.tofile(os.path.join(OUT, f"aug/{name}.{j}.img.u8"))
        lab.astype(np.uint8).tofile(os.path.join(OUT, f"aug/{name}.{j}.mask.u8"))
aug["dtype_before_to_tensor"] = "uint8 (RandomGenerator casts to uint8, PIL, numpy uint8 after rot/rotate)"
# torch's uint8 -> float32 / 255 table, to check ours' v / 255 bit for bit.
wf32("aug/unit_table.f32", torch.arange(256, dtype=torch.uint8).float().div(255).numpy())


# Draw statistics of the official loader. (a) Real DataLoader of this torch (>= 1.9 seeds numpy
# per worker and epoch), official worker_init_fn, 8 workers, shuffle, batch 2, 24 samples, on a
# dummy 8x8 dataset that goes through RandomGenerator and records the branch taken.
class Rec:
    last = None


def rec_rot_flip(image, label):
    st = np.random.get_state()
    k, a = np.random.randint(0, 4), np.random.randint(0, 2)
    np.random.set_state(st)
    Rec.last = (1, k, a)
    return ORIG_RF(image, label)


def rec_rotate(image, label):
    st = np.random.get_state()
    ang = np.random.randint(-20, 20)
    np.random.set_state(st)
    Rec.last = (2, ang, 0)
    return ORIG_RR(image, label)


ORIG_RF, ORIG_RR = LD.random_rot_flip, LD.random_rotate


class DummySet(torch.utils.data.Dataset):
    def __len__(self):
        return 24

    def __getitem__(self, i):
        Rec.last = (0, 0, 0)
        s = gen8({"image": np.zeros((8, 8, 3), np.uint8), "label": np.zeros((8, 8, 1), np.uint8),
                  "text": np.zeros((10, 768), np.float32)})
        return torch.tensor([i, *Rec.last]), s["label"]


gen8 = LD.RandomGenerator(output_size=[8, 8])
wif_src = textwrap.dedent(source_of("train_model.py", "worker_init_fn"))
wif_ns = {"random": random, "config": config}
exec(wif_src, wif_ns)
LD.random_rot_flip, LD.random_rotate = rec_rot_flip, rec_rotate
random.seed(config.seed)
np.random.seed(config.seed)
torch.manual_seed(config.seed)
loader = torch.utils.data.DataLoader(DummySet(), batch_size=2, shuffle=True, num_workers=8,
                                     worker_init_fn=wif_ns["worker_init_fn"])
epochs_real = []
for e in range(3):
    rows = torch.cat([b[0] for b in loader]).tolist()
    epochs_real.append(rows)  # per position: [index, kind, k|angle, axis]
# (b) torch 1.8 (the official requirements.txt): numpy is not re-seeded in workers, so every
# worker starts each epoch from the main process's state after np.random.seed(666); python
# random is re-seeded 666 + worker_id. Batch b goes to worker b % 8; each worker runs its
# samples in order. Simulated by running RandomGenerator in-process with those states.
np.random.seed(config.seed)
main_state = np.random.get_state()
pos_ops = [None] * 24
for w in range(8):
    wif_ns["worker_init_fn"](w)
    np.random.set_state(main_state)
    for b in range(w, 12, 8):
        for j in range(2):
            Rec.last = (0, 0, 0)
            gen8({"image": np.zeros((8, 8, 3), np.uint8), "label": np.zeros((8, 8, 1), np.uint8),
                  "text": np.zeros((10, 768), np.float32)})
            pos_ops[2 * b + j] = list(Rec.last)
LD.random_rot_flip, LD.random_rotate = ORIG_RF, ORIG_RR


def kinds(rows):
    c = [0, 0, 0]
    for r in rows:
        c[r[0]] += 1
    return {"rotflip": c[1], "rotate": c[2], "none": c[0]}


aug["draws_torch_this"] = {
    "per_epoch_counts": [kinds([r[1:] for r in rows]) for rows in epochs_real],
    "kind_by_position_repeats": all([r[1] for r in rows] == [r[1] for r in epochs_real[0]]
                                    for rows in epochs_real),
    "params_by_position_repeat": all([r[1:] for r in rows] == [r[1:] for r in epochs_real[0]]
                                     for rows in epochs_real),
    "epoch1_positions": [r[1:] for r in epochs_real[0]],
}
aug["draws_torch_1_8"] = {"per_epoch_counts": kinds(pos_ops), "positions": pos_ops,
                          "note": "identical every epoch (kind and parameters)"}
report["aug"] = aug

# ------------------------------------------------------------------------------------------
# 3. Loss: WeightedDiceBCE(dice_weight=0.5, BCE_weight=0.5) as train_model.py builds it, called
# as Train_one_epoch does (preds [B,1,H,W] probabilities, masks.float() [B,H,W]).
crit = utils.WeightedDiceBCE(dice_weight=0.5, BCE_weight=0.5)
g = torch.Generator().manual_seed(7)
loss_cases = {}


def blob_mask(B, S, frac, gen_):
    m = torch.rand(B, S, S, generator=gen_) < frac
    return m.float()


CASES = {
    "random": (2, 2.0, [0.2, 0.2]),
    "one_empty": (2, 2.0, [0.2, 0.0]),
    "all_empty": (2, 2.0, [0.0, 0.0]),
    "saturated": (2, 25.0, [0.3, 0.1]),  # many probabilities exactly 0 or 1 in float32
}
for cname, (B, scale, fracs) in CASES.items():
    logits = (torch.randn(B, 1, 224, 224, generator=g) * scale).float()
    y = torch.stack([blob_mask(1, 224, f, g)[0] for f in fracs])
    res = {}
    for dt, tag in [(torch.float32, "f32"), (torch.float64, "f64")]:
        lg = logits.to(dt).clone().requires_grad_(True)
        p = torch.sigmoid(lg)
        p.retain_grad()
        loss = crit(p, y.to(dt))
        loss.backward()
        res[tag] = float(loss)
        write = wf32 if tag == "f32" else wf64
        write(f"loss/{cname}.dp.{tag}", p.grad.numpy())
        write(f"loss/{cname}.dlogits.{tag}", lg.grad.numpy())
    wf32(f"loss/{cname}.logits.f32", logits.numpy())
    wf32(f"loss/{cname}.p.f32", torch.sigmoid(logits).numpy())
    y.numpy().astype(np.uint8).tofile(os.path.join(OUT, f"loss/{cname}.y.u8"))
    # The loss of the float32 probabilities given directly (no sigmoid in the graph).
    pp = torch.sigmoid(logits).clone().requires_grad_(True)
    lp = crit(pp, y)
    lp.backward()
    wf32(f"loss/{cname}.dp_direct.f32", pp.grad.numpy())
    res["f32_direct"] = float(lp)
    res["p_exact_0_or_1"] = int(((torch.sigmoid(logits) == 0) | (torch.sigmoid(logits) == 1)).sum())
    res["B"] = B
    loss_cases[cname] = res
report["loss"] = loss_cases

# ------------------------------------------------------------------------------------------
# 4. Metrics. Probabilities of 8 images (4 batches of 2 as the val loader makes them) with
# special cases; validation as Train_one_epoch computes it (criterion._show_dice, then
# iou_on_batch on the same, now thresholded, preds), test as test_model.py (output > 0.5, then
# show_image_with_dice, whose source is executed from test_model.py).
S = 224
g = torch.Generator().manual_seed(11)
probs = torch.rand(8, 1, S, S, generator=g)
masks = (torch.rand(8, S, S, generator=g) < 0.2).long()
probs[1, 0, :100] = 0.5  # ties at the threshold: >= 0.5 counts them, > 0.5 does not
masks[1, :120] = 1
probs[2] = 0.2  # empty prediction, non-empty mask
masks[3] = 0  # empty mask, non-empty prediction
probs[4] = 0.3  # empty both
masks[4] = 0
probs[5] = 0.5  # all ties, empty mask
masks[5] = 0
probs[6] = 0.9  # all foreground
probs[7, 0][masks[7] == 1] = 0.75  # perfect prediction
probs[7, 0][masks[7] == 0] = 0.25
wf32("metrics/probs.f32", probs.numpy())
masks.numpy().astype(np.uint8).tofile(os.path.join(OUT, "metrics/masks.u8"))
val_dice_img, val_iou_img, val_dice_batch, val_iou_batch = [], [], [], []
dice_sum = iou_sum = 0.0
for b in range(4):
    pr = probs[2 * b:2 * b + 2].clone()
    mk = masks[2 * b:2 * b + 2].clone()
    d = float(crit._show_dice(pr, mk.float()))
    i = float(utils.iou_on_batch(mk, pr))
    val_dice_batch.append(d)
    val_iou_batch.append(i)
    dice_sum += 2 * d
    iou_sum += 2 * i
    for k in range(2):
        pr1 = probs[2 * b + k:2 * b + k + 1].clone()
        mk1 = masks[2 * b + k:2 * b + k + 1].clone()
        val_dice_img.append(float(crit._show_dice(pr1, mk1.float())))
        val_iou_img.append(float(utils.iou_on_batch(mk1, pr1)))
test_ns = {"np": np, "cv2": __import__("cv2"), "jaccard_score": utils.jaccard_score,
           "config": types.SimpleNamespace(task_name="MoNuSeg")}
exec(textwrap.dedent(source_of("test_model.py", "show_image_with_dice")), test_ns)
test_dice, test_iou = [], []
for k in range(8):
    output = probs[k:k + 1]
    pred_class = torch.where(output > 0.5, torch.ones_like(output), torch.zeros_like(output))
    predict_save = np.reshape(pred_class[0].cpu().data.numpy(), (S, S))
    lab = masks[k:k + 1].numpy()
    d, i = test_ns["show_image_with_dice"](predict_save, lab, os.path.join(OUT, "metrics/vis.jpg"))
    test_dice.append(float(d))
    test_iou.append(float(i))
report["metrics"] = {
    "val_dice_per_image": val_dice_img, "val_iou_per_image": val_iou_img,
    "val_dice_epoch_mean": dice_sum / 8, "val_iou_epoch_mean": iou_sum / 8,
    "test_dice_per_image": test_dice, "test_iou_per_image": test_iou,
    "test_dice_mean": sum(test_dice) / 8, "test_iou_mean": sum(test_iou) / 8,
}

# ------------------------------------------------------------------------------------------
# 5. Schedule and model selection. The optimiser and scheduler as train_model.py builds them,
# stepped as Train_one_epoch does (once, at the end of the validation pass); lr of each epoch's
# training = the group's lr before that epoch's step.
p0 = torch.nn.Parameter(torch.zeros(3))
opt = torch.optim.Adam([p0], lr=config.learning_rate)
sched = utils.CosineAnnealingWarmRestarts(opt, T_0=10, T_mult=1, eta_min=1e-4)
lrs = []
for epoch in range(60):
    lrs.append(min(gr["lr"] for gr in opt.param_groups))
    opt.step()
    sched.step()
report["schedule"] = {"lr": lrs, "config": {"lr": config.learning_rate, "epochs": config.epochs,
                                             "patience": config.early_stopping_patience,
                                             "batch_size": config.batch_size, "seed": config.seed}}

# Selection: the epoch loop of train_model.main_loop, its source text executed with stand-ins
# for training (a given val Dice per epoch), logging and saving.
src = open(os.path.join(OFFICIAL, "train_model.py")).read()
start = src.index("    max_dice = 0.0")
end = src.index("    return model", start)
loop_src = "def run_loop(seq):\n" + src[start:end] + "    return st_saved(), epoch + 1, best_epoch\n"


def selection_sequences():
    rng = np.random.RandomState(5)
    seqs = []
    for s in range(6):
        # Val Dice as (2m + 4e-5) / (m + 1000 + 4e-5) of an integer m (a prediction of m of the
        # mask's 1000 pixels): a rising, noisy, quantised curve that plateaus, with ties.
        n = 2000
        trend = 1000 * (1 - np.exp(-np.arange(n) / (15 + 20 * s)))
        m = np.clip(np.round(trend * rng.uniform(0.7, 1.0, n) / 10) * 10, 0, 1000).astype(int)
        if s == 0:
            m[:5] = 1000  # the best value in epochs 1-5, which never counts
        seqs.append(m.tolist())
    return seqs


class Stub:
    def __init__(self):
        self.saved = []

    def info(self, *a, **k):
        pass


sel = []
for m in selection_sequences():
    seq = [(2 * v + 4e-5) / (v + 1000 + 4e-5) for v in m]
    st = Stub()

    class Model:
        def train(self, mode=True):
            self.training = mode

        def eval(self):
            self.training = False

        def state_dict(self):
            return {}

    def train_one_epoch(loader, model, criterion, optimizer, writer, epoch, lr_scheduler, model_type,
                        logger):
        return (0.0, seq[epoch]) if not model.training else None

    def save_checkpoint(state, path):
        st.saved.append(state["epoch"] + 1)

    ns = {"config": config, "torch": torch, "logger": st, "model": Model(), "train_one_epoch":
          train_one_epoch, "save_checkpoint": save_checkpoint, "batch_size": 2, "model_type": "LViT",
          "train_loader": None, "val_loader": None, "criterion": None, "optimizer": types.SimpleNamespace(
              state_dict=lambda: {}), "writer": None, "lr_scheduler": None}
    ns["st_saved"] = lambda: list(st.saved)
    exec(loop_src, ns)
    saved, ran, best = ns["run_loop"](seq)
    sel.append({"m": m, "saved_epochs": saved, "epochs_run": ran, "best_epoch": best})
report["selection"] = sel

# ------------------------------------------------------------------------------------------
# 6. Adam as train_model.py configures it (lr only), 5 steps with given gradients and lrs.
g = torch.Generator().manual_seed(3)
n = 4096
w0 = torch.randn(n, generator=g)
grads = torch.randn(5, n, generator=g) * torch.logspace(-6, 1, n)[None]  # 1e-6 .. 10
grads[:, :64] = 0  # never any gradient: Adam must leave them exactly
grads[2, 64:128] = 0  # a zero gradient in one step
adam_lrs = [1e-3, 1e-3, 9.779754323328192e-4, 9.140576474687264e-4, 8.145033635316129e-4]
p = torch.nn.Parameter(w0.clone())
opt = torch.optim.Adam([p], lr=1e-3)
traj = []
for t in range(5):
    for gr in opt.param_groups:
        gr["lr"] = adam_lrs[t]
    p.grad = grads[t].clone()
    opt.step()
    traj.append(p.detach().clone())
p64 = torch.nn.Parameter(w0.clone().double())
opt64 = torch.optim.Adam([p64], lr=1e-3)
traj64 = []
for t in range(5):
    for gr in opt64.param_groups:
        gr["lr"] = adam_lrs[t]
    p64.grad = grads[t].clone().double()
    opt64.step()
    traj64.append(p64.detach().clone())
wf64("adam_traj.f64", torch.stack(traj64).numpy())
wf32("adam_w0.f32", w0.numpy())
wf32("adam_grads.f32", grads.numpy())
wf32("adam_traj.f32", torch.stack(traj).numpy())
report["adam"] = {"n": n, "lrs": adam_lrs, "defaults": {k: (list(v) if isinstance(v, tuple) else v)
                                                         for k, v in opt.defaults.items()
                                                         if isinstance(v, (int, float, tuple, bool))}}

# ------------------------------------------------------------------------------------------
# 7. Initialisation: statistics of every state_dict entry of the official LViT-T and U-Net
# (nets/UNet.py), built with seed 666; tensors under 4096 values pooled over 24 builds (seeds
# 666, 1..23), and those under 64 values (biases of the 1-output heads, the PLAM bottlenecks)
# sampled 2000 times more through their module's own reset_parameters(), i.e. torch's default
# initialisation as the official constructors leave it.
from nets.UNet import UNet  # noqa: E402

SMALL, POOL, DRAWS = 64, 4096, 2000


def stats(v):
    v = v.double()
    mean = float(v.mean())
    std = float(v.std(unbiased=False)) if v.numel() > 1 else 0.0
    kurt = float(((v - mean) ** 4).mean() / std ** 4) if std > 0 else None
    return {"n": v.numel(), "mean": mean, "std": std, "min": float(v.min()), "max": float(v.max()),
            "kurtosis": kurt}


def init_stats(build):
    torch.manual_seed(config.seed)
    model = build()
    sd = {k: v.detach().double().flatten().clone() for k, v in model.state_dict().items()}
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    pooled = {k: [v] for k, v in sd.items() if v.numel() < POOL}
    for s in range(1, 24):
        torch.manual_seed(s)
        m2 = build().state_dict()
        for k in pooled:
            pooled[k].append(m2[k].detach().double().flatten())
    torch.manual_seed(12345)
    for mname, mod in model.named_modules():
        # Only torch's default-initialised layers (the MLPs' custom init is never this small).
        if not isinstance(mod, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d,
                                torch.nn.ConvTranspose2d)) or ".mlp." in mname:
            continue
        own = dict(mod.named_parameters(recurse=False))
        small = [k for k, v in own.items() if v.numel() < SMALL]
        if not small:
            continue
        for _ in range(DRAWS):
            mod.reset_parameters()
            for k in small:
                pooled[f"{mname}.{k}"].append(own[k].detach().double().flatten().clone())
    out = []
    for k, v in sd.items():
        vv = torch.cat(pooled[k]) if k in pooled else v
        out.append({"name": k, "shape": shapes[k], "draws": len(pooled.get(k, [v])), **stats(vv)})
    return out, model


cfg = config.get_CTranS_config()
report["init"], model = init_stats(lambda: LViT(cfg, n_channels=3, n_classes=1))
report["init_unet"], _ = init_stats(lambda: UNet(n_channels=3, n_classes=1))
report["init_note"] = {"pool_below": POOL, "pool_builds": 24, "small_below": SMALL, "small_draws": DRAWS}

# ------------------------------------------------------------------------------------------
# 8. Training-mode behaviour. BN: one training forward of BatchNorm2d (and BatchNorm1d on the
# CTBN3 shape), then the running statistics and an eval forward.
g = torch.Generator().manual_seed(9)
bn_cases = {"bn2d": ([2, 4, 5, 5], torch.nn.BatchNorm2d(4)), "bn1d": ([2, 196, 64], torch.nn.BatchNorm1d(196))}
bn = {}
for bname, (shape, mod) in bn_cases.items():
    C = shape[1]
    with torch.no_grad():
        mod.weight.copy_(torch.rand(C, generator=g) + 0.5)
        mod.bias.copy_(torch.randn(C, generator=g) * 0.1)
        mod.running_mean.copy_(torch.randn(C, generator=g) * 0.1)
        mod.running_var.copy_(torch.rand(C, generator=g) + 0.5)
    init_state = {k: getattr(mod, k).detach().clone() for k in ["weight", "bias", "running_mean", "running_var"]}
    xs = [torch.randn(*shape, generator=g) * 2 + 0.3 for _ in range(3)]
    mod.train()
    ys = [mod(x).detach() for x in xs]
    mod.eval()
    ye = mod(xs[0]).detach()
    for k, v in init_state.items():
        wf32(f"{bname}.{k}.f32", v.numpy())
    wf32(f"{bname}.x.f32", torch.stack(xs).numpy())
    wf32(f"{bname}.ytrain.f32", torch.stack(ys).numpy())
    wf32(f"{bname}.yeval.f32", ye.numpy())
    wf32(f"{bname}.running_mean_after.f32", mod.running_mean.numpy())
    wf32(f"{bname}.running_var_after.f32", mod.running_var.numpy())
    bn[bname] = {"shape": shape, "momentum": mod.momentum, "eps": mod.eps,
                 "num_batches_tracked": int(mod.num_batches_tracked)}
report["bn"] = bn

# Dropout: which nn.Dropout modules run in a training forward, and their p.
calls = []
hooks = []
for mname, mod in model.named_modules():
    if isinstance(mod, torch.nn.Dropout):
        hooks.append(mod.register_forward_hook(lambda m, i, o, mname=mname: calls.append((mname, m.p))))
model.train()
with torch.no_grad():
    model(torch.rand(1, 3, 224, 224), torch.randn(1, 10, 768))
for h in hooks:
    h.remove()
report["dropout"] = {
    "calls": len(calls), "calls_p_gt_0": sum(1 for _, pp in calls if pp > 0),
    "ps": sorted(set(pp for _, pp in calls)),
    "sites": sorted(set(n for n, pp in calls if pp > 0)),
    "modules": sum(1 for m in model.modules() if isinstance(m, torch.nn.Dropout)),
}

json.dump(report, open(os.path.join(OUT, "official.json"), "w"), indent=1)
print("official: wrote", os.path.join(OUT, "official.json"))
