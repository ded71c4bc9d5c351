"""Builds one official model (eval), randomises BN stats etc., saves state_dict (.pth zip),
input, logits and probabilities as raw float32 LE, plus selected intermediate activations.
usage: official.py {unetpp,gtunet,uctransnet} SIZE [stress]
The official code is read from $PARITY_OFFICIAL/{smp,gtunet,uct} (see README.md); output goes to
$PARITY_OUT/<name>[-tag]/."""
import os, sys, types, json
HERE = os.path.dirname(os.path.abspath(__file__))
OFFICIAL = os.environ.get("PARITY_OFFICIAL", os.path.join(HERE, "official"))
# Stand-ins for packages the official code imports but does not need here (torchvision,
# ml_collections, pretrainedmodels), where they are not installed: PARITY_STUBS, if set.
if os.environ.get("PARITY_STUBS"):
    sys.path.insert(0, os.environ["PARITY_STUBS"])
import torch
import torch.nn as nn
torch.set_num_threads(1)

name, S = sys.argv[1], int(sys.argv[2])
B = 2
TAG = sys.argv[3] if len(sys.argv) > 3 else ""  # "stress": larger attention-only weights
OUT = os.path.join(os.environ.get("PARITY_OUT", os.path.join(HERE, "out")),
                   name + ("-" + TAG if TAG else ""))
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)


def build_unetpp():
    root = os.path.join(OFFICIAL, "smp", "segmentation_models_pytorch")
    pkg = types.ModuleType("segmentation_models_pytorch"); pkg.__path__ = [root]
    sys.modules[pkg.__name__] = pkg
    enc = types.ModuleType("segmentation_models_pytorch.encoders"); enc.__path__ = [root + "/encoders"]
    sys.modules[enc.__name__] = enc
    from segmentation_models_pytorch.encoders.resnet import resnet_encoders

    def get_encoder(name, in_channels=3, depth=5, weights=None):  # smp's get_encoder, weights=None
        assert weights is None
        params = dict(resnet_encoders[name]["params"]); params.update(depth=depth)
        e = resnet_encoders[name]["encoder"](**params)
        e.set_in_channels(in_channels, pretrained=False)
        return e
    enc.get_encoder = get_encoder
    from segmentation_models_pytorch.unetplusplus.model import UnetPlusPlus
    m = UnetPlusPlus(encoder_name="resnet34", encoder_weights=None, in_channels=3, classes=1,
                     activation="sigmoid")
    return m, m.segmentation_head[0]


def build_gtunet():
    torch.Tensor.cuda = lambda self, *a, **k: self  # official rel_to_abs calls .cuda()
    sys.path.insert(0, os.path.join(OFFICIAL, "gtunet"))
    from models.GT_UNet import GT_U_Net
    m = GT_U_Net(img_ch=3, output_ch=1)
    return m, m.Conv_1x1


def build_uctransnet():
    sys.path.insert(0, os.path.join(OFFICIAL, "uct"))
    import Config
    from nets.UCTransNet import UCTransNet
    m = UCTransNet(Config.get_CTranS_config(), n_channels=3, n_classes=1, img_size=S, vis=False)
    return m, m.outc


model, head = {"unetpp": build_unetpp, "gtunet": build_gtunet,
               "uctransnet": build_uctransnet}[name]()

# Non-trivial values where the official init is degenerate for a parity check.
g = torch.Generator().manual_seed(1234)
with torch.no_grad():
    for mn, mod in model.named_modules():
        if isinstance(mod, nn.BatchNorm2d):
            C = mod.num_features
            mod.weight.copy_(torch.rand(C, generator=g) + 0.5)
            mod.bias.copy_(torch.randn(C, generator=g) * 0.1)
            mod.running_mean.copy_(torch.randn(C, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(C, generator=g) + 0.5)
            mod.num_batches_tracked.fill_(7)
        if isinstance(mod, nn.LayerNorm):
            C = mod.normalized_shape[0]
            mod.weight.copy_(torch.rand(C, generator=g) + 0.5)
            mod.bias.copy_(torch.randn(C, generator=g) * 0.1)
    for pn, p in model.named_parameters():
        if pn.endswith("position_embeddings"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        if pn.endswith("_proj.w"):  # GT U-Net q/k/v, init std 0.01 gives uniform attention
            p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p.shape[0] ** 0.5))
        if TAG == "stress" and "rel_emb" in pn:  # GT U-Net relative-position tables x8
            p.mul_(8.0)
        if TAG == "stress" and ".channel_attn.key." in pn:  # UCTransNet keys x4: sharper softmax
            p.mul_(4.0)
        if name == "unetpp" and pn == "segmentation_head.0.bias":
            p.fill_(0.05)
model.eval()

x = torch.rand(B, 3, S, S, generator=torch.Generator().manual_seed(7))

# Rescale the 1-channel head so that the logits have std ~2 (sigmoid neither flat nor saturated).
_cap = {}
_h = head.register_forward_hook(lambda m, i, o: _cap.__setitem__("l", o.detach()))
with torch.no_grad():
    model(x)
    _h.remove()
    l = _cap["l"] - head.bias.view(1, -1, 1, 1)
    f = 2.0 / float(l.std())
    head.weight.mul_(f)
    head.bias.fill_(0.1)
