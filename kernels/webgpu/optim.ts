/**
 * The effect ops in WGSL: `assign` and `adam` overwrite their in-place inputs (bindings
 * `inplace`), one invocation per element.
 */
import type { AdamAttrs } from "../../lib/graph/ops/optim.ts";
import type { KernelPlan } from "./types.ts";
import { ceilDiv, entry, f32, storageDecl, u32, WG } from "./common.ts";

/** dst = src over n elements (dst a param or state). */
export function assignKernel(n: number): KernelPlan {
  return {
    kernels: [{
      code: `${storageDecl(0, "dst", true)}\n${storageDecl(1, "src", false)}\n${
        entry(`  if (gi >= ${u32(n)}) { return; }\n  dst[gi] = src[gi];`)
      }`,
      bindings: [{ inplace: 0 }, { in: 1 }],
      workgroups: ceilDiv(n, WG),
    }],
  };
}

/** One Adam / AdamW step of p, m, v over n elements; h = [lr, 1 - beta1^t, 1 - beta2^t]. */
export function adamKernel(n: number, a: AdamAttrs): KernelPlan {
  const wd = a.weightDecay;
  const code = [
    storageDecl(0, "p", true),
    storageDecl(1, "g", false),
    storageDecl(2, "m", true),
    storageDecl(3, "v", true),
    storageDecl(4, "h", false),
    entry(`  if (gi >= ${u32(n)}) { return; }
  let lr = h[0];
  var gr = g[gi];
  var pv = p[gi];
  ${wd && !a.decoupled ? `gr = gr + ${f32(wd)} * pv;` : ""}
  ${wd && a.decoupled ? `pv = pv * (1.0 - lr * ${f32(wd)});` : ""}
  let mv = ${f32(a.beta1)} * m[gi] + ${f32(1 - a.beta1)} * gr;
  let vv = ${f32(a.beta2)} * v[gi] + ${f32(1 - a.beta2)} * gr * gr;
  m[gi] = mv;
  v[gi] = vv;
  p[gi] = pv - (lr / h[1]) * mv / (sqrt(vv) / sqrt(h[2]) + ${f32(a.eps)});`),
  ].join("\n");
  return {
    kernels: [{
      code,
      bindings: [{ inplace: 0 }, { in: 1 }, { inplace: 2 }, { inplace: 3 }, { in: 4 }],
      workgroups: ceilDiv(n, WG),
    }],
  };
}
