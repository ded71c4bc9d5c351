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
import type { Tensor } from "../graph.ts";
import { defineOp } from "../op.ts";
import { type Shape, ShapeError } from "../shape.ts";
import {
  bnApply,
  bnBackwardData,
  bnBackwardSums,
  type BnGeom,
  bnStats,
  runningUpdate,
} from "../../../kernels/norm.ts";
import { reshape, slice } from "./shape_ops.ts";

function geom(op: string, ins: Shape[]): BnGeom {
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

/** statsInto for Float32Array only: a monomorphic copy keeps V8's hot loop specialised. */
function statsF32(g: BnGeom, x: Float32Array, out: Float32Array) {
  const { B, C, HW } = g;
  const n = B * HW;
  for (let c = 0; c < C; c++) {
    let s = 0;
    for (let b = 0; b < B; b++) {
      const base = (b * C + c) * HW;
      const end = base + HW;
      for (let j = base; j < end; j++) s += x[j];
    }
    const m = s / n;
    let v = 0;
    for (let b = 0; b < B; b++) {
      const base = (b * C + c) * HW;
      const end = base + HW;
      for (let j = base; j < end; j++) {
        const d = x[j] - m;
        v += d * d;
      }
    }
    out[c] = m;
    out[C + c] = v / n;
  }
}

type Eps = { eps: number };

defineOp({
  name: "bn_stats",
  arity: 1,
  shape: (ins) => [2, geom("bn_stats", ins).C],
  grad: () => {
    throw new Error("bn_stats is differentiable only through bn_apply of the same input");
  },
  ref: (ins, shapes) => {
    const out = new Float64Array(2 * shapes[0][1]);
    statsInto(geom("bn_stats", shapes), ins[0], out);
    return out;
  },
  // Accumulates in float64 (JS numbers) in the reference order; stored as f32.
  cpu: (ins) => {
    const g = geom("bn_stats", ins);
    return { run: (xs, out) => statsF32(g, xs[0], out) };
  },
  wgsl: (ins) => bnStats(geom("bn_stats", ins)),
});

defineOp<Eps>({
  name: "bn_apply",
  arity: 4,
  shape: (ins) => {
    const g = geom("bn_apply", ins);
    expectStats("bn_apply", ins, 1, g.C);
    expectVec("bn_apply", ins, 2, g.C);
    expectVec("bn_apply", ins, 3, g.C);
    return ins[0];
  },
  grad: ({ x, dy, attrs }) => {
    const [xi, stats, gamma] = x;
    if (stats.op !== "bn_stats" || stats.inputs[0] !== xi) {
      throw new Error("bn_apply: stats must be bn_stats of the same input to be differentiated");
    }
    const sums = dy.graph.apply("bn_bwd_sums", [xi, stats, dy], attrs);
    const C = gamma.shape[0];
    return [
      dy.graph.apply("bn_bwd_data", [xi, stats, gamma, dy, sums], attrs),
      null,
      reshape(slice(sums, 0, 0, 1), [C]),
      reshape(slice(sums, 0, 1, 1), [C]),
    ];
  },
  ref: (ins, shapes, a) => {
    const g = geom("bn_apply", shapes);
    const [x, s, gm, bt] = ins;
    const y = new Float64Array(x.length);
    perChannel(g, (c, i) => {
      y[i] = (x[i] - s[c]) / Math.sqrt(s[g.C + c] + a.eps) * gm[c] + bt[c];
    });
    return y;
  },
  cpu: (ins, a) => {
    const g = geom("bn_apply", ins);
    return {
      run: ([x, s, gm, bt], y) => {
        for (let b = 0; b < g.B; b++) {
          for (let c = 0; c < g.C; c++) {
            const k = gm[c] / Math.sqrt(s[g.C + c] + a.eps);
            const sh = bt[c] - s[c] * k;
            const base = (b * g.C + c) * g.HW;
            for (let j = base; j < base + g.HW; j++) y[j] = x[j] * k + sh;
          }
        }
      },
    };
  },
  wgsl: (ins, a) => bnApply(geom("bn_apply", ins), a.eps),
});

defineOp<Eps>({
  name: "bn_bwd_sums",
  arity: 3,
  shape: (ins) => {
    const g = geom("bn_bwd_sums", ins);
    expectStats("bn_bwd_sums", ins, 1, g.C);
    if (ins[2].join() !== ins[0].join()) {
      throw new ShapeError("bn_bwd_sums", ins, "dy must match x");
    }
    return [2, g.C];
  },
  ref: (ins, shapes, a) => {
    const g = geom("bn_bwd_sums", shapes);
    const [x, s, dy] = ins;
    const out = new Float64Array(2 * g.C);
    perChannel(g, (c, i) => {
      out[c] += dy[i] * (x[i] - s[c]) / Math.sqrt(s[g.C + c] + a.eps);
      out[g.C + c] += dy[i];
    });
    return out;
  },
  cpu: (ins, a) => {
    const g = geom("bn_bwd_sums", ins);
    return {
      run: ([x, s, dy], out) => {
        for (let c = 0; c < g.C; c++) {
          const m = s[c];
          const inv = 1 / Math.sqrt(s[g.C + c] + a.eps);
          let sxh = 0;
          let sdy = 0;
          for (let b = 0; b < g.B; b++) {
            const base = (b * g.C + c) * g.HW;
            for (let j = base; j < base + g.HW; j++) {
              sxh += dy[j] * (x[j] - m);
              sdy += dy[j];
            }
          }
          out[c] = sxh * inv;
          out[g.C + c] = sdy;
        }
      },
    };
  },
  wgsl: (ins, a) => bnBackwardSums(geom("bn_bwd_sums", ins), a.eps),
});

defineOp<Eps>({
  name: "bn_bwd_data",
  arity: 5,
  shape: (ins) => {
    const g = geom("bn_bwd_data", ins);
    expectStats("bn_bwd_data", ins, 1, g.C);
    expectVec("bn_bwd_data", ins, 2, g.C);
    expectStats("bn_bwd_data", ins, 4, g.C);
    return ins[0];
  },
  ref: (ins, shapes, a) => {
    const g = geom("bn_bwd_data", shapes);
    const [x, s, gm, dy, ps] = ins;
    const n = g.B * g.HW;
    const dx = new Float64Array(x.length);
    perChannel(g, (c, i) => {
      const inv = 1 / Math.sqrt(s[g.C + c] + a.eps);
      const xh = (x[i] - s[c]) * inv;
      dx[i] = gm[c] * inv * (dy[i] - (ps[g.C + c] + xh * ps[c]) / n);
    });
    return dx;
  },
  cpu: (ins, a) => {
    const g = geom("bn_bwd_data", ins);
    const n = g.B * g.HW;
    return {
      run: ([x, s, gm, dy, ps], dx) => {
        for (let b = 0; b < g.B; b++) {
          for (let c = 0; c < g.C; c++) {
            const inv = 1 / Math.sqrt(s[g.C + c] + a.eps);
            const k = gm[c] * inv;
            const m = s[c];
            const a1 = ps[g.C + c] / n;
            const a2 = ps[c] * inv / n;
            const base = (b * g.C + c) * g.HW;
            for (let j = base; j < base + g.HW; j++) dx[j] = k * (dy[j] - a1 - (x[j] - m) * a2);
          }
        }
      },
    };
  },
  wgsl: (ins, a) => bnBackwardData(geom("bn_bwd_data", ins), a.eps),
});

/** Batch statistics [2, C]: per-channel mean and biased variance over (n, h, w). */
export const bnStatsOf = (x: Tensor) => x.graph.apply("bn_stats", [x]);
/** Training-mode batch norm from `bnStatsOf(x)`, differentiable through the statistics. */
export const bnApplyOp = (x: Tensor, stats: Tensor, gamma: Tensor, beta: Tensor, eps: number) =>
  x.graph.apply("bn_apply", [x, stats, gamma, beta], { eps });

type RunningAttrs = { momentum: number; unbiased: number };

/**
 * Running statistics update of nn.BatchNorm2d as one effect: rm = (1-m) rm + m mean,
 * rv = (1-m) rv + m var * N/(N-1). One node instead of eight tiny ones per layer.
 */
defineOp<RunningAttrs>({
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
  cpu: (ins, a) => {
    const C = ins[0][0];
    const m = Math.fround(a.momentum);
    const k = m * Math.fround(a.unbiased);
    return {
      run: ([rm, rv, st]) => {
        for (let c = 0; c < C; c++) {
          rm[c] = (1 - m) * rm[c] + m * st[c];
          rv[c] = (1 - m) * rv[c] + k * st[C + c];
        }
      },
    };
  },
  wgsl: (ins, a) => runningUpdate(ins[0][0], a.momentum, a.unbiased),
});

/** Updates persistent running mean/var [C] from batch statistics [2, C] (an effect). */
export const bnRunningUpdate = (
  rm: Tensor,
  rv: Tensor,
  stats: Tensor,
  momentum: number,
  unbiased: number,
) => rm.graph.apply("bn_running_update", [rm, rv, stats], { momentum, unbiased });
