/**
 * Fused batch normalisation for training mode. Composed from elementwise ops and sums, one
 * BatchNorm costs ~20 passes over the activation in forward and backward; fused it costs four
 * (statistics, apply, backward sums, backward data). The composed form stays available
 * (`batchNorm2d(..., { fused: false })`) and the tests check the two against each other.
 *
 * `bn_apply` differentiates through the batch statistics itself, so its `stats` input must be
 * `bn_stats` of the same x and gets no gradient of its own; `bn_stats` refuses any other
 * gradient path. That contract is checked when the gradient graph is built.
 */
import { defineOp, type OpDef, type Tensor } from "../graph.ts";
import { type Shape, ShapeError } from "../shape.ts";
import { reshape, slice } from "./shape_ops.ts";

/** x [B, C, ...] as B x C x HW, the spatial axes flattened. */
export interface BnGeom {
  B: number;
  C: number;
  HW: number;
}

/** The geometry of a batch norm of ins[0], or a ShapeError naming `op`. */
export function bnGeom(op: string, ins: Shape[]): BnGeom {
  const x = ins[0];
  if (x.length < 2) throw new ShapeError(op, ins, "expects x [B, C, ...]");
  const HW = x.slice(2).reduce((a, b) => a * b, 1);
  return { B: x[0], C: x[1], HW };
}

function expectStats(op: string, ins: Shape[], k: number, C: number) {
  if (ins[k].length !== 2 || ins[k][0] !== 2 || ins[k][1] !== C) {
    throw new ShapeError(op, ins, `input ${k} must be [2, ${C}]`);
  }
}

function expectVec(op: string, ins: Shape[], k: number, C: number) {
  if (ins[k].length !== 1 || ins[k][0] !== C) {
    throw new ShapeError(op, ins, `input ${k} must be [${C}]`);
  }
}

/** Visits x in (channel, n, hw) order: the fixed summation order of every reference loop. */
function perChannel(g: BnGeom, f: (c: number, i: number) => void) {
  for (let c = 0; c < g.C; c++) {
    for (let b = 0; b < g.B; b++) {
      const base = (b * g.C + c) * g.HW;
      for (let j = 0; j < g.HW; j++) f(c, base + j);
    }
  }
}

function statsInto(g: BnGeom, x: ArrayLike<number>, out: { [i: number]: number }) {
  const n = g.B * g.HW;
  for (let c = 0; c < g.C; c++) {
    let s = 0;
    for (let b = 0; b < g.B; b++) {
      const base = (b * g.C + c) * g.HW;
      for (let j = 0; j < g.HW; j++) s += x[base + j];
    }
    const m = s / n;
    let v = 0;
    for (let b = 0; b < g.B; b++) {
      const base = (b * g.C + c) * g.HW;
      for (let j = 0; j < g.HW; j++) {
        const d = x[base + j] - m;
        v += d * d;
      }
    }
    out[c] = m;
    out[g.C + c] = v / n;
  }
}

/** eps, and whether a ReLU follows (fused: forward clamps, backward masks dy by y > 0). */
export type BnAttrs = { eps: number; relu?: boolean };

/** The `bn_stats` op. */
export const bnStatsDef: OpDef = defineOp({
  name: "bn_stats",
  arity: 1,
  shape: (ins) => [2, bnGeom("bn_stats", ins).C],
  grad: () => {
    throw new Error("bn_stats is differentiable only through bn_apply of the same input");
  },
  ref: (ins, shapes) => {
    const out = new Float64Array(2 * shapes[0][1]);
    statsInto(bnGeom("bn_stats", shapes), ins[0], out);
    return out;
  },
});

/** The `bn_apply` op. */
export const bnApplyDef: OpDef<BnAttrs> = defineOp({
  name: "bn_apply",
  arity: 4,
  shape: (ins) => {
    const g = bnGeom("bn_apply", ins);
    expectStats("bn_apply", ins, 1, g.C);
    expectVec("bn_apply", ins, 2, g.C);
    expectVec("bn_apply", ins, 3, g.C);
    return ins[0];
  },
  grad: ({ x, y, dy, attrs }) => {
    const [xi, stats, gamma] = x;
    if (stats.op !== "bn_stats" || stats.inputs[0] !== xi) {
      throw new Error("bn_apply: stats must be bn_stats of the same input to be differentiated");
    }
    // With a fused ReLU the output itself is the mask: y > 0 exactly where the input of the
    // ReLU was positive.
    const mask = attrs.relu ? [y] : [];
    const sums = dy.graph.apply("bn_bwd_sums", [xi, stats, dy, ...mask], attrs);
    const C = gamma.shape[0];
    return [
      dy.graph.apply("bn_bwd_data", [xi, stats, gamma, dy, sums, ...mask], attrs),
      null,
      reshape(slice(sums, 0, 0, 1), [C]),
      reshape(slice(sums, 0, 1, 1), [C]),
    ];
  },
  ref: (ins, shapes, a) => {
    const g = bnGeom("bn_apply", shapes);
    const [x, s, gm, bt] = ins;
    const y = new Float64Array(x.length);
    perChannel(g, (c, i) => {
      const v = (x[i] - s[c]) / Math.sqrt(s[g.C + c] + Math.fround(a.eps)) * gm[c] + bt[c];
      y[i] = a.relu ? Math.max(v, 0) : v;
    });
    return y;
  },
});

