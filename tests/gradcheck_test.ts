/**
 * Finite-difference check of a whole network in the float64 reference: a tiny U-Net (conv,
 * batch norm in training mode, ReLU, max-pool, transposed conv, concat, sigmoid) under the
 * reference segmentation loss. This validates every gradient rule composed together, which the
 * per-op checks cannot (e.g. batch-norm statistics feeding several consumers).
 */
import { gradients, Graph } from "../lib/graph/mod.ts";
import { initValues } from "../lib/graph/init.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { unet } from "../lib/models/unet.ts";
import { segLoss } from "../lib/train/loss.ts";
import { assertClose, randn } from "./harness.ts";

Deno.test("whole U-Net + loss: autodiff matches central finite differences (float64)", () => {
  const g = new Graph();
  const x = g.input("x", [2, 3, 4, 6]);
  const y = g.input("y", [2, 1, 4, 6]);
  const p = unet({ g, training: true }, x, { widths: [2, 3] });
  const loss = segLoss(p, y);
  const params = g.params();
  const grads = gradients(loss, params);
  const leaves = new Map<string, Float64Array>();
  leaves.set("x", randn(x.size, 5));
  leaves.set("y", Float64Array.from(randn(y.size, 6), (v) => (v > 0.3 ? 1 : 0)));
  g.leaves().forEach((t, i) => {
    if (t.init) {
      const v = Float64Array.from(initValues(t.init, t.shape, 11, i));
      // BN weights start at exactly 1 and biases at 0; perturb them so no symmetry hides a bug.
      if (t.init.kind === "const") v.forEach((_, k) => (v[k] += 0.3 * Math.sin(7 * k + i)));
      leaves.set(t.name!, v);
    }
  });
  const outs: Record<string, typeof loss> = {};
  params.forEach((t, i) => (outs[t.name!] = grads[i]));
  const auto = runRef(outs, leaves);
  const eps = 1e-6;
  let checked = 0;
  for (const t of params) {
    const v = leaves.get(t.name!)!;
    const fd = new Float64Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const v0 = v[i];
      v[i] = v0 + eps;
      const lp = runRef({ l: loss }, leaves).l[0];
      v[i] = v0 - eps;
      const lm = runRef({ l: loss }, leaves).l[0];
      v[i] = v0;
      fd[i] = (lp - lm) / (2 * eps);
      checked++;
    }
    // Central differences in float64: truncation ~eps^2, round-off ~1e-16/eps = 1e-10.
    assertClose(`d loss / d ${t.name}`, auto[t.name!], fd, 1e-7, 1e-5);
  }
  if (checked < 300) throw new Error(`only ${checked} parameters checked`);
});
