/**
 * A fused layer norm over the last axis, built like the fused batch norm (norm.ts): `ln_stats`
 * computes per-row statistics and `ln_apply` differentiates through them itself, with two
 * backward ops of its own. R rows of C channels.
 */
import { defineOp, type OpDef, type Tensor } from "../graph.ts";
import { type Shape, ShapeError } from "../shape.ts";
import { reshape, slice } from "./shape_ops.ts";
import { rows, sameAs0 } from "./transformer.ts";

/** Attributes of the layer-norm ops: eps. */
export type LnAttrs = { eps: number };

/** Rows R of C channels of a layer norm over the last axis of ins[0]. */
export function lnGeom(op: string, ins: Shape[]): { R: number; C: number } {
  const { R, L } = rows(op, ins);
  return { R, C: L };
}

function expectShape(op: string, ins: Shape[], k: number, want: number[], what: string) {
  if (ins[k].join() !== want.join()) {
    throw new ShapeError(op, ins, `${what} (input ${k}) must be [${want.join(", ")}]`);
  }
}

/** xhat of element (r, c) in float64, the shared core of the references. */
function refXhat(x: Float64Array, s: Float64Array, R: number, C: number, eps: number) {
  const e = Math.fround(eps);
  const xh = new Float64Array(x.length);
  for (let r = 0; r < R; r++) {
    const inv = 1 / Math.sqrt(s[R + r] + e);
    for (let c = 0; c < C; c++) xh[r * C + c] = (x[r * C + c] - s[r]) * inv;
  }
  return xh;
}

/** The `ln_stats` op. */
export const lnStatsDef: OpDef = defineOp({
  name: "ln_stats",
  arity: 1,
  shape: (ins) => [2, lnGeom("ln_stats", ins).R],
  grad: () => {
    throw new Error("ln_stats is differentiable only through ln_apply of the same input");
  },
  ref: (ins, shapes) => {
    const { R, C } = lnGeom("ln_stats", shapes);
    const x = ins[0];
    const out = new Float64Array(2 * R);
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += x[r * C + c];
      const m = s / C;
      let v = 0;
      for (let c = 0; c < C; c++) v += (x[r * C + c] - m) ** 2;
      out[r] = m;
      out[R + r] = v / C;
    }
    return out;
  },
});

/** The `ln_apply` op. */
export const lnApplyDef: OpDef<LnAttrs> = defineOp({
  name: "ln_apply",
  arity: 4,
  shape: (ins) => {
    const { R, C } = lnGeom("ln_apply", ins);
    expectShape("ln_apply", ins, 1, [2, R], "stats");
    expectShape("ln_apply", ins, 2, [C], "gamma");
    expectShape("ln_apply", ins, 3, [C], "beta");
    return ins[0];
  },
  grad: ({ x, dy, attrs }) => {
    const [xi, stats, gamma] = x;
    if (stats.op !== "ln_stats" || stats.inputs[0] !== xi) {
      throw new Error("ln_apply: stats must be ln_stats of the same input to be differentiated");
    }
    const C = gamma.shape[0];
    const ps = dy.graph.apply("ln_bwd_params", [xi, stats, dy], attrs);
    return [
      dy.graph.apply("ln_bwd_data", [xi, stats, gamma, dy], attrs),
      null,
      reshape(slice(ps, 0, 0, 1), [C]),
      reshape(slice(ps, 0, 1, 1), [C]),
    ];
  },
  ref: (ins, shapes, a) => {
    const { R, C } = lnGeom("ln_apply", shapes);
    const [x, s, gm, bt] = ins;
    const y = refXhat(x, s, R, C, a.eps);
    for (let i = 0; i < y.length; i++) y[i] = y[i] * gm[i % C] + bt[i % C];
    return y;
  },
});

/** The `ln_bwd_data` op. */
export const lnBwdDataDef: OpDef<LnAttrs> = defineOp({
  name: "ln_bwd_data",
  arity: 4,
  shape: (ins) => {
    const { R, C } = lnGeom("ln_bwd_data", ins);
    expectShape("ln_bwd_data", ins, 1, [2, R], "stats");
    expectShape("ln_bwd_data", ins, 2, [C], "gamma");
    sameAs0("ln_bwd_data", ins, 3, "dy");
    return ins[0];
  },
  ref: (ins, shapes, a) => {
    const { R, C } = lnGeom("ln_bwd_data", shapes);
    const [x, s, gm, dy] = ins;
    const xh = refXhat(x, s, R, C, a.eps);
    const dx = new Float64Array(x.length);
    for (let r = 0; r < R; r++) {
      const inv = 1 / Math.sqrt(s[R + r] + Math.fround(a.eps));
      let s1 = 0, s2 = 0;
      for (let c = 0; c < C; c++) {
        const g = dy[r * C + c] * gm[c];
        s1 += g;
        s2 += g * xh[r * C + c];
      }
      for (let c = 0; c < C; c++) {
        const i = r * C + c;
        dx[i] = inv * (dy[i] * gm[c] - s1 / C - xh[i] * s2 / C);
      }
    }
    return dx;
  },
});

/** The `ln_bwd_params` op. */
export const lnBwdParamsDef: OpDef<LnAttrs> = defineOp({
  name: "ln_bwd_params",
  arity: 3,
  shape: (ins) => {
    const { R, C } = lnGeom("ln_bwd_params", ins);
    expectShape("ln_bwd_params", ins, 1, [2, R], "stats");
    sameAs0("ln_bwd_params", ins, 2, "dy");
    return [2, C];
  },
  ref: (ins, shapes, a) => {
    const { R, C } = lnGeom("ln_bwd_params", shapes);
    const [x, s, dy] = ins;
    const xh = refXhat(x, s, R, C, a.eps);
    const out = new Float64Array(2 * C);
    for (let c = 0; c < C; c++) {
      for (let r = 0; r < R; r++) {
        out[c] += dy[r * C + c] * xh[r * C + c];
        out[C + c] += dy[r * C + c];
      }
    }
    return out;
  },
});

/** Per-row statistics [2, R] (mean, biased variance) over the last axis of x. */
export const lnStatsOf = (x: Tensor) => x.graph.apply("ln_stats", [x]);

/** Layer norm from `lnStatsOf(x)`, differentiable through the statistics. */
export const lnApplyOp = (x: Tensor, stats: Tensor, gamma: Tensor, beta: Tensor, eps: number) =>
  x.graph.apply("ln_apply", [x, stats, gamma, beta], { eps });

/** torch.nn.LayerNorm over the last axis (elementwise affine gamma, beta [C]), fused. */
export function layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps = 1e-5): Tensor {
  return lnApplyOp(x, lnStatsOf(x), gamma, beta, eps);
}