function maskArity(op: string, ins: Shape[], n: number, a: BnAttrs) {
  if (ins.length !== n + (a.relu ? 1 : 0)) {
    throw new ShapeError(op, ins, `expects ${n} inputs${a.relu ? " and the ReLU output y" : ""}`);
  }
  if (a.relu && ins[n].join() !== ins[0].join()) throw new ShapeError(op, ins, "y must match x");
}

/** The `bn_bwd_sums` op. */
export const bnBwdSumsDef: OpDef<BnAttrs> = defineOp({
  name: "bn_bwd_sums",
  shape: (ins, a) => {
    const g = bnGeom("bn_bwd_sums", ins);
    maskArity("bn_bwd_sums", ins, 3, a);
    expectStats("bn_bwd_sums", ins, 1, g.C);
    if (ins[2].join() !== ins[0].join()) {
      throw new ShapeError("bn_bwd_sums", ins, "dy must match x");
    }
    return [2, g.C];
  },
  ref: (ins, shapes, a) => {
    const g = bnGeom("bn_bwd_sums", shapes);
    const [x, s, dy, y] = ins;
    const out = new Float64Array(2 * g.C);
    perChannel(g, (c, i) => {
      const d = a.relu && !(y[i] > 0) ? 0 : dy[i];
      out[c] += d * (x[i] - s[c]) / Math.sqrt(s[g.C + c] + Math.fround(a.eps));
      out[g.C + c] += d;
    });
    return out;
  },
});

/** The `bn_bwd_data` op. */
export const bnBwdDataDef: OpDef<BnAttrs> = defineOp({
  name: "bn_bwd_data",
  shape: (ins, a) => {
    const g = bnGeom("bn_bwd_data", ins);
    maskArity("bn_bwd_data", ins, 5, a);
    expectStats("bn_bwd_data", ins, 1, g.C);
    expectVec("bn_bwd_data", ins, 2, g.C);
    expectStats("bn_bwd_data", ins, 4, g.C);
    return ins[0];
  },
  ref: (ins, shapes, a) => {
    const g = bnGeom("bn_bwd_data", shapes);
    const [x, s, gm, dy, ps, y] = ins;
    const n = g.B * g.HW;
    const dx = new Float64Array(x.length);
    perChannel(g, (c, i) => {
      const inv = 1 / Math.sqrt(s[g.C + c] + Math.fround(a.eps));
      const xh = (x[i] - s[c]) * inv;
      const d = a.relu && !(y[i] > 0) ? 0 : dy[i];
      dx[i] = gm[c] * inv * (d - (ps[g.C + c] + xh * ps[c]) / n);
    });
    return dx;
  },
});

/** Batch statistics [2, C]: per-channel mean and biased variance over (n, h, w). */
export const bnStatsOf = (x: Tensor): Tensor => x.graph.apply("bn_stats", [x]);
/** Training-mode batch norm from `bnStatsOf(x)`, differentiable through the statistics. */
export const bnApplyOp = (
  x: Tensor,
  stats: Tensor,
  gamma: Tensor,
  beta: Tensor,
  eps: number,
  relu: boolean = false,
): Tensor => x.graph.apply("bn_apply", [x, stats, gamma, beta], { eps, relu });

/** Attributes of `bn_running_update`: momentum, and N / (N - 1) for the unbiased variance. */
export type RunningAttrs = { momentum: number; unbiased: number };

/**
 * Running statistics update of nn.BatchNorm2d as one effect: rm = (1-m) rm + m mean,
 * rv = (1-m) rv + m var * N/(N-1). One node instead of eight tiny ones per layer.
 */
export const bnRunningUpdateDef: OpDef<RunningAttrs> = defineOp({
  name: "bn_running_update",
  arity: 3,
  inplace: [0, 1],
  shape: (ins) => {
    const C = ins[0][0];
    if (ins[0].length !== 1 || ins[1].join() !== `${C}`) {
      throw new ShapeError("bn_running_update", ins, "running mean and var must be [C]");
    }
    expectStats("bn_running_update", ins, 2, C);
    return [0];
  },
  ref: (ins, _s, a) => {
    const [rm, rv, st] = ins;
    const C = rm.length;
    const m = Math.fround(a.momentum);
    for (let c = 0; c < C; c++) {
      rm[c] = (1 - m) * rm[c] + m * st[c];
      rv[c] = (1 - m) * rv[c] + m * Math.fround(a.unbiased) * st[C + c];
    }
    return new Float64Array(0);
  },
});

/** Updates persistent running mean/var [C] from batch statistics [2, C] (an effect). */
export const bnRunningUpdate = (
  rm: Tensor,
  rv: Tensor,
  stats: Tensor,
  momentum: number,
  unbiased: number,
): Tensor => rm.graph.apply("bn_running_update", [rm, rv, stats], { momentum, unbiased });