print("head weight scaled by", f)

sd = model.state_dict()
torch.save(sd, os.path.join(OUT, "weights.pth"), _use_new_zipfile_serialization=True)
info = {
    "state_dict_entries": len(sd),
    "state_dict_numel": int(sum(t.numel() for t in sd.values())),
    "parameters_numel": int(sum(p.numel() for p in model.parameters())),
    "buffers_numel": int(sum(b.numel() for b in model.buffers())),
    "names": [[k, list(v.shape)] for k, v in sd.items()],
}

x.numpy().astype("<f4").tofile(os.path.join(OUT, "input.f32"))

acts = {}
def hook(n):
    def f(m, i, o):
        t = o[0] if isinstance(o, tuple) else o
        if torch.is_tensor(t):
            acts[n] = t.detach().clone()
    return f
watch = {
    "unetpp": ["encoder", "decoder.blocks.x_0_0", "decoder.blocks.x_3_3", "decoder.blocks.x_0_3",
               "decoder"],
    "gtunet": ["Conv1", "Conv2", "Conv3", "Conv4", "Conv5", "Up_conv5", "Up_conv4", "Up_conv3",
               "Up_conv2", "Conv1.0.mhsa", "Conv1.0.conv3", "Conv1.0.shortcut"],
    "uctransnet": ["inc", "down1", "down2", "down3", "down4", "mtc.embeddings_1",
                   "mtc.encoder.layer.0", "mtc.reconstruct_1", "up4", "up3", "up2", "up1"],
}[name]
mods = dict(model.named_modules())
hs = [mods[n].register_forward_hook(hook(n)) for n in watch]
hs.append(head.register_forward_hook(hook("__logits")))
with torch.no_grad():
    out = model(x)
for h in hs:
    h.remove()
logits = acts.pop("__logits")
probs = torch.sigmoid(out) if name == "gtunet" else out
logits.numpy().astype("<f4").tofile(os.path.join(OUT, "logits.f32"))
probs.numpy().astype("<f4").tofile(os.path.join(OUT, "probs.f32"))
act_info = {}
for n, t in acts.items():
    if isinstance(t, list):
        continue
    t.numpy().astype("<f4").tofile(os.path.join(OUT, f"act_{n}.f32"))
    act_info[n] = list(t.shape)
info.update(size=S, batch=B, out_shape=list(probs.shape), activations=act_info,
            probs_range=[float(probs.min()), float(probs.max())],
            logits_range=[float(logits.min()), float(logits.max())])
json.dump(info, open(os.path.join(OUT, "official.json"), "w"), indent=1)
print(name, S, "entries", len(sd), "params", info["parameters_numel"], "sd numel",
      info["state_dict_numel"], "out", list(probs.shape), "probs", info["probs_range"],
      "logits", info["logits_range"])

# float64 reference of the same model and input (float32 rounding level of the official code).
import copy
m64 = copy.deepcopy(model).double()
h64 = {}
hh = dict(m64.named_modules())[[n for n, mm in model.named_modules() if mm is head][0]]
hk = hh.register_forward_hook(lambda m, i, o: h64.__setitem__("l", o.detach()))
_float = torch.Tensor.float
torch.Tensor.float = lambda self, *a, **k: self  # official forwards call .float(); keep float64
with torch.no_grad():
    o64 = m64(x.double())
torch.Tensor.float = _float
hk.remove()
p64 = torch.sigmoid(o64) if name == "gtunet" else o64
p64.numpy().astype("<f8").tofile(os.path.join(OUT, "probs64.f64"))
h64["l"].numpy().astype("<f8").tofile(os.path.join(OUT, "logits64.f64"))

# Sensitivity: how much the probabilities move when one deep weight is perturbed (shows that the
# branch the weight sits in reaches the output, so a parity below this level means something).
probe = {
    "unetpp": ["encoder.layer4.2.conv2.weight", "decoder.blocks.x_2_3.conv1.0.weight",
               "encoder.layer1.0.bn1.running_var"],
    "gtunet": ["Conv5.0.mhsa.self_attention.rel_emb_h", "Conv1.0.mhsa.k_proj.w",
               "Up_conv2.0.mhsa.q_proj.w", "Up_conv2.0.conv3.1.norm.running_mean"],
    "uctransnet": ["mtc.encoder.layer.3.channel_attn.key.2.weight",
                   "mtc.encoder.layer.0.channel_attn.query1.0.weight",
                   "mtc.embeddings_4.position_embeddings", "up1.coatt.mlp_g.1.weight"],
}[name]
sens = {}
for pn in probe:
    m2 = copy.deepcopy(model)
    t = m2.state_dict()[pn]
    with torch.no_grad():
        t.add_(torch.randn(t.shape, generator=torch.Generator().manual_seed(3)) * 0.01 * float(t.abs().mean()))
        o2 = m2(x)
    p2 = torch.sigmoid(o2) if name == "gtunet" else o2
    sens[pn] = float((p2 - probs).abs().max())
print("sensitivity (max |dp| for a 1% perturbation):", sens)
info["sensitivity_1pct"] = sens
json.dump(info, open(os.path.join(OUT, "official.json"), "w"), indent=1)
