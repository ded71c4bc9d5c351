"""GT U-Net: how much the probabilities depend on the relative-position tables (all zeroed, or
only the row table h, or only Conv5's), on the saved weights and input of out/gtunet."""
import os, sys
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.environ.get("PARITY_OFFICIAL", os.path.join(HERE, "official")), "gtunet"))
import torch
torch.set_num_threads(1)
torch.Tensor.cuda = lambda self, *a, **k: self
from models.GT_UNet import GT_U_Net
S, B = 128, 2
d = os.path.join(os.environ.get("PARITY_OUT", os.path.join(HERE, "out")), "gtunet")
sd = torch.load(os.path.join(d, "weights.pth"))
x = torch.from_numpy(__import__("numpy").fromfile(os.path.join(d, "input.f32"), "<f4").reshape(B, 3, S, S))
m = GT_U_Net(3, 1); m.load_state_dict(sd); m.eval()
with torch.no_grad():
    p0 = torch.sigmoid(m(x))
for label, sel in [("all rel_emb", lambda k: "rel_emb" in k), ("all rel_emb_h", lambda k: "rel_emb_h" in k),
                   ("Conv5 rel_emb", lambda k: k.startswith("Conv5") and "rel_emb" in k),
                   ("rel_emb_h flipped (index reversed) everywhere", None)]:
    sd2 = {k: v.clone() for k, v in sd.items()}
    for k in sd2:
        if sel is None:
            if "rel_emb_h" in k: sd2[k] = sd2[k].flip(0)
        elif sel(k):
            sd2[k].zero_()
    m.load_state_dict(sd2)
    with torch.no_grad():
        p = torch.sigmoid(m(x))
    print(f"{label}: max |dp| = {float((p - p0).abs().max()):.3e}")
