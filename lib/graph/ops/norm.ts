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
  // Two interleaved float64 accumulators break the add latency chain; fixed order.
  for (let c = 0; c < C; c++) {
    let s0 = 0, s1 = 0;
    for (let b = 0; b < B; b++) {
      const base = (b * C + c) * HW;
      const end = base + HW;
      let j = base;
      for (; j + 1 < end; j += 2) {
        s0 += x[j];
        s1 += x[j + 1];
      }
      if (j < end) s0 += x[j];
    }
    const m = (s0 + s1) / n;
    let v0 = 0, v1 = 0;
    for (let b = 0; b < B; b++) {
      const base = (b * C + c) * HW;
      const end = base + HW;
      let j = base;
      for (; j + 1 < end; j += 2) {
        const d0 = x[j] - m, d1 = x[j + 1] - m;
        v0 += d0 * d0;
        v1 += d1 * d1;
      }
      if (j < end) v0 += (x[j] - m) * (x[j] - m);
    }
    out[c] = m;
    out[C + c] = (v0 + v1) / n;
  }
}

/** eps, and whether a ReLU follows (fused: forward clamps, backward masks dy by y > 0). */
type BnAttrs = { eps: number; relu?: boolean };

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
  // Accumulates in float64 (JS numbers), in a fixed order; stored as f32.
  cpu: (ins) => {
    const g = geom("bn_stats", ins);
    return { run: (xs, out) => statsF32(g, xs[0], out) };
  },
  wgsl: (ins) => bnStats(geom("bn_stats", ins)),
});

defineOp<BnAttrs>({
  name: "bn_apply",
  arity: 4,
  shape: (ins) => {
    const g = geom("bn_apply", ins);
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
    const g = geom("bn_apply", shapes);
    const [x, s, gm, bt] = ins;
    const y = new Float64Array(x.length);
    perChannel(g, (c, i) => {
      const v = (x[i] - s[c]) / Math.sqrt(s[g.C + c] + Math.fround(a.eps)) * gm[c] + bt[c];
      y[i] = a.relu ? Math.max(v, 0) : v;
    });
    return y;
  },
  cpu: (ins, a) => {
    const g = geom("bn_apply", ins);
    const eps = Math.fround(a.eps);
    const relu = !!a.relu;
    return {
      run: ([x, s, gm, bt], y) => {
        for (let b = 0; b < g.B; b++) {
          for (let c = 0; c < g.C; c++) {
            const k = gm[c] / Math.sqrt(s[g.C + c] + eps);
            const sh = bt[c] - s[c] * k;
            const base = (b * g.C + c) * g.HW;
            const end = base + g.HW;
            if (relu) {
              // (v + |v|) / 2 is max(v, 0) without a data-dependent branch.
              for (let j = base; j < end; j++) {
                const v = x[j] * k + sh;
                y[j] = (v + Math.abs(v)) * 0.5;
              }
            } else {
              for (let j = base; j < end; j++) y[j] = x[j] * k + sh;
            }
          }
        }
      },
    };
  },
  wgsl: (ins, a) => bnApply(geom("bn_apply", ins), a.eps, !!a.relu),
});

function maskArity(op: string, ins: Shape[], n: number, a: BnAttrs) {
  if (ins.length !== n + (a.relu ? 1 : 0)) {
    throw new ShapeError(op, ins, `expects ${n} inputs${a.relu ? " and the ReLU output y" : ""}`);
  }
  if (a.relu && ins[n].join() !== ins[0].join()) throw new ShapeError(op, ins, "y must match x");
}

