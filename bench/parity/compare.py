"""usage: compare.py <out dir name, e.g. gtunet or gtunet-stress>. Compares out/<name>/{probs,logits}.f32 (official) with ours_{probs,logits}.f32."""
import sys, os, json
import numpy as np
name = sys.argv[1]
d = os.path.join(os.environ.get("PARITY_OUT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")), name)
res = {}
for k in ["probs", "logits"]:
    a = np.fromfile(os.path.join(d, f"{k}.f32"), "<f4").astype(np.float64)
    p = os.path.join(d, f"ours_{k}.f32")
    if not os.path.exists(p):
        res[k] = "ours: none"; continue
    b = np.fromfile(p, "<f4").astype(np.float64)
    if a.shape != b.shape:
        res[k] = f"shape mismatch {a.shape} vs {b.shape}"; continue
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(a), 1e-6)
    res[k] = dict(max_abs=float(diff.max()), mean_abs=float(diff.mean()),
                  max_rel=float(rel.max()), max_abs_official=float(np.abs(a).max()),
                  argmax=int(diff.argmax()),
                  max_rel_where_abs_gt_0_1=float(rel[np.abs(a) > 0.1].max()))
for k in ["probs", "logits"]:
    r64 = np.fromfile(os.path.join(d, f"{k}64.f64"), "<f8") if os.path.exists(os.path.join(d, f"{k}64.f64")) else None
    if r64 is None: continue
    a = np.fromfile(os.path.join(d, f"{k}.f32"), "<f4").astype(np.float64)
    res[k]["official_f32_vs_f64_max_abs"] = float(np.abs(a - r64).max())
    p = os.path.join(d, f"ours_{k}.f32")
    if os.path.exists(p):
        b = np.fromfile(p, "<f4").astype(np.float64)
        res[k]["ours_vs_official_f64_max_abs"] = float(np.abs(b - r64).max())
json.dump(res, open(os.path.join(d, "compare.json"), "w"), indent=1)
print(name, json.dumps(res, indent=1))