defineOp<BnAttrs>({
  name: "bn_bwd_sums",
  shape: (ins, a) => {
    const g = geom("bn_bwd_sums", ins);
    maskArity("bn_bwd_sums", ins, 3, a);
    expectStats("bn_bwd_sums", ins, 1, g.C);
    if (ins[2].join() !== ins[0].join()) {
      throw new ShapeError("bn_bwd_sums", ins, "dy must match x");
    }
    return [2, g.C];
  },
  ref: (ins, shapes, a) => {
    const g = geom("bn_bwd_sums", shapes);
    const [x, s, dy, y] = ins;
    const out = new Float64Array(2 * g.C);
    perChannel(g, (c, i) => {
      const d = a.relu && !(y[i] > 0) ? 0 : dy[i];
      out[c] += d * (x[i] - s[c]) / Math.sqrt(s[g.C + c] + Math.fround(a.eps));
      out[g.C + c] += d;
    });
    return out;
  },
  cpu: (ins, a) => {
    const g = geom("bn_bwd_sums", ins);
    const eps = Math.fround(a.eps);
    const relu = !!a.relu;
    return {
      run: ([x, s, dy, y], out) => {
        for (let c = 0; c < g.C; c++) {
          const m = s[c];
          // Two interleaved accumulators per sum halve the loop-carried dependency chain;
          // the combination order is fixed, so results do not depend on anything but shapes.
          let a0 = 0, a1 = 0, d0 = 0, d1 = 0;
          for (let b = 0; b < g.B; b++) {
            const base = (b * g.C + c) * g.HW;
            const end = base + g.HW;
            let j = base;
            if (relu) {
              for (; j + 1 < end; j += 2) {
                const u = dy[j] * +(y[j] > 0), v = dy[j + 1] * +(y[j + 1] > 0);
                a0 += u * (x[j] - m);
                a1 += v * (x[j + 1] - m);
                d0 += u;
                d1 += v;
              }
              if (j < end) {
                const u = dy[j] * +(y[j] > 0);
                a0 += u * (x[j] - m);
                d0 += u;
              }
            } else {
              for (; j + 1 < end; j += 2) {
                a0 += dy[j] * (x[j] - m);
                a1 += dy[j + 1] * (x[j + 1] - m);
                d0 += dy[j];
                d1 += dy[j + 1];
              }
              if (j < end) {
                a0 += dy[j] * (x[j] - m);
                d0 += dy[j];
              }
            }
          }
          out[c] = (a0 + a1) / Math.sqrt(s[g.C + c] + eps);
          out[g.C + c] = d0 + d1;
        }
      },
    };
  },
  wgsl: (ins, a) => bnBackwardSums(geom("bn_bwd_sums", ins), a.eps, !!a.relu),
});

defineOp<BnAttrs>({
  name: "bn_bwd_data",
  shape: (ins, a) => {
    const g = geom("bn_bwd_data", ins);
    maskArity("bn_bwd_data", ins, 5, a);
    expectStats("bn_bwd_data", ins, 1, g.C);
    expectVec("bn_bwd_data", ins, 2, g.C);
    expectStats("bn_bwd_data", ins, 4, g.C);
    return ins[0];
  },
  ref: (ins, shapes, a) => {
    const g = geom("bn_bwd_data", shapes);
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
  cpu: (ins, a) => {
    const g = geom("bn_bwd_data", ins);
    const n = g.B * g.HW;
    const eps = Math.fround(a.eps);
    const relu = !!a.relu;
    return {
      run: ([x, s, gm, dy, ps, y], dx) => {
        for (let b = 0; b < g.B; b++) {
          for (let c = 0; c < g.C; c++) {
            const inv = 1 / Math.sqrt(s[g.C + c] + eps);
            const k = gm[c] * inv;
            const m = s[c];
            const a1 = ps[g.C + c] / n;
            const a2 = ps[c] * inv / n;
            const base = (b * g.C + c) * g.HW;
            const end = base + g.HW;
            if (relu) {
              for (let j = base; j < end; j++) {
                dx[j] = k * (dy[j] * +(y[j] > 0) - a1 - (x[j] - m) * a2);
              }
            } else {
              for (let j = base; j < end; j++) dx[j] = k * (dy[j] - a1 - (x[j] - m) * a2);
            }
          }
        }
      },
    };
  },
  wgsl: (ins, a) => bnBackwardData(geom("bn_bwd_data", ins), a.eps, !!a.relu),
});

/** Batch statistics [2, C]: per-channel mean and biased variance over (n, h, w). */
export const bnStatsOf = (x: Tensor) => x.graph.apply("bn_stats", [x]);
/** Training-mode batch norm from `bnStatsOf(x)`, differentiable through the statistics. */
export const bnApplyOp = (
  x: Tensor,
  stats: Tensor,
  gamma: Tensor,
  beta: Tensor,
  eps: number,
  relu = false,
) => x.graph.apply("bn_apply", [x, stats, gamma, beta], { eps, relu });

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
